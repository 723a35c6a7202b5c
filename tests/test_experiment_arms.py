"""The dense and oracle arms' pools on real data with a tiny reader + SAE + policy: the dense pool reuses the
pass-rate labels (no second sampling), the oracle measures every other prompt chunk by chunk and resumes after an
interruption, and labelling_cost.json has its schema.

The tiny random policy solves nothing, so its measured pass rates are 0; the labels the main pool reuses vary (a
labelled set "from an earlier run", joined by id exactly as the dense pool then joins the main pool's), so the
difficulty proxy has something to fit.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, load_from_disk

from saerl_hf import experiment_arms
from saerl_hf.curate import CurateConfig, CurateError, run_curate
from saerl_hf.experiment import ExperimentConfig, run_yaml
from saerl_hf.experiment_arms import (
    ArmPoolError,
    arm_curated,
    keep_pass_rate_labels,
    run_curate_stage,
    write_labelling_cost,
)
from saerl_hf.pool import load_pool
from saerl_hf.signals.passrate import PassRateLabeller

N_LABELS = 50  # the difficulty proxy's min_labels


@pytest.fixture()
def calls(monkeypatch):
    """Every batch the real pass-rate labeller samples, counted (``fail_at``: the call that is interrupted)."""
    record = {"batches": 0, "rows": 0, "fail_at": None}
    real = PassRateLabeller.__call__

    def counted(self, batch):
        record["batches"] += 1
        if record["batches"] == record["fail_at"]:
            raise KeyboardInterrupt("killed mid-labelling")
        record["rows"] += len(batch["problem"])
        return real(self, batch)

    monkeypatch.setattr(PassRateLabeller, "__call__", counted)
    return record


@pytest.fixture()
def experiment(tiny_model_dir, tiny_sae_dir, tmp_path, data_dir) -> ExperimentConfig:
    """A pass-rate-labelled curate recipe (tiny reader, SAE and policy) and an experiment with the two arms."""
    settings = dict(output_dir=str(tmp_path / "curated"), sources=["mawps_singleop"], limit_per_source=80,
                    inject_noise=0.1, model=tiny_model_dir, sae=tiny_sae_dir, top_k=16, featurize_batch_size=8,
                    chunk_size=30, difficulty_label="pass_rate", pass_rate_model=tiny_model_dir, pass_rate_samples=2,
                    pass_rate_max_new_tokens=4, quality_train_size=30, n_clusters=3, prompts_per_batch=2)
    ids = load_pool(CurateConfig(**settings))[0]["id"][:N_LABELS]
    earlier = tmp_path / "earlier" / "labels"
    Dataset.from_dict({"id": ids, "pass_rate": [i / N_LABELS for i in range(N_LABELS)],
                       "n_samples": [2] * N_LABELS, "n_cut": [0] * N_LABELS}).save_to_disk(str(earlier))
    recipe = tmp_path / "curate.yaml"
    recipe.write_text(yaml.safe_dump({**settings, "pass_rate_labels": str(earlier)}))
    grpo = tmp_path / "grpo.yaml"
    grpo.write_text(yaml.safe_dump({"model_name_or_path": tiny_model_dir}))
    return ExperimentConfig(output_dir=str(tmp_path / "exp"), results_dir=str(tmp_path / "results"),
                            curate_config=str(recipe), grpo_config=str(grpo), runs=["saerl:0", "dense:0", "oracle:0"])


def test_dense_pool_reuses_the_labels_and_fits_every_probe_on_dense_features(experiment, calls):
    curated = run_curate_stage(experiment)
    assert calls["batches"] == 0  # the main pool joined its labels by id too
    dense = arm_curated(experiment, "dense", curated)
    assert dense == Path(f"{curated}-dense") and calls["batches"] == 0, "the dense pool sampled labels again"
    main_labels = load_from_disk(str(curated / "stages" / "labels_pass_rate"))
    dense_labels = load_from_disk(str(dense / "stages" / "labels_pass_rate"))
    assert dense_labels["id"] == main_labels["id"] and dense_labels["pass_rate"] == main_labels["pass_rate"]
    assert "dense_mean" in dense_labels.column_names
    for kind in ("difficulty", "quality", "clusters"):
        saved = json.loads((dense / "probes" / kind / "config.json").read_text())
        assert saved["config"]["features"] == "dense_mean" and saved["feature_width"] == 64, kind  # hidden 64
    scored = load_from_disk(str(dense / "stages" / "07_signals"))
    assert scored["id"] == load_from_disk(str(curated / "stages" / "07_signals"))["id"]  # the same pool
    values = run_yaml(experiment, "dense", 0, dense)
    assert values["dataset_name"] == str(dense / "stages" / "07_signals")
    assert (values["curriculum"], values["quality_threshold"]) == ("saerl", 0.5)
    assert values["heldout_dataset_name"] == run_yaml(experiment, "saerl", 0, curated)["heldout_dataset_name"]

    cost = write_labelling_cost(Path(experiment.results_dir) / "labelling_cost.json", experiment, curated,
                                {"saerl", "dense"})
    assert set(cost) == {"saerl", "dense"}
    saved = json.loads((Path(experiment.results_dir) / "labelling_cost.json").read_text())
    assert saved == cost
    for entry in saved.values():
        assert set(entry) == {"seconds_per_1000", "n_prompts", "what"}
        assert isinstance(entry["seconds_per_1000"], float) and entry["seconds_per_1000"] > 0
        assert isinstance(entry["n_prompts"], int) and entry["n_prompts"] > 0 and entry["what"]
    assert "dense features" in saved["dense"]["what"] and "sae features" in saved["saerl"]["what"]


def test_oracle_labels_every_prompt_resumes_and_reports_its_cost(experiment, calls, monkeypatch):
    monkeypatch.setattr(experiment_arms, "ORACLE_CHUNK_SIZE", 16)
    curated = run_curate_stage(experiment)
    pool = load_from_disk(str(curated / "stages" / "07_signals"))
    labels = load_from_disk(str(curated / "stages" / "labels_pass_rate"))
    known = dict(zip(labels["id"], labels["pass_rate"]))
    n_todo = len(pool) - len(known)
    assert n_todo > 32  # three chunks

    calls["fail_at"] = 2  # killed while labelling the second chunk
    with pytest.raises(KeyboardInterrupt):
        arm_curated(experiment, "oracle", curated)
    chunks = Path(f"{curated}-oracle") / "stages" / "oracle_pass_rate"
    assert len(list(chunks.glob("chunk_*/_SAERL_STAGE_DONE.json"))) == 1
    calls.update(batches=0, rows=0, fail_at=None)
    oracle = arm_curated(experiment, "oracle", curated)
    assert calls["rows"] == n_todo - 16  # only what the interrupted run had not finished
    scored = load_from_disk(str(oracle / "stages" / "07_signals"))
    assert scored["id"] == pool["id"] and scored["difficulty_proxy"] == pool["difficulty"]
    for row_id, rate, difficulty in zip(scored["id"], scored["pass_rate"], scored["difficulty"]):
        assert difficulty == pytest.approx(1.0 - rate)
        assert rate == known[row_id] if row_id in known else rate in (0.0, 0.5, 1.0)  # reused, or k=2 samples
    summary = json.loads((oracle / "oracle.json").read_text())
    assert (summary["n_pool"], summary["n_reused"], summary["n_measured"]) == (len(pool), len(known), n_todo)

    calls.update(batches=0, rows=0)
    assert arm_curated(experiment, "oracle", curated) == oracle and calls["batches"] == 0  # done: nothing again
    cost = write_labelling_cost(Path(experiment.results_dir) / "labelling_cost.json", experiment, curated, {"oracle"})
    # every chunk; not the labels stage, which joined the reused labels by id (a join is no labelling cost)
    assert set(cost) == {"oracle"} and cost["oracle"]["n_prompts"] == n_todo
    assert cost["oracle"]["seconds_per_1000"] > 0 and "k=2" in cost["oracle"]["what"]
    kept_path = Path(experiment.results_dir) / "oracle_pass_rates.json"
    measured = kept_path.read_text()
    slowed = json.loads(measured)  # one chunk spanned a pause: its wall clock is 100x
    max(slowed["chunks"].values(), key=lambda chunk: chunk["seconds"] / len(chunk["ids"]))["seconds"] *= 100
    kept_path.write_text(json.dumps(slowed))
    paused = write_labelling_cost(Path(experiment.results_dir) / "labelling_cost.json", experiment, curated, {"oracle"})
    assert paused["oracle"]["seconds_per_1000"] == cost["oracle"]["seconds_per_1000"]  # the median batch
    kept_path.write_text(measured)

    kept = json.loads((Path(experiment.results_dir) / "oracle_pass_rates.json").read_text())  # committed record
    assert sum(len(chunk["ids"]) for chunk in kept["chunks"].values()) == n_todo
    assert len(kept["chunks"]) == -(-n_todo // 16)  # one entry per chunk, the interrupted run's first included
    shutil.rmtree(oracle)  # a fresh machine: the oracle's stages are gone, the committed record is not
    assert arm_curated(experiment, "oracle", curated) == oracle and calls["batches"] == 0  # replayed, not sampled
    replayed = load_from_disk(str(oracle / "stages" / "07_signals"))
    assert replayed["id"] == scored["id"] and replayed["pass_rate"] == scored["pass_rate"]
    again = write_labelling_cost(Path(experiment.results_dir) / "labelling_cost.json", experiment, curated, {"oracle"})
    assert again == cost  # replaying costs no labelling time

    recipe = yaml.safe_load(Path(experiment.curate_config).read_text())  # labels made otherwise: never mixed in
    Path(experiment.curate_config).write_text(yaml.safe_dump({**recipe, "pass_rate_samples": 3}))
    with pytest.raises(ArmPoolError, match="other settings"):
        arm_curated(experiment, "oracle", curated)
    shutil.rmtree(oracle)
    with pytest.raises(ArmPoolError, match="oracle_pass_rates.json holds oracle labels made with other settings"):
        arm_curated(experiment, "oracle", curated)


def test_kept_labels_file_rebuilds_the_same_pool_without_sampling(experiment, calls):
    """The committed .jsonl of curate's labels stands in for the labels stage on a fresh machine."""
    curated = run_curate_stage(experiment)
    kept = keep_pass_rate_labels(experiment, curated)
    assert kept == Path(experiment.results_dir) / "pass_rate_labels.jsonl"
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    labels = load_from_disk(str(curated / "stages" / "labels_pass_rate"))
    assert [r["id"] for r in rows] == labels["id"] and [r["pass_rate"] for r in rows] == labels["pass_rate"]
    assert set(rows[0]) == {"id", "pass_rate", "n_samples", "n_cut"}
    before = kept.stat().st_mtime_ns
    assert keep_pass_rate_labels(experiment, curated) == kept and kept.stat().st_mtime_ns == before

    rebuilt = replace(experiment, curate_overrides=[f"--pass_rate_labels={kept}",
                                                    f"--output_dir={experiment.output_dir}/rebuilt"])
    again = run_curate_stage(rebuilt)
    assert calls["batches"] == 0  # nothing sampled
    assert load_from_disk(str(again / "stages" / "labels_pass_rate"))["pass_rate"] == labels["pass_rate"]
    first, second = (load_from_disk(str(d / "stages" / "07_signals")) for d in (curated, again))
    assert second["id"] == first["id"] and second["difficulty"] == pytest.approx(first["difficulty"])


def test_reused_labels_must_come_from_the_same_pool(tiny_model_dir, tiny_sae_dir, tmp_path, data_dir):
    labels = tmp_path / "labels"
    Dataset.from_dict({"id": ["not-in-the-pool"], "pass_rate": [0.5]}).save_to_disk(str(labels))
    config = CurateConfig(output_dir=str(tmp_path / "run"), sources=["mawps_singleop"], limit_per_source=24,
                          model=tiny_model_dir, sae=tiny_sae_dir, top_k=16, chunk_size=30, quality_train_size=20,
                          n_clusters=2, difficulty_label="pass_rate", pass_rate_labels=str(labels))
    with pytest.raises(CurateError, match="pass_rate_labels: 1 labelled ids are not in this pool"):
        run_curate(config)
    ids = load_pool(config)[0]["id"][:3]
    Dataset.from_dict({"id": ids, "difficulty": [0.5] * 3}).save_to_disk(str(tmp_path / "scores"))  # not labels
    with pytest.raises(CurateError, match="pass_rate_labels: .*scores has no 'pass_rate' column"):
        run_curate(replace(config, output_dir=str(tmp_path / "run2"), pass_rate_labels=str(tmp_path / "scores")))
    assert not (tmp_path / "run2" / "stages" / "labels_pass_rate").exists()  # no labels stage without labels
    with pytest.raises(CurateError, match="pass_rate_labels is set but difficulty_label is 'level'"):
        CurateConfig(pass_rate_labels=str(labels))
    assert ExperimentConfig(runs=["dense:0,1", "oracle:0"]).run_list() == [("dense", 0), ("dense", 1), ("oracle", 0)]
