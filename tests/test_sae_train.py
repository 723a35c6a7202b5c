"""train-sae's resumable checkpoints, TopK's dead-latent (aux-k) loss option and the general-text mix, on a
tiny random Llama: a run killed mid-way and started again ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import random

import pytest
import torch

from saerl_hf.errors import is_known
from saerl_hf.sae_data import ActivationStream, MixingBuffer, general_texts, mix_sizes, training_texts
from saerl_hf.sae_fit import RESUME_FILE, CheckpointError, TrainingCheckpoint, result_settings, training_sae
from saerl_hf.sae_train import TrainSAEConfig, train_sae

# 40 steps of 128 tokens, a checkpoint every 10; chunks of 4 * 16 texts, so a resume lands inside a chunk.
RESUMABLE = dict(d_sae=64, k=8, training_tokens=40 * 128, train_batch_size=128, buffer_tokens=2048, lr=3e-3,
                 sources="gsm8k:test", max_texts=120, eval_tokens=512, context_size=64, model_batch_size=4,
                 checkpoint_every=10)
CHEAP_PACKAGES = ("email", "logging", "http")  # stdlib prose: seconds to read


class Killed(Exception):
    """Stands in for a kill: raised from the data provider after a number of batches."""


def _recording(monkeypatch):
    """Record the token ids of every training forward (cycling streams only; evaluation does not cycle) and the
    scaling factor folded into the final SAE."""
    seen, factors = [], []
    original = ActivationStream._activations

    def record(self, seqs):
        if self.cycle:
            seen.extend(tuple(s) for s in seqs)
        return original(self, seqs)

    from sae_lens.saes.sae import SAE

    fold = SAE.fold_activation_norm_scaling_factor

    def spy_fold(self, factor):
        factors.append(factor)
        return fold(self, factor)

    monkeypatch.setattr(ActivationStream, "_activations", record)
    monkeypatch.setattr(SAE, "fold_activation_norm_scaling_factor", spy_fold)
    return seen, factors


def _kill_after(monkeypatch, n_batches):
    original = MixingBuffer.__next__
    count = {"n": 0}

    def next_or_kill(self):
        count["n"] += 1
        if count["n"] > n_batches:
            raise Killed
        return original(self)

    monkeypatch.setattr(MixingBuffer, "__next__", next_or_kill)


def test_a_killed_run_resumes_where_its_checkpoint_left_off(tiny_model_dir, data_dir, tmp_path, monkeypatch, caplog):
    from sae_lens.training.activation_scaler import ActivationScaler

    full_seen, full_factors = _recording(monkeypatch)
    full = train_sae(TrainSAEConfig(model=tiny_model_dir, output_dir=str(tmp_path / "full"), **RESUMABLE))
    assert not (tmp_path / "full.ckpt").exists()
    monkeypatch.undo()

    out = tmp_path / "resumed"
    config = TrainSAEConfig(model=tiny_model_dir, output_dir=str(out), **RESUMABLE)
    killed_seen, _ = _recording(monkeypatch)
    _kill_after(monkeypatch, 8 + 25)  # 8 batches for the scaling factor, then 25 steps: last checkpoint at 20
    with pytest.raises(Killed):
        train_sae(config)
    monkeypatch.undo()
    info = json.loads((tmp_path / "resumed.ckpt" / RESUME_FILE).read_text())
    assert info["n_training_steps"] == 20 and info["n_training_samples"] == 20 * 128
    assert sorted(p.name for p in (tmp_path / "resumed.ckpt").iterdir()) == [RESUME_FILE, "step-00000020"]
    position = info["texts_consumed"]
    assert 0 < position < len(killed_seen)  # the stream had read ahead of the checkpoint

    resumed_seen, resumed_factors = _recording(monkeypatch)
    monkeypatch.setattr(ActivationScaler, "estimate_scaling_factor",
                        lambda *a, **k: pytest.fail("the scaling factor was re-estimated on resume"))
    with caplog.at_level("INFO", logger="saerl_hf.sae_fit"):
        resumed = train_sae(config)
    assert "resumed from" in caplog.text and "step 20/40" in caplog.text
    assert resumed.metrics["train_steps"] == full.metrics["train_steps"] == 40
    assert resumed.metrics["train_tokens"] == full.metrics["train_tokens"] == 40 * 128
    assert resumed.metrics["resumed_from_step"] == 20 and full.metrics["resumed_from_step"] is None
    # The same texts in the same order: what was consumed before the checkpoint, then the resumed stream.
    assert killed_seen[:position] == full_seen[:position]
    n = min(len(resumed_seen), len(full_seen) - position)
    assert n > 0 and resumed_seen[:n] == full_seen[position : position + n]
    assert resumed_factors == full_factors and len(full_factors) == 1  # restored, not re-estimated
    assert not (tmp_path / "resumed.ckpt").exists()
    assert resumed.metrics["explained_variance"] > 0.3


def test_a_checkpoint_with_other_settings_is_refused_with_the_fix(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "sae"
    written = TrainSAEConfig(model=tiny_model_dir, output_dir=str(out), **RESUMABLE)
    root = tmp_path / "sae.ckpt"
    root.mkdir()
    (root / RESUME_FILE).write_text(json.dumps({"checkpoint": "step-00000010", "texts_consumed": 40,
                                                "n_training_steps": 10, "n_training_samples": 1280,
                                                "config": result_settings(written)}))
    other = TrainSAEConfig(model=tiny_model_dir, output_dir=str(out), **{**RESUMABLE, "k": 4})
    with pytest.raises(CheckpointError, match=r"other settings \(k: 8 -> 4\).*--overwrite true.*delete") as refused:
        train_sae(other)
    assert is_known(refused.value)  # the CLI prints a known error as one "error: ..." line, not a traceback
    # Options that do not change the result (device, checkpoint interval, ...) still resume.
    same = TrainSAEConfig(model=tiny_model_dir, output_dir=str(out), **{**RESUMABLE, "checkpoint_every": 5})
    with pytest.raises(CheckpointError, match="step-00000010, which is missing"):
        TrainingCheckpoint(out, same).find(overwrite=False)
    (root / "step-00000010").mkdir()
    point = TrainingCheckpoint(out, same).find(overwrite=False)
    assert point.n_training_steps == 10 and point.texts_consumed == 40 and point.path == root / "step-00000010"
    assert TrainingCheckpoint(out, other).find(overwrite=True) is None and not root.exists()


def test_aux_loss_coefficient_reaches_sae_lens_and_scales_the_aux_loss():
    sae = training_sae(TrainSAEConfig(aux_loss_coefficient=0.25, d_sae=32, k=4), d_in=16, device="cpu")
    assert sae.cfg.aux_loss_coefficient == 0.25
    x = torch.randn(8, 16)
    dead = torch.ones(32, dtype=torch.bool)

    def aux(coefficient):
        sae.cfg.aux_loss_coefficient = coefficient
        feature_acts, hidden_pre = sae.encode_with_hidden_pre(x)
        with torch.no_grad():
            return float(sae.calculate_topk_aux_loss(x, sae.decode(feature_acts), hidden_pre, dead))

    assert aux(0.0) == 0.0 and aux(2.0) == pytest.approx(2 * aux(1.0)) and aux(1.0) > 0
    with pytest.raises(ValueError, match="aux_loss_coefficient 0"):
        TrainSAEConfig(normalize_activations="layer_norm")
    TrainSAEConfig(normalize_activations="layer_norm", aux_loss_coefficient=0.0)  # off: allowed
    TrainSAEConfig(normalize_activations="layer_norm", architecture="standard")  # no aux-k loss: allowed


def test_stream_resumes_at_its_reported_position(tiny):
    model, tokenizer = tiny
    texts = [f"Text {i}: " + "word " * (i % 7) for i in range(23)] + ["", "x"]  # "" is too short: dropped
    random.Random(0).shuffle(texts)

    def rows(stream, n_blocks):
        return [tuple(map(tuple, b.tolist())) for _, b in zip(range(n_blocks), stream)]

    whole = ActivationStream(model, tokenizer, texts, 2, model_batch_size=3, chat=False)
    expected = rows(whole, 20)  # > 1 epoch
    for k in (1, 4, 6, 9):
        head = ActivationStream(model, tokenizer, texts, 2, model_batch_size=3, chat=False)
        got = rows(head, k)
        tail = ActivationStream(model, tokenizer, texts, 2, model_batch_size=3, chat=False, start=head.position)
        got += rows(tail, 20 - k)
        assert [len(b) for b in got] == [len(b) for b in expected]
        for a, b in zip(got, expected):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=1e-5)


def test_general_text_is_deterministic_and_never_held_out_text():
    from saerl_hf.docstring_text import REAL_TEXT_PACKAGES, held_out_paragraphs

    first, again, other = (general_texts(40, CHEAP_PACKAGES, 0), general_texts(40, CHEAP_PACKAGES, 0),
                           general_texts(40, CHEAP_PACKAGES, 1))
    assert first == again and first != other and len(set(first)) == 40
    assert all(8 <= len(t.split()) <= 60 and ">>>" not in t for t in first)
    assert not set(first) & held_out_paragraphs()
    for package in REAL_TEXT_PACKAGES + ("scipy.stats",):
        with pytest.raises(ValueError, match="held-out"):
            general_texts(5, ("email", package))


def test_general_text_is_mixed_in_the_stated_fraction(data_dir, tiny):
    _, tokenizer = tiny
    base = dict(sources="svamp", text_format="plain", general_text_packages=",".join(CHEAP_PACKAGES))
    math_only = training_texts(TrainSAEConfig(max_texts=200, **base), tokenizer)
    mixed = training_texts(TrainSAEConfig(max_texts=200, general_text_fraction=0.25, **base), tokenizer)
    assert mixed == training_texts(TrainSAEConfig(max_texts=200, general_text_fraction=0.25, **base), tokenizer)
    prose = {t + "\n" for t in general_texts(50, CHEAP_PACKAGES, 0)}
    assert len(mixed) == 200 and sum(t in prose for t in mixed) == 50
    assert sorted(t for t in mixed if t not in prose) == sorted(math_only[:150])  # the first 150 math texts
    assert not set(math_only) & prose
    assert mix_sizes(1000, 0.0, None) == (1000, 0) and mix_sizes(1000, 0.2, None) == (1000, 250)
    assert mix_sizes(1000, 0.2, 100) == (80, 20) and mix_sizes(10, 0.5, 1000) == (10, 10)


def _real_text_negatives_before_the_shared_reader(n, seed, packages, min_words=8, max_words=60):
    """real_text_negatives as it was before its reader moved to saerl_hf.docstring_text (frozen reference)."""
    import ast
    import importlib.util
    import inspect
    from pathlib import Path

    files = []
    for package in packages:
        root = Path(list(importlib.util.find_spec(package).submodule_search_locations)[0])
        files += [f for f in sorted(root.rglob("*.py")) if "tests" not in f.relative_to(root).parts]
    rng = random.Random(seed)
    rng.shuffle(files)
    found = set()
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                text = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split()) if doc else ""
                text = "" if ">>>" in text or text.startswith("..") else text
                if text and min_words <= len(text.split()) <= max_words:
                    found.add(text)
        if len(found) >= 4 * n:
            break
    return rng.sample(sorted(found), n)


@pytest.mark.parametrize("n, seed", [(20, 0), (30, 3)])
def test_real_text_negatives_are_unchanged_by_the_shared_reader(n, seed):
    from saerl_hf.signals.corruptions import real_text_negatives

    assert real_text_negatives(n, seed, packages=CHEAP_PACKAGES) == \
        _real_text_negatives_before_the_shared_reader(n, seed, CHEAP_PACKAGES)
