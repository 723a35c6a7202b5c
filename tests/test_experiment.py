"""The experiment report: regenerated from saved run logs only, with verdicts, steps-to-target and companions.

Run directories are written in the exact layout a real ``accelerate launch`` run leaves (grpo_summary.json,
trainer_state.json, wall_clock.json); test_demo covers producing them with real training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from saerl_hf.experiment import ExperimentConfig
from saerl_hf.experiment_report import companion_section, write_report


def _write_run(root: Path, arm: str, seed: int, curve: list[tuple[int, float]], correct: float = 0.1) -> None:
    out = root / "runs" / arm / f"seed{seed}"
    out.mkdir(parents=True)
    heldout = [{"step": s, "heldout/heldout/accuracy": a, "heldout/heldout/n": 200} for s, a in curve]
    (out / "grpo_summary.json").write_text(json.dumps({
        "heldout_curve": heldout, "num_train_rows": 100, "quality_filter": None,
        "metrics": {"train_runtime": 60.0, "seconds_per_step": 1.5}}))
    steps = [{"step": s, "reward": correct, "rewards/correctness_reward/mean": correct,
              "rewards/format_reward/mean": 0.9, "completions/mean_length": 50.0 - s} for s in range(1, 41)]
    (out / "trainer_state.json").write_text(json.dumps({"log_history": steps}))
    (out / "wall_clock.json").write_text(json.dumps({"seconds": 66.0}))


def _experiment(tmp_path: Path, name: str, curves: dict, **extra) -> ExperimentConfig:
    root = tmp_path / name
    for (arm, seed), curve in curves.items():
        _write_run(root, arm, seed, curve)
    (root / "step0.json").write_text(json.dumps({"step": 0, "accuracy": 0.10, "n": 200}))
    config = ExperimentConfig(output_dir=str(root), report_path=str(tmp_path / "docs" / f"{name}.md"),
                              title=f"{name} title", runs=[f"{arm}:{seed}" for arm, seed in curves], **extra)
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({
        "output_dir": config.output_dir, "report_path": config.report_path, "title": config.title}))
    return config


def test_report_states_the_verdict_and_steps_to_vanilla(tmp_path):
    curves = {("vanilla", s): [(20, 0.20), (40, 0.30)] for s in (0, 1, 2)}
    curves.update({("saerl", s): [(20, 0.40), (40, 0.45)] for s in (0, 1, 2)})
    config = _experiment(tmp_path, "main", curves)
    data = write_report(config)
    arms = data["analysis"]["arms"]
    assert arms["saerl"]["delta_points"] == 15.0 and arms["saerl"]["verdict"] == "win"
    assert arms["saerl"]["steps_to_vanilla_final"] == 20 and arms["saerl"]["step_ratio"] == 0.5
    assert abs(arms["vanilla"]["start_accuracy"] - 0.10) < 1e-9  # the shared step-0 score heads every curve
    report = (tmp_path / "docs" / "main.md").read_text()
    assert "win" in report and "20 (50%)" in report and (tmp_path / "docs" / "main_curves.png").is_file()
    assert "| saerl | 0.1000 | 0.1000 | 0.9000 | 0.9000 | 44.5 | 14.5 |" in report  # completion length shrank
    write_report(config)  # regenerated from the same logs: the same page
    assert (tmp_path / "docs" / "main.md").read_text() == report


def test_seed_spread_can_turn_a_win_into_a_tie(tmp_path):
    """+15 points beats the binomial noise of n=200 (±9), but not a seed spread of 10-80%."""
    curves = {("vanilla", s): [(40, 0.30)] for s in (0, 1, 2)}
    curves.update({("saerl", s): [(40, acc)] for s, acc in zip((0, 1, 2), (0.10, 0.45, 0.80))})
    data = write_report(_experiment(tmp_path, "spread", curves))
    saerl = data["analysis"]["arms"]["saerl"]
    assert saerl["delta_points"] == 15.0 and data["analysis"]["noise_2se"] < 0.15 < saerl["seed_2se"]
    assert saerl["verdict"].startswith("tie")
    assert "over seeds" in (tmp_path / "docs" / "spread.md").read_text()


def test_companion_experiment_is_summarised_beside_the_main_result(tmp_path):
    transfer = {("vanilla", 0): [(20, 0.10), (40, 0.12)], ("saerl", 0): [(20, 0.11), (40, 0.13)]}
    pending = tmp_path / "pending.yaml"
    pending.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "nothing"), "title": "Not yet"}))
    assert "Not run yet" in "\n".join(companion_section(str(pending), tmp_path))

    write_report(_experiment(tmp_path, "transfer", transfer))
    main = _experiment(tmp_path, "main", {("vanilla", 0): [(20, 0.2)], ("saerl", 0): [(20, 0.2)]},
                       companions=[str(tmp_path / "transfer.yaml"), str(pending)])
    write_report(main)
    report = (tmp_path / "docs" / "main.md").read_text()
    assert "## transfer title" in report and "[transfer.md](transfer.md)" in report
    assert "12.0 ± 0.0 (step 40)" in report and "13.0 ± 0.0 (step 40)" in report and "## Not yet" in report


def test_final_models_are_probed_on_a_harder_test_split(tmp_path, tiny_model_dir, data_dir):
    """Each finished run's saved model and the untrained policy are scored once on GSM8K test; reruns reuse it."""
    from saerl_hf._testing import save_tiny_model
    from saerl_hf.experiment import probe_runs

    config = _experiment(tmp_path, "probe", {("vanilla", 0): [(20, 0.2)], ("saerl", 0): [(20, 0.2)]},
                         probe_benchmark="gsm8k", probe_limit=3, probe_max_new_tokens=4)
    grpo = tmp_path / "grpo.yaml"
    grpo.write_text(yaml.safe_dump({"model_name_or_path": tiny_model_dir}))
    config.grpo_config = str(grpo)
    save_tiny_model(Path(config.output_dir) / "runs" / "saerl" / "seed0")  # vanilla kept no model: not probed
    probe_runs(config)
    root = Path(config.output_dir)
    record = json.loads((root / "runs" / "saerl" / "seed0" / "probe.json").read_text())
    assert record["benchmark"] == "gsm8k" and record["n"] == 3 and 0.0 <= record["accuracy"] <= 1.0
    assert (root / "probe_step0.json").is_file() and not (root / "runs" / "vanilla" / "seed0" / "probe.json").exists()
    stamp = (root / "probe_step0.json").stat().st_mtime_ns
    probe_runs(config)
    assert (root / "probe_step0.json").stat().st_mtime_ns == stamp
    write_report(config)
    report = (tmp_path / "docs" / "probe.md").read_text()
    assert "Harder probe: gsm8k test, first 3 items" in report and "| saerl | 1 |" in report


def _gate_run(curve, solved):
    return {"curve": curve, "solved": solved, "heldout_n": 100}


def test_learning_gate_paired_over_items():
    """The same 100 items at both steps: a +8 point gain from 8 items that flipped (none lost) is far beyond
    2 paired SE, while the binomial SE of two independent 100-item scores would call it noise."""
    from saerl_hf.experiment_stats import learning_gate

    before = {f"q{i}" for i in range(10)}
    seeds = {s: _gate_run([(0, 0.10), (60, 0.18)], {0: before, 60: before | {f"q{i}" for i in range(10, 18)}})
             for s in range(3)}
    gate = learning_gate(seeds, 100)
    assert gate["paired"] and gate["passed"] and abs(gate["gain"] - 0.08) < 1e-9
    assert 2 * gate["se"] < 0.08 < 2 * ((0.1 * 0.9 + 0.18 * 0.82) / 100) ** 0.5
    # the same net gain from 20 gained and 12 lost items is noise
    churn = before - {f"q{i}" for i in range(8)} | {f"q{i}" for i in range(10, 26)} | {"q8", "q9"}
    noisy = {s: _gate_run([(0, 0.10), (60, 0.18)], {0: before, 60: churn | {f"q{i}" for i in range(90, 94)}})
             for s in range(3)}
    assert not learning_gate(noisy, 100)["passed"]


def test_learning_gate_needs_three_seeds_and_counts_seed_spread():
    from saerl_hf.experiment_stats import learning_gate

    ids = {0: {"a"}, 60: {"a", "b", "c", "d", "e", "f", "g", "h", "i"}}
    assert not learning_gate({0: _gate_run([(0, 0.01), (60, 0.09)], ids)}, 100)["passed"]  # one seed: not yet
    spread = {0: _gate_run([(0, 0.01), (60, 0.30)], ids), 1: _gate_run([(0, 0.01), (60, 0.0)], ids),
              2: _gate_run([(0, 0.01), (60, 0.0)], ids)}
    gate = learning_gate(spread, 100)
    assert gate["seeds"] == 3 and not gate["passed"]  # a mean gain carried by one seed of three


def test_report_has_the_gate_and_mechanism_columns(tmp_path):
    curves = {("vanilla", s): [(20, 0.20), (40, 0.30)] for s in (0, 1, 2)}
    config = _experiment(tmp_path, "gate", curves)
    write_report(config)
    report = (tmp_path / "docs" / "gate.md").read_text()
    assert "## Did it learn?" in report and "| vanilla | 3 | +20.0 |" in report and "binomial + seeds" in report
    assert "groups without reward spread" in report


def test_finished_runs_are_kept_in_the_results_dir_and_not_rerun(tmp_path):
    """A finished run's small logs are copied to results_dir (committed); the report reads them there and a later
    session, whose outputs/ is gone, skips the run instead of training it again."""
    from saerl_hf.experiment import RUN_LOGS, keep_run_logs, launch_run

    config = _experiment(tmp_path, "kept", {("vanilla", s): [(20, 0.2), (40, 0.3)] for s in (0, 1)})
    config.results_dir = str(tmp_path / "docs" / "results" / "kept")
    for seed in (0, 1):
        run = Path(config.output_dir) / "runs" / "vanilla" / f"seed{seed}"
        (run / "model.safetensors").write_bytes(b"weights stay in outputs/")
        kept = keep_run_logs(config, run, "vanilla", seed)
        assert {p.name for p in kept.iterdir()} == {n for n in RUN_LOGS if (run / n).is_file()}
    (Path(config.results_dir) / "step0.json").write_text(json.dumps({"step": 0, "accuracy": 0.10, "n": 200}))
    import shutil

    shutil.rmtree(config.output_dir)  # a new machine: outputs/ is gone, the committed logs are not
    grpo = tmp_path / "grpo.yaml"
    grpo.write_text(yaml.safe_dump({"model_name_or_path": "unused", "max_steps": 40}))
    config.grpo_config = str(grpo)
    launch_run(config, "vanilla", 0, tmp_path / "curated")  # returns at once: no training, no output dir made
    assert not Path(config.output_dir).exists()
    data = write_report(config)
    assert data["aggregate"]["vanilla"]["seeds"] == [0, 1] and data["aggregate"]["vanilla"]["mean"] == [0.1, 0.2, 0.3]
    assert (Path(config.results_dir) / "results.json").is_file()


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
    (tmp_path / "cal.json").write_text(json.dumps({"settings": [
        {"model": "policy", "problems": problems}, {"model": "other", "problems": [{"id": "q5", "pass_rate": 9}]}]}))
    grpo = tmp_path / "grpo.yaml"
    grpo.write_text(yaml.safe_dump({"model_name_or_path": "policy"}))
    config = ExperimentConfig(output_dir=str(tmp_path / "out"), results_dir=str(tmp_path / "results"),
                              grpo_config=str(grpo), calibration_json=str(tmp_path / "cal.json"),
                              report_path=str(tmp_path / "docs" / "r.md"))
    record = check_proxy(config, curated)
    assert record["n"] == 8 and record["n_labelled"] == 4 and record["by_source"] == {"a": 2, "b": 6}
    assert record["spearman_difficulty_vs_pass_rate"] == -1.0
    assert record["ci95"] == pytest.approx([-1.0, -1.0])  # every resample of a perfect ranking is perfect
    # the labels' own pass rates against a second measurement of the same problems: the ceiling a proxy can reach
    assert record["label_retest"]["n"] == 4 and record["label_retest"]["rho"] == 1.0
    assert "out_of_fold" not in record  # 4 labels without features: too few to fit a proxy on folds
    assert json.loads((tmp_path / "results" / "proxy_check.json").read_text()) == record
    assert check_proxy(config, tmp_path / "gone") == record  # no curated dir (a new machine): the kept record


def test_one_heldout_set_for_every_arm_and_step0_on_the_same_items(tmp_path):
    """Held-out problems whose text is also in the pool are left out once, for every arm (not per run against its
    own train rows), and a step-0 score made before that is restricted to the same items."""
    from datasets import Dataset

    from saerl_hf.experiment import build_heldout
    from saerl_hf.experiment_stats import collect

    curated = tmp_path / "curated"
    Dataset.from_dict({"id": ["a1", "a2", "b1", "b2"], "problem": ["pa1", "shared", "pb1", "pb2"],
                       "source": ["a", "a", "b", "b"]}).save_to_disk(str(curated / "holdout"))
    Dataset.from_dict({"id": ["x"], "problem": ["shared"]}).save_to_disk(str(curated / "stages" / "07_signals"))
    config = ExperimentConfig(output_dir=str(tmp_path / "out"), results_dir=str(tmp_path / "res"),
                              heldout_per_source=2)
    from datasets import load_from_disk

    heldout = load_from_disk(str(build_heldout(config, curated)))
    assert list(heldout["id"]) == ["a1", "b1", "b2"]  # round-robin over sources, 'shared' left out
    ids = json.loads((tmp_path / "res" / "heldout_ids.json").read_text())
    assert ids["n"] == 3 and ids["left_out_in_pool"] == 1
    (tmp_path / "res" / "step0.json").write_text(json.dumps({"step": 0, "accuracy": 0.5, "n": 4,
                                                             "correct_ids": ["a2", "b1"]}))
    _write_run(tmp_path / "res", "vanilla", 0, [(10, 2 / 3)])
    run = collect(tmp_path / "res")["vanilla"][0]
    assert run["curve"][0] == (0, 1 / 3) and run["solved"][0] == {"b1"}
