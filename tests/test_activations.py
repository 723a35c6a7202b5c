"""SAE hook points: every hook name of the sae-lens pretrained registry maps to the right module and position
(or is refused with the hook and the fix), the captured activations are the ones the name means, and provenance
records the real hook. Registry metadata only (the pretrained_saes.yaml that sae-lens installs): no downloads."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from saerl_hf._testing import tiny_gemma3
from saerl_hf.activations import (
    HookPoint,
    UnsupportedHookError,
    decoder_layers,
    layer_from_hook,
    prefix_cache,
    residual_stream,
    right_pad,
)

SITES = {"hook_resid_pre": "resid_pre", "hook_resid_mid": "resid_mid", "hook_resid_post": "resid_post",
         "hook_attn_out": "attn_out", "hook_mlp_out": "mlp_out", "attn.hook_z": "attn_z", "hook_z": "attn_z"}


def registry_hook_names() -> set[str]:
    """Hook names of the registry's SAEs, from its metadata: sae ids that are hook names, and the hooks the
    Gemma Scope (1 and 2) loaders derive from the release and folder names (pure functions, no download)."""
    import sae_lens
    from sae_lens.loading import pretrained_sae_loaders as loaders

    registry = yaml.safe_load((Path(sae_lens.__file__).parent / "pretrained_saes.yaml").read_text())
    names = set()
    for release in registry.values():
        for sae in release["saes"]:
            if re.match(r"blocks\.\d+\.", sae["id"]):  # e.g. blocks.8.hook_resid_pre_768, ...__trainer_3
                names.add(re.sub(r"(__.*|_\d+)$", "", sae["id"]))
            if release.get("conversion_func") == "gemma_2":
                names.add(loaders.get_gemma_2_config_from_hf(release["repo_id"], sae["path"], device=None)["hook_name"])
            if release.get("conversion_func") == "gemma_3":
                raw = loaders._infer_gemma_3_raw_cfg_dict(release["repo_id"], sae["path"])
                names.update(v for k, v in raw.items() if k.startswith("hf_hook_point"))
    return names


def test_every_registry_hook_maps_to_its_block_and_site_or_is_refused_with_the_fix():
    names = registry_hook_names()
    mapped, refused = {}, {}
    for name in sorted(names):
        try:
            mapped[name] = layer_from_hook(name)
        except UnsupportedHookError as err:
            refused[name] = str(err)
    assert len(names) > 100 and len(mapped) > 0.9 * len(names)
    for name, point in mapped.items():
        assert int(point) == int(re.search(r"(?:blocks|layers)\.(\d+)", name).group(1)) and point.hook == name
        tl = re.match(r"blocks\.\d+\.(.+)$", name)
        if tl:
            assert point.site == SITES[tl.group(1)], name
    sites = {p.site for p in mapped.values()}
    assert {"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_z", "module"} <= sites
    # Only what is not an SAE on a block's stream is refused: the embeddings, and transcoders' MLP inputs.
    assert refused and all(re.search(r"hook_embed|mlp_in|pre_feedforward_layernorm", n) for n in refused), refused
    for name, message in refused.items():
        assert f"'{name}'" in message and "Fix:" in message
    # Llama Scope (lxr / lxa / lxm) and the HF module names of Gemma Scope 2
    assert (mapped["blocks.3.hook_attn_out"].site, mapped["blocks.3.hook_mlp_out"].site) == ("attn_out", "mlp_out")
    point = layer_from_hook("model.layers.5.self_attn.o_proj.input")
    assert (int(point), point.site, point.module, point.io) == (5, "module", "self_attn.o_proj", "input")
    assert layer_from_hook("model.layers.5.output") == layer_from_hook("model.layers.5") == 5
    assert layer_from_hook("model.layers.5.input").site == "resid_pre" and layer_from_hook(None) is None
    with pytest.raises(UnsupportedHookError, match=r"'my_hook'.*Fix:"):
        layer_from_hook("my_hook")


def test_hook_point_is_an_int_that_keeps_its_site():
    pre = layer_from_hook("blocks.3.hook_resid_pre")
    post = layer_from_hook("blocks.3.hook_resid_post")
    assert post == 3 and pre != 3 and pre != post and pre == layer_from_hook("blocks.3.hook_resid_pre")
    assert 0 <= pre < 4 and json.dumps({"layer": pre}) == '{"layer": 3}' and f"{pre}" == "3"
    again = pickle.loads(pickle.dumps(pre))  # map workers receive it
    assert (again.site, again.hook, int(again)) == ("resid_pre", "blocks.3.hook_resid_pre", 3)



@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_each_site_captures_what_its_name_means(tiny, family):
    """resid_pre / post are hidden_states[L] / [L + 1]; attention and MLP outputs are exactly what the block adds
    to the residual stream (Gemma's post-norms included); hook_z is the heads o_proj mixes; nothing after runs."""
    model = tiny[0] if family == "llama" else tiny_gemma3()
    ids = torch.randint(3, 500, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    at = {site: residual_stream(model, ids, None, HookPoint(1, site)) for site in
          ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_z")}
    torch.testing.assert_close(at["resid_pre"], hidden[1])
    torch.testing.assert_close(at["resid_post"], hidden[2])
    torch.testing.assert_close(at["resid_pre"] + at["attn_out"], at["resid_mid"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(at["resid_mid"] + at["mlp_out"], at["resid_post"], atol=1e-5, rtol=1e-5)
    block = decoder_layers(model)[1]
    assert at["attn_z"].shape == (2, 7, model.config.num_attention_heads, block.self_attn.head_dim)
    with torch.no_grad():
        mixed = block.self_attn.o_proj(at["attn_z"].flatten(-2))
        if family == "gemma3":
            mixed = block.post_attention_layernorm(mixed)
    torch.testing.assert_close(mixed, at["attn_out"], atol=1e-5, rtol=1e-5)
    if family == "llama":
        torch.testing.assert_close(residual_stream(model, ids, None, layer_from_hook("model.layers.1.mlp")),
                                   at["mlp_out"])
    calls = []
    handle = decoder_layers(model)[2].register_forward_hook(lambda *_: calls.append(1))
    try:
        residual_stream(model, ids, None, HookPoint(1, "mlp_out"))
    finally:
        handle.remove()
    assert calls == []  # the early exit stops at the hook point


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out"])
def test_prefix_cache_continuation_at_every_site(tiny, site):
    model = tiny[0]
    gen = torch.Generator().manual_seed(0)
    prefix = torch.randint(3, 500, (9,), generator=gen).tolist()
    tails = [torch.randint(3, 500, (n,), generator=gen).tolist() for n in (5, 2)]
    point = HookPoint(2, site)
    past = prefix_cache(model, prefix, point)
    input_ids, mask = right_pad(tails, 0)
    got = residual_stream(model, input_ids, mask, point, past=past)
    for row, tail in enumerate(tails):
        whole = residual_stream(model, torch.tensor([prefix + tail]), None, point)[0, len(prefix):]
        torch.testing.assert_close(got[row, : len(tail)], whole, atol=1e-5, rtol=1e-4)


def test_a_module_the_model_lacks_is_a_clear_error(tiny):
    with pytest.raises(UnsupportedHookError, match=r"'model.layers.1.no_such'.*no such submodule.*Fix:"):
        residual_stream(tiny[0], torch.tensor([[5, 6, 7]]), None, layer_from_hook("model.layers.1.no_such"))


def _sae_with_hook(src: str, dst: Path, hook: str) -> str:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = hook
    (dst / "cfg.json").write_text(json.dumps(cfg))
    return str(dst)


def test_featurize_reads_the_sae_hook_and_provenance_records_it(tiny_model_dir, tiny_sae_dir, data_dir, tmp_path):
    """The same SAE weights under three hook names: resid_pre of block 3 is the output of block 2 (identical
    features to `model.layers.2`); resid_pre of block 2 is another stream. Provenance names the real hook."""
    from saerl_hf.data import load_math_dataset
    from saerl_hf.features import FeaturizeConfig, featurize
    from saerl_hf.sae import load_sae
    from saerl_hf.sparse import feature_provenance

    rows = load_math_dataset("gsm8k", "test", limit=6)
    got = {}
    for hook in ("model.layers.2", "blocks.3.hook_resid_pre", "blocks.2.hook_resid_pre"):
        sae = _sae_with_hook(tiny_sae_dir, tmp_path / hook, hook)
        out = featurize(rows, FeaturizeConfig(model=tiny_model_dir, sae=sae, top_k=16, batch_size=4,
                                              cache_dir=str(tmp_path / "cache" / hook)))
        prov = feature_provenance(out)
        assert prov["hook"] == hook and prov["layer"] == int(hook.split(".")[1] if hook[0] == "b" else 2)
        got[hook] = out["sae_idx"]
    assert got["blocks.3.hook_resid_pre"] == got["model.layers.2"]
    assert got["blocks.2.hook_resid_pre"] != got["model.layers.2"]
    with pytest.raises(UnsupportedHookError, match=r"'blocks.2.hook_mlp_in'.*transcoder.*Fix:"):
        load_sae(_sae_with_hook(tiny_sae_dir, tmp_path / "mlp_in", "blocks.2.hook_mlp_in"))
