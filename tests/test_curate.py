"""`saerl-hf curate` end to end on real data with a tiny reader + SAE: columns, counts, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import load_from_disk

from saerl_hf.curate import SIGNALS_VERSION, CurateConfig, CurateError, run_curate
from saerl_hf.stages import content_hash

REPO = Path(__file__).resolve().parents[1]


def small_config(tiny_model_dir, tiny_sae_dir, out, **overrides) -> CurateConfig:
    settings = dict(
        output_dir=str(out), sources=["mawps_singleop", "gsm8k:test", "math:test"], limit_per_source=70,
        holdout_per_source=10, inject_noise=0.1, model=tiny_model_dir, sae=tiny_sae_dir, top_k=16,
        featurize_batch_size=8, chunk_size=40, source_levels=["mawps_singleop=0.5", "gsm8k=1.5"],
        quality_train_size=70, n_clusters=4, prompts_per_batch=4,
    )
    settings.update(overrides)
    return CurateConfig(**settings)


@pytest.fixture(scope="module")
def curated(tiny_model_dir, tiny_sae_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("curate") / "run"
    summary = run_curate(small_config(tiny_model_dir, tiny_sae_dir, out), command="pytest")
    return out, summary


def test_curated_dir_has_every_column_artefact_and_count(curated):
    out, summary = curated
    ds = load_from_disk(str(out / "dataset"))
    for column in ("sae_idx", "sae_val", "sae_l0", "difficulty", "quality", "cluster", "curriculum_rank"):
        assert column in ds.column_names
    assert ds["curriculum_rank"] == list(range(len(ds))), "rows are stored in curriculum order"
    counts = summary["counts"]
    assert counts["pool"] == 3 * 70 + counts["by_source"]["noise"] and counts["by_source"]["noise"] > 0
    assert counts["quality"]["n_kept"] + counts["quality"]["n_dropped"] == counts["pool"]
    assert counts["dedup"]["n_kept"] == counts["kept"] == len(ds)
    assert sum(counts["dropped_by_source"].values()) == counts["pool"] - len(ds)
    assert all(q >= 0.5 for q in ds["quality"])
    for probe in ("difficulty", "quality", "clusters"):
        files = {p.suffix for p in (out / "probes" / probe).iterdir()}
        assert files == {".safetensors", ".json"}, "probes are safetensors + JSON, never pickles"
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["sae_hash"] and provenance["d_sae"] == 128 and provenance["pooling"] == "mean+last"
    assert provenance["pooling_parts"] == {"difficulty": "mean", "cluster": "mean"}  # quality reads both parts
    holdout = load_from_disk(str(out / "holdout"))
    assert len(holdout) == 30 and not set(holdout["id"]) & set(ds["id"]), "holdout is never curated"
    assert summary["content_hash"] == content_hash(ds)


def test_quality_set_reuses_pool_features_and_featurizes_only_corruptions(curated, tiny_model_dir, tiny_sae_dir):
    """The probe's clean rows carry their pool rows' features (copied, not recomputed); those equal what the
    featurizer computes for them afresh, and only the generated corruptions went through the reader."""
    from saerl_hf.features import FeaturizeConfig, featurize

    out, _ = curated
    quality_set = load_from_disk(str(out / "stages" / "04_quality_set"))
    chunks = sorted((out / "stages" / "05_featurize_quality").glob("chunk_*"))
    featurized_rows = sum(len(load_from_disk(str(c))) for c in chunks)
    assert featurized_rows == quality_set["is_clean"].count(0)
    pool = load_from_disk(str(out / "stages" / "07_signals"))
    clean = quality_set.filter(lambda r: r["is_clean"] == 1).select(range(5))
    by_id = {i: n for n, i in enumerate(pool["id"])}
    fresh = featurize(clean, FeaturizeConfig(model=tiny_model_dir, sae=tiny_sae_dir, top_k=16, batch_size=8,
                                             pooling="mean+last", cache_dir=str(out / "fresh_cache")))
    for row in fresh:
        copied = pool[by_id[row["pool_id"]]]
        assert row["sae_idx"] == copied["sae_idx"]
        np.testing.assert_allclose(row["sae_val"], copied["sae_val"], atol=1e-4)


def test_rerun_reuses_every_stage_and_gives_the_same_hash(curated, tiny_model_dir, tiny_sae_dir):
    out, summary = curated
    markers = {p: p.stat().st_mtime_ns for p in (out / "stages").rglob("_SAERL_STAGE_DONE.json")}
    assert len(markers) > 9, "every stage and featurize chunk left a done marker"
    again = run_curate(small_config(tiny_model_dir, tiny_sae_dir, out))
    assert again["content_hash"] == summary["content_hash"]
    after = {p: p.stat().st_mtime_ns for p in (out / "stages").rglob("_SAERL_STAGE_DONE.json")}
    assert after == markers, "a rerun reuses every finished stage instead of rewriting it"


def test_other_settings_in_the_same_dir_are_refused(curated, tiny_model_dir, tiny_sae_dir):
    out, _ = curated
    with pytest.raises(CurateError, match="other settings.*pooling"):
        run_curate(small_config(tiny_model_dir, tiny_sae_dir, out, pooling="mean+max"))


def test_bad_config_values_name_the_field():
    with pytest.raises(CurateError, match=r"curriculum must be saerl \| difficulty \| cluster \| random, got .hardest-first."):
        CurateConfig(curriculum="hardest-first")
    with pytest.raises(CurateError, match="source_levels entry 'gsm8k'"):
        CurateConfig(source_levels=["gsm8k"])
    with pytest.raises(CurateError, match="either quality_threshold or quality_keep_fraction"):
        CurateConfig(quality_threshold=0.5, quality_keep_fraction=0.8)
    with pytest.raises(CurateError, match=r"cluster_pooling_part: .*'last' is not a part of .* pooling 'mean\+max'"):
        CurateConfig(pooling="mean+max", cluster_pooling_part="last")
    with pytest.raises(CurateError, match=r"difficulty_pooling_part: .*'mean' is not a part of .*'max'.*auto"):
        CurateConfig(pooling="max", difficulty_pooling_part="mean")
    with pytest.raises(CurateError, match=r"pooling must be one of .*got 'mean\+lst'"):
        CurateConfig(pooling="mean+lst")  # a typo in the pooling is named as such, not as a part
    auto = CurateConfig(pooling="max")  # auto: the mean part where the pooling has one, else every column
    assert (auto.difficulty_pooling_part, auto.quality_pooling_part, auto.cluster_pooling_part) == (None, None, None)
    default = CurateConfig()
    assert (default.pooling, default.difficulty_pooling_part, default.quality_pooling_part,
            default.cluster_pooling_part) == ("mean+last", "mean", None, "mean")
    whole = CurateConfig(difficulty_pooling_part="null", cluster_pooling_part="last")
    assert whole.difficulty_pooling_part is None and whole.cluster_pooling_part == "last"
    with pytest.warns(UserWarning, match=r"top_k 64 keeps the largest entries of both parts of mean\+last"):
        CurateConfig(top_k=64)


def test_kill_9_mid_run_then_rerun_gives_the_identical_dataset(curated, tiny_model_dir, tiny_sae_dir, tmp_path):
    _, reference = curated
    config = small_config(tiny_model_dir, tiny_sae_dir, tmp_path / "killed")
    values = {k: v for k, v in vars(config).items()}
    yaml_path = tmp_path / "curate.yaml"
    yaml_path.write_text(yaml.safe_dump(values))
    cmd = [sys.executable, "-m", "saerl_hf.cli", "curate", "--config", str(yaml_path)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = tmp_path / "killed" / "stages" / "03_featurize"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if chunks.is_dir() and any(p.name.startswith("chunk_") and not p.name.endswith(".tmp") for p in chunks.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "dataset").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["content_hash"] == reference["content_hash"]
    assert np.isfinite(summary["timings_s"]["featurize"])


def test_a_run_made_before_a_new_setting_existed_still_resumes(curated, tiny_model_dir, tiny_sae_dir):
    """A stages/config.json written before a CurateConfig field was added compares that field at its default."""
    out, summary = curated
    path = out / "stages" / "config.json"
    saved = json.loads(path.read_text())
    try:
        path.write_text(json.dumps({k: v for k, v in saved.items() if k != "reader_dtype"}))
        again = run_curate(small_config(tiny_model_dir, tiny_sae_dir, out), command="pytest")
        assert again["content_hash"] == summary["content_hash"]
        with pytest.raises(CurateError, match="reader_dtype"):
            run_curate(small_config(tiny_model_dir, tiny_sae_dir, out, reader_dtype="bfloat16"), command="pytest")
    finally:
        path.write_text(json.dumps(saved))


def test_stages_fitted_by_an_older_signals_version_are_refitted_and_the_pool_kept(curated, tiny_model_dir,
                                                                                     tiny_sae_dir, caplog):
    """A run from before idf-weighted clusters (no signals_version) resumes: its probes and later stages are fitted
    again, its featurized chunks are reused; the refitted run equals the reference."""
    out, summary = curated
    path = out / "stages" / "config.json"
    saved = json.loads(path.read_text())
    assert saved["signals_version"] == SIGNALS_VERSION
    featurized = {p: p.stat().st_mtime_ns for p in (out / "stages" / "03_featurize").rglob("_SAERL_STAGE_DONE.json")}
    probes = (out / "stages" / "06_probes" / "_SAERL_STAGE_DONE.json").stat().st_mtime_ns
    # what the older version fitted differs: its copied-out probes and dataset must not survive the refit
    (out / "probes" / "clusters" / "config.json").write_text("{}")
    (out / "dataset" / "stale.txt").write_text("from the older version")
    path.write_text(json.dumps({k: v for k, v in saved.items() if k != "signals_version"}))
    with caplog.at_level("WARNING", logger="saerl_hf.curate"):
        again = run_curate(small_config(tiny_model_dir, tiny_sae_dir, out), command="pytest")
    assert "fitted by signals version 1" in caplog.text and "06_probes" in caplog.text
    assert again["content_hash"] == summary["content_hash"]
    assert (out / "stages" / "06_probes" / "_SAERL_STAGE_DONE.json").stat().st_mtime_ns != probes
    assert json.loads((out / "probes" / "clusters" / "config.json").read_text()) != {}
    assert not (out / "dataset" / "stale.txt").exists()
    assert {p: p.stat().st_mtime_ns for p in (out / "stages" / "03_featurize").rglob("_SAERL_STAGE_DONE.json")} \
        == featurized
    assert json.loads(path.read_text())["signals_version"] == SIGNALS_VERSION


def _torchrun(args, tmp_path, timeout=600):
    """``torchrun --nproc_per_node 2 -m saerl_hf.cli ...``: two CPU processes (gloo), like `accelerate launch`."""
    import torch

    torchrun = str(Path(sys.executable).with_name("torchrun"))
    port = str(29500 + (os.getpid() + 13) % 1000)
    # the same threads per process as this one, so float reductions match the single-process reference
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))
    return subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", port, "-m", "saerl_hf.cli", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_processes_curate_the_dataset_one_process_does(curated, tiny_model_dir, tiny_sae_dir, tmp_path):
    """Data-parallel curate: each rank featurizes its chunks, rank 0 assembles; the same rows, hash and counts."""
    _, reference = curated
    config = small_config(tiny_model_dir, tiny_sae_dir, tmp_path / "two")
    yaml_path = tmp_path / "curate.yaml"
    yaml_path.write_text(yaml.safe_dump(dict(vars(config))))
    done = _torchrun(["curate", "--config", str(yaml_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["content_hash"] == reference["content_hash"]
    assert summary["counts"] == reference["counts"]
    chunks = sorted((tmp_path / "two" / "stages" / "03_featurize").glob("chunk_*/_SAERL_STAGE_DONE.json"))
    ranks = [json.loads(p.read_text())["rank"] for p in chunks]
    assert ranks == [i % 2 for i in range(len(chunks))] and len(chunks) >= 4  # chunk i was featurized by rank i % 2
