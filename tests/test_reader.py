"""The reader resolved once (saerl_hf.reader): one model-path and SAE resolution per featurize run, in the
parent; the same features, provenance and fingerprint with and without a given Reader; the Reader pickles."""

from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import pytest

from saerl_hf import featurize_config as featurize_config_module
from saerl_hf import reader as reader_module
from saerl_hf.features import FeaturizeConfig, FeaturizeError, Featurizer, featurize, featurize_fingerprint
from saerl_hf.reader import Reader, resolve_reader
from saerl_hf.sparse import feature_provenance


@pytest.fixture()
def config(tiny_featurize_config):
    return tiny_featurize_config


def _spy(monkeypatch, module, name, log):
    """Wrap module.name so each call appends the calling pid to the file ``log`` (forked map workers too); the
    real function still runs."""
    real = getattr(module, name)

    def spy(*args, **kwargs):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def _calls(log) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def test_featurize_resolves_the_model_and_the_sae_once_in_the_parent(gsm, config, monkeypatch, tmp_path):
    monkeypatch.setattr(reader_module, "_SAE_HANDLES", {})  # so the SAE is loaded (resolved) here, not cached
    paths, spec, saes = tmp_path / "paths.log", tmp_path / "spec.log", tmp_path / "sae.log"
    _spy(monkeypatch, reader_module, "resolve_model_path", paths)
    _spy(monkeypatch, featurize_config_module, "resolve_model_path", paths)
    _spy(monkeypatch, FeaturizeConfig, "sae_spec", spec)
    _spy(monkeypatch, reader_module, "load_sae", saes)
    out = featurize(gsm, config, num_proc=2, map_batch_size=3)  # two forked map workers
    assert len(out) == len(gsm) and feature_provenance(out)["layer"] == 2
    for log in (paths, spec, saes):
        assert _calls(log) == [os.getpid()], log.name  # once, in the parent; never in a worker


def test_same_features_provenance_and_fingerprint_with_and_without_a_reader(gsm, config):
    reader = resolve_reader(config)
    given = Featurizer.from_config(config, reader=reader)
    lazy = Featurizer(sae=config.sae, model=config.model, top_k=16, dense=True, batch_size=4)
    assert given.reader() is reader and lazy.reader() == reader
    assert given.provenance() == lazy.provenance() and given.settings() == lazy.settings()
    assert featurize_fingerprint(gsm, given) == featurize_fingerprint(gsm, lazy)
    batch = gsm.select(range(4))[:]
    a, b = given(batch), lazy(batch)
    assert [list(i) for i in a["sae_idx"]] == [list(i) for i in b["sae_idx"]] and a["sae_l0"] == b["sae_l0"]
    np.testing.assert_array_equal(np.concatenate(a["sae_val"]), np.concatenate(b["sae_val"]))
    np.testing.assert_array_equal(np.stack(a["dense_mean"]), np.stack(b["dense_mean"]))


def test_reader_fields_pickle_and_freeze(config, tiny_model_dir, tiny_sae_dir):
    import torch

    reader = resolve_reader(config)
    assert not torch.cuda.is_initialized()  # resolved without touching CUDA (map workers fork afterwards)
    assert (reader.model, reader.path, reader.layer, reader.hook) == (tiny_model_dir, tiny_model_dir, 2,
                                                                      reader.sae_handle().hook or "model.layers.2")
    assert reader.sae == tiny_sae_dir and reader.d_in == 64 and reader.d_sae == 128 and reader.dtype == "float32"
    assert reader.sae_hash == reader.sae_handle().sha256 and reader.model_files  # the checkpoint's files
    assert pickle.loads(pickle.dumps(reader)) == reader  # noqa: S301 (our own bytes)
    featurizer = pickle.loads(pickle.dumps(Featurizer.from_config(config, reader=reader)))  # noqa: S301
    assert featurizer.reader() == reader
    with pytest.raises(dataclasses.FrozenInstanceError):
        reader.layer = 1
    assert isinstance(reader, Reader)


def test_a_layer_other_than_the_sae_s_fails_at_resolution(config):
    with pytest.raises(FeaturizeError, match="trained on block 2"):
        resolve_reader(dataclasses.replace(config, layer=1))
