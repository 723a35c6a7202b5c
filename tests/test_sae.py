"""SAE training (sae-lens) and loading on a tiny random Llama: CLI + YAML, save/reload, width checks."""

from __future__ import annotations

import json

import pytest
import torch

from saerl_hf.models import load_model, load_tokenizer
from saerl_hf.sae import (
    SAELoadError,
    TrainSAEConfig,
    cli_main,
    default_sae_dir,
    file_sha256,
    load_sae,
    stream_activations,
    train_sae,
)

TINY_SAE = dict(d_sae=128, k=8, training_tokens=12_000, train_batch_size=128, buffer_tokens=4096, lr=3e-3,
                sources="gsm8k:test", max_texts=300, eval_tokens=2048, context_size=128)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, data_dir, tmp_path_factory):
    """A TopK SAE trained on the tiny model in-process (a few seconds)."""
    out = tmp_path_factory.mktemp("sae") / "topk"
    return train_sae(TrainSAEConfig(model=tiny_model_dir, output_dir=str(out), **TINY_SAE))


@pytest.fixture(scope="module")
def tiny_acts(tiny_model_dir, data_dir):
    """Real activations of the tiny model at its middle block (layer 2) on GSM8K text."""
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    texts = [f"Question {i}: Tom has {i} apples and buys {i + 3} more. How many now?" for i in range(20)]
    return torch.cat(list(stream_activations(model, tokenizer, texts, 2, cycle=False)))


def test_train_writes_sae_lens_format_card_and_metrics(trained, tiny_model_dir):
    out = trained.output_dir
    for name in ("cfg.json", "sae_weights.safetensors", "README.md", "sae_training.json"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 8 and cfg["d_in"] == 64 and cfg["d_sae"] == 128
    assert cfg["metadata"]["hook_name"] == "model.layers.2"  # default layer = 4 // 2
    info = json.loads((out / "sae_training.json").read_text())
    metrics = info["metrics"]
    assert 0 < metrics["l0"] <= 8  # TopK: at most k active latents per token
    assert 0.0 <= metrics["dead_fraction"] < 1.0
    assert metrics["train_tokens"] >= 11_000
    assert metrics["explained_variance"] > 0.5  # learnt: far better than predicting the mean
    assert info["sae_hash"] == file_sha256(out / "sae_weights.safetensors")
    card = (out / "README.md").read_text()
    assert "model.layers.2" in card and "library_name: saelens" in card and "k = 8" in card
    assert "| dead-latent window | 200 steps; TopK auxiliary (aux-k) loss coefficient 1.0 |" in card
    assert info["config"]["aux_loss_coefficient"] == 1.0 and info["config"]["general_text_fraction"] == 0.0
    assert f"{metrics['explained_variance']:.4f}" in card


def test_reload_gives_identical_encodings(trained, tiny_acts, tiny_model_dir):
    from sae_lens import SAE

    plain = SAE.load_from_disk(trained.output_dir)
    handle = load_sae(trained.output_dir, model_name=tiny_model_dir)
    with torch.no_grad():
        ours = handle.sae.encode(tiny_acts)
        assert torch.equal(ours, plain.encode(tiny_acts))
        original = trained.sae.encode(tiny_acts)
    assert torch.equal(ours != 0, original != 0)
    torch.testing.assert_close(ours, original, rtol=1e-5, atol=1e-5)
    assert handle.layer == 2 and handle.hook == "model.layers.2"
    assert handle.sha256 == file_sha256(trained.output_dir / "sae_weights.safetensors")


def test_width_mismatch_fails_before_loading_weights(trained, smollm2_path):
    (trained.output_dir.parent / "corrupt").mkdir(exist_ok=True)
    broken = trained.output_dir.parent / "corrupt"
    (broken / "cfg.json").write_text((trained.output_dir / "cfg.json").read_text())
    (broken / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    # The width is checked from cfg.json first, so even unreadable weights are never touched.
    with pytest.raises(SAELoadError, match=r"d_in=64.*hidden size 576"):
        load_sae(broken, model_name=smollm2_path)


def test_cli_reads_yaml_and_overrides(tiny_model_dir, data_dir, tmp_path, capsys):
    config = tmp_path / "sae.yaml"
    config.write_text(
        f"model: {tiny_model_dir}\narchitecture: topk\nd_sae: 64\nk: 8\ntraining_tokens: 4096\n"
        f"train_batch_size: 128\nbuffer_tokens: 2048\nsources: svamp\nmax_texts: 100\neval_tokens: 512\n"
    )
    out = tmp_path / "cli_sae"
    assert cli_main(["--config", str(config), "--k", "4", "--output_dir", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["output_dir"] == str(out)
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["k"] == 4 and cfg["d_sae"] == 64  # YAML value kept, flag override applied
    with pytest.raises(FileExistsError, match="overwrite"):
        cli_main(["--config", str(config), "--output_dir", str(out)])


@pytest.mark.parametrize("architecture", ["standard", "jumprelu"])
def test_other_architectures_train_and_reload(architecture, tiny_model_dir, data_dir, tmp_path, tiny_acts):
    from sae_lens import SAE

    cfg = dict(TINY_SAE, d_sae=64, training_tokens=4096, max_texts=100)
    result = train_sae(TrainSAEConfig(model=tiny_model_dir, architecture=architecture, output_dir=str(tmp_path / "s"),
                                      **cfg))
    loaded = SAE.load_from_disk(result.output_dir)
    assert json.loads((result.output_dir / "cfg.json").read_text())["architecture"] == architecture
    with torch.no_grad():
        codes = loaded.encode(tiny_acts)
    assert torch.isfinite(codes).all() and codes.shape == (len(tiny_acts), 64)


def test_stream_drops_the_first_position(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    texts = ["one two three four", "five", "six seven eight nine ten eleven"]
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    blocks = list(stream_activations(model, tokenizer, texts, 2, model_batch_size=2, chat=False, cycle=False))
    assert sum(len(b) for b in blocks) == sum(n - 1 for n in lengths if n > 1)
    full = model(**tokenizer(texts[2:], return_tensors="pt"), output_hidden_states=True).hidden_states[3][0]
    # The longest text is in the last batch (sorted by length); its rows follow position 0.
    torch.testing.assert_close(blocks[-1][-(lengths[2] - 1):], full[1:].detach(), rtol=1e-5, atol=1e-5)


def test_bad_specs_have_clear_errors(tmp_path):
    with pytest.raises(SAELoadError, match="does not exist"):
        load_sae("./no/such/sae")
    with pytest.raises(SAELoadError, match="not a sae-lens SAE directory"):
        load_sae(tmp_path)
    with pytest.raises(SAELoadError, match="registry"):
        load_sae("not-a-release")
    with pytest.raises(SAELoadError, match="needs an sae_id"):
        load_sae("gpt2-small-res-jb")


def test_default_sae_dir_is_under_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SAERL_CACHE", str(tmp_path))
    assert default_sae_dir("smollm2-135m", 15, 4096, 32) == tmp_path / "saes" / "smollm2-135m-L15-topk-w4096-k32"
    assert default_sae_dir("org/model", 3, 512, None, "standard").name == "org--model-L3-standard-w512"


def test_load_from_hub_repo(trained, tiny_model_dir, hub_run):
    """Upload the trained SAE to the local Hub emulator, load it back by repo id (snapshot_download)."""
    code = (
        "import json, sys\n"
        "from huggingface_hub import HfApi\n"
        "api = HfApi(); api.create_repo('saerl/tiny-sae'); api.upload_folder(folder_path=sys.argv[1], "
        "repo_id='saerl/tiny-sae')\n"
        "from saerl_hf.sae import load_sae\n"
        "h = load_sae('saerl/tiny-sae', model_name=sys.argv[2])\n"
        "print(json.dumps({'sha': h.sha256, 'source': h.source, 'layer': h.layer, 'd_sae': h.d_sae}))\n"
    )
    proc = hub_run(str(trained.output_dir), tiny_model_dir, code=code)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"sha": file_sha256(trained.output_dir / "sae_weights.safetensors"), "source": "saerl/tiny-sae",
                   "layer": 2, "d_sae": 128}


def test_out_of_range_metrics_are_named_with_their_fix():
    from saerl_hf.sae_train import metric_warnings

    assert metric_warnings({"explained_variance": 0.911, "dead_fraction": 0.089}) == []  # the SmolLM2 SAE
    low_ev, many_dead = metric_warnings({"explained_variance": 0.41, "dead_fraction": 0.46})
    assert "explained variance 0.410" in low_ev and "below 0.7" in low_ev and "--training_tokens" in low_ev
    assert "46.0% of the latents never fired" in many_dead and "lower --d_sae" in many_dead
    assert len(metric_warnings({"explained_variance": float("nan"), "dead_fraction": 0.0})) == 1
