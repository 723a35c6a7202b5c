"""The experiment's check of the difficulty proxy: against measured pass rates outside its labelled subset, the
labels' test-retest ceiling, and the oracle arm's labels of the whole pool."""

from __future__ import annotations

import json

import pytest
import yaml

from saerl_hf.experiment import ExperimentConfig


def _config(tmp_path, calibration: list[dict]) -> ExperimentConfig:
    """An experiment whose GRPO recipe trains 'policy', with these calibration settings (measured pass rates)."""
    (tmp_path / "cal.json").write_text(json.dumps({"settings": calibration}))
    grpo = tmp_path / "grpo.yaml"
    grpo.write_text(yaml.safe_dump({"model_name_or_path": "policy"}))
    return ExperimentConfig(output_dir=str(tmp_path / "out"), results_dir=str(tmp_path / "results"),
                            grpo_config=str(grpo), calibration_json=str(tmp_path / "cal.json"),
                            report_path=str(tmp_path / "docs" / "r.md"))


def test_proxy_check_uses_only_problems_outside_the_labelled_subset(tmp_path):
    """The difficulty proxy is scored against measured pass rates on pool problems it was not fitted on."""
    from datasets import Dataset

    from saerl_hf.experiment_stats import check_proxy

    curated = tmp_path / "curated"
    ids = [f"q{i}" for i in range(12)]
    Dataset.from_dict({"id": ids, "source": ["a"] * 6 + ["b"] * 6, "difficulty": [float(i) for i in range(12)]}) \
        .save_to_disk(str(curated / "stages" / "07_signals"))
    Dataset.from_dict({"id": ids[:4], "pass_rate": [0.0, 0.25, 0.5, 0.75]}) \
        .save_to_disk(str(curated / "stages" / "labels_pass_rate"))
    # measured pass rates fall as the proxy's difficulty rises, except on the labelled rows (which must not count)
    problems = [{"id": q, "pass_rate": (0.9 + i / 40 if i < 4 else 1 - i / 12)} for i, q in enumerate(ids)]
    config = _config(tmp_path, [{"model": "policy", "problems": problems},
                                {"model": "other", "problems": [{"id": "q5", "pass_rate": 9}]}])
    record = check_proxy(config, curated)
    assert record["n"] == 8 and record["n_labelled"] == 4 and record["by_source"] == {"a": 2, "b": 6}
    assert record["spearman_difficulty_vs_pass_rate"] == -1.0
    assert record["ci95"] == pytest.approx([-1.0, -1.0])  # every resample of a perfect ranking is perfect
    # the labels' own pass rates against a second measurement of the same problems: the ceiling a proxy can reach
    assert record["label_retest"]["n"] == 4 and record["label_retest"]["rho"] == 1.0
    assert "out_of_fold" not in record  # 4 labels without features: too few to fit a proxy on folds
    assert "vs_oracle" not in record  # no oracle labels kept
    assert json.loads((tmp_path / "results" / "proxy_check.json").read_text()) == record
    assert check_proxy(config, tmp_path / "gone") == record  # no curated dir (a new machine): the kept record


def test_proxy_check_against_the_oracle_labels_of_the_whole_pool(tmp_path):
    """With the oracle arm's labels kept in the results dir, the proxy is also scored on every clean pool prompt
    outside its labelled subset, beside the per-source mean of its labels (the prior it has to beat)."""
    from datasets import Dataset

    from saerl_hf.experiment_stats import check_proxy

    curated = tmp_path / "curated"
    ids = [f"q{i}" for i in range(10)] + ["noise/0"]
    sources = ["a"] * 5 + ["b"] * 5 + ["noise"]
    Dataset.from_dict({"id": ids, "source": sources, "difficulty": [float(i) for i in range(11)]}) \
        .save_to_disk(str(curated / "stages" / "07_signals"))
    Dataset.from_dict({"id": ["q0", "q5"], "source": ["a", "b"], "pass_rate": [0.5, 0.25]}) \
        .save_to_disk(str(curated / "stages" / "labels_pass_rate"))
    # the truth falls with the proxy's difficulty on the clean unlabelled rows; the labelled rows and the injected
    # prompt are set against it and must not count
    truth = {q: (1 - i / 10 if q not in ("q0", "q5") else float(i % 2)) for i, q in enumerate(ids)}
    truth["noise/0"] = 1.0
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "oracle_pass_rates.json").write_text(json.dumps({"settings": {}, "chunks": {
        "0": {"ids": ids[:6], "pass_rate": [truth[q] for q in ids[:6]]},
        "6": {"ids": ids[6:], "pass_rate": [truth[q] for q in ids[6:]]}}}))
    config = _config(tmp_path, [])
    record = check_proxy(config, curated)
    assert record["label_retest"]["rho"] is None  # no labelled problem in the calibration: nothing to retest
    oracle = record["vs_oracle"]
    assert oracle["n"] == oracle["n_pool_clean_unlabelled"] == 8 and oracle["k"] is None
    assert oracle["spearman_difficulty_vs_pass_rate"] == -1.0
    assert oracle["zero_share"] == 0.0
    # source a's labels pass more often than b's: the prior ranks every b row harder, which agrees with the truth
    assert oracle["source_mean"]["spearman_difficulty_vs_pass_rate"] < -0.5
