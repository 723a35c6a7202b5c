"""The experiment report: regenerated from saved run logs only, with verdicts, steps-to-target and companions.

Run directories are written in the exact layout a real ``accelerate launch`` run leaves (grpo_summary.json,
trainer_state.json, wall_clock.json); test_demo covers producing them with real training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from saerl_hf.experiment import ExperimentConfig, ExperimentError
from saerl_hf.experiment_report import companion_section, write_report


def _write_run(root: Path, arm: str, seed: int, curve: list[tuple[int, float]], correct: float = 0.1,
               solved: dict[int, list[str]] | None = None) -> None:
    out = root / "runs" / arm / f"seed{seed}"
    out.mkdir(parents=True)
    heldout = [{"step": s, "heldout/heldout/accuracy": a, "heldout/heldout/n": 200} for s, a in curve]
    for entry in heldout if solved else []:  # which items a run solved, as the held-out evaluation logs them
        entry["correct_ids"] = solved[entry["step"]]
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


def test_report_states_the_verdict_and_steps_to_the_target(tmp_path):
    """Target 10% + 0.8 x 20 points = 26%: vanilla's line from 20% (step 20) to 30% (step 40) crosses it at step 32,
    SAERL's from 10% (step 0) to 40% (step 20) at 10.7, a third of vanilla's steps and +15 points at step 40."""
    curves = {("vanilla", s): [(20, 0.20), (40, 0.30)] for s in (0, 1, 2)}
    curves.update({("saerl", s): [(20, 0.40), (40, 0.45)] for s in (0, 1, 2)})
    config = _experiment(tmp_path, "main", curves)
    data = write_report(config)
    analysis, arms = data["analysis"], data["analysis"]["arms"]
    assert analysis["target"]["accuracy"] == pytest.approx(0.26) and analysis["item_noise"] == "binomial"
    assert arms["vanilla"]["steps_to_target"] == pytest.approx(32.0)
    assert arms["saerl"]["steps_to_target"] == pytest.approx(32 / 3) and arms["saerl"]["step_ratio"] == pytest.approx(1 / 3)
    assert arms["saerl"]["step_ratio_ci"][1] < 0.7  # the bootstrap over seeds and items keeps it under the goal
    assert arms["vanilla"]["auc"] == pytest.approx(0.2) and arms["saerl"]["auc_delta"] == pytest.approx(0.1375)
    assert arms["saerl"]["delta_points"] == 15.0 and arms["saerl"]["delta_2se"] < 15.0
    assert arms["saerl"]["points_verdict"][0] == arms["saerl"]["steps_verdict"][0] == arms["saerl"]["verdict"] == "win"
    assert abs(arms["vanilla"]["start_accuracy"] - 0.10) < 1e-9  # the shared step-0 score heads every curve
    report = (tmp_path / "docs" / "main.md").read_text()
    assert "vs vanilla: win.**" in report and "| 11 (33%) |" in report and "**Target: 26.0% held-out accuracy**" in report
    assert (tmp_path / "docs" / "main_curves.png").is_file()
    assert "| saerl | 0.1000 | 0.1000 | 0.9000 | 0.9000 | 44.5 | 14.5 |" in report  # completion length shrank
    write_report(config)  # regenerated from the same logs: the same page
    assert (tmp_path / "docs" / "main.md").read_text() == report


def test_seed_spread_can_turn_a_win_into_a_tie(tmp_path):
    """+15 points beats the binomial noise of n=200 (±9), but not a seed spread of 10-80%."""
    curves = {("vanilla", s): [(40, 0.30)] for s in (0, 1, 2)}
    curves.update({("saerl", s): [(40, acc)] for s, acc in zip((0, 1, 2), (0.10, 0.45, 0.80))})
    data = write_report(_experiment(tmp_path, "spread", curves))
    saerl = data["analysis"]["arms"]["saerl"]
    binomial_2se = 200 * ((0.3 * 0.7 + 0.45 * 0.55) / 200) ** 0.5
    assert saerl["delta_points"] == 15.0 and binomial_2se < 15.0 < saerl["delta_2se"]
    assert saerl["points_verdict"] == ["tie", "within 2 SE of vanilla"] and saerl["verdict"] == "tie"
    assert "| 40 | +15.0 | " in (tmp_path / "docs" / "spread.md").read_text()


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
    # With heldout_limit, step 0 (like every run) scores a subset: its accuracy is over the kept items it scored.
    (tmp_path / "res" / "step0.json").write_text(json.dumps({"step": 0, "accuracy": 0.5, "n": 3,
                                                             "correct_ids": ["b1"], "scored_ids": ["a1", "a2", "b1"]}))
    run = collect(tmp_path / "res")["vanilla"][0]
    assert run["curve"][0] == (0, 1 / 2) and run["solved"][0] == {"b1"}


def test_heldout_subset_is_shared_by_step0_every_arm_and_seed():
    """heldout_limit picks one subset for step 0 and every run (whatever its seed), spread over the stored order."""
    from saerl_hf.grpo_data import heldout_subset

    rows = [{"id": f"{'ab'[i // 50]}{i}"} for i in range(100)]  # stored source by source, like build_heldout's
    subset = heldout_subset(rows, 10)
    assert len(subset) == 10 and subset == heldout_subset(list(rows), 10)
    assert [r["id"] for r in subset] == sorted((r["id"] for r in subset), key=lambda i: int(i[1:]))
    assert {r["id"][0] for r in subset} == {"a", "b"}, "not just the first rows"
    assert heldout_subset(rows, 100) == rows and heldout_subset(rows, None) == rows


def test_isotonic_fit_and_steps_to_target_between_eval_points():
    """The max-min isotonic fit is scikit-learn's; the target is crossed on the straight line between eval points."""
    import numpy as np
    from sklearn.isotonic import IsotonicRegression

    from saerl_hf.experiment_curves import area, crossing, monotone_fit

    rows = np.random.default_rng(0).random((50, 5))
    assert np.allclose(monotone_fit(rows), [IsotonicRegression().fit_transform(np.arange(5), r) for r in rows])
    assert monotone_fit([0.09, 0.177, 0.173]).tolist() == pytest.approx([0.09, 0.175, 0.175])  # a dip is pooled
    reach = crossing([0, 30, 60], [[0.1, 0.2, 0.3], [0.3, 0.3, 0.3], [0.1, 0.12, 0.14]], 0.15)
    assert reach[0] == pytest.approx(15.0) and reach[1] == 0.0 and np.isinf(reach[2])  # never: no extrapolation
    assert area([0, 30, 60], [[0.1, 0.2, 0.3]])[0] == pytest.approx(0.2)


def test_target_is_fixed_once_vanilla_has_three_seeds(tmp_path):
    """Step 0 + 80% of vanilla's mean gain, written to target.json once vanilla has 3 seeds; later runs (another
    vanilla seed that gained more, a SAERL arm) are measured against it instead of moving it."""
    config = _experiment(tmp_path, "fixed", {("vanilla", s): [(20, 0.2), (40, 0.3)] for s in (0, 1)})
    root = Path(config.output_dir)
    assert not write_report(config)["analysis"]["target"]["frozen"] and not (root / "target.json").exists()
    _write_run(root, "vanilla", 2, [(20, 0.2), (40, 0.3)])
    write_report(config)
    assert json.loads((root / "target.json").read_text())["accuracy"] == pytest.approx(0.26)
    _write_run(root, "vanilla", 3, [(20, 0.5), (40, 0.7)])
    _write_run(root, "saerl", 0, [(20, 0.3), (40, 0.35)])
    write_report(config)
    target = json.loads((root / "results.json").read_text())["analysis"]["target"]
    assert target["accuracy"] == pytest.approx(0.26) and target["seeds"] == [0, 1, 2] and target["frozen"]
    assert "Fixed in `" in (tmp_path / "docs" / "fixed.md").read_text()


def _item_run(final: set, ids: list[str]) -> dict:
    return {"curve": [(0, 0.10), (60, len(final) / len(ids))], "solved": {0: set(ids[:20]), 60: final},
            "heldout_n": len(ids)}


def test_paired_items_narrow_the_difference_at_equal_steps():
    """+4 points from 8 items only the other arm solves (everything else the same items): beyond 2 SE paired over
    items, a win; within 2 SE of two independent binomial scores, a tie."""
    from saerl_hf.experiment_curves import compute_target, measure

    ids = [f"q{i}" for i in range(200)]
    vanilla, ours = set(ids[:40]), set(ids[:48])
    runs = {"vanilla": {s: _item_run(vanilla, ids) for s in range(3)}, "saerl": {s: _item_run(ours, ids) for s in range(3)}}
    target = compute_target(runs)
    paired = measure(runs, target, n_boot=200)
    row = paired["arms"]["saerl"]["delta_at_steps"][-1]
    assert paired["item_noise"] == "paired items" and row["paired"] and row["delta"] == pytest.approx(0.04)
    assert 2 * row["se"] < 0.04 and paired["arms"]["saerl"]["points_verdict"][0] == "win"
    # it solves a superset of vanilla's items, so every item resample has it faster: 34.3 of 48 steps, yet > 70%
    saerl = paired["arms"]["saerl"]
    assert saerl["step_ratio"] == pytest.approx(34.2857 / 48, rel=1e-4) and saerl["step_ratio_ci"][1] < 1
    assert saerl["steps_verdict"][0] == "tie" and saerl["steps_verdict"][1].startswith("faster than vanilla")
    for seeds in runs.values():
        for run in seeds.values():
            run["solved"] = {}
    binomial = measure(runs, target, n_boot=200)
    assert binomial["item_noise"] == "binomial" and binomial["arms"]["saerl"]["points_verdict"][0] == "tie"


def test_an_arm_that_never_reaches_the_target_and_the_labelling_cost(tmp_path):
    """Any arm name flows through (labelled by its key when it has no label); a fit that stays below the target is
    'never' and a loss; the labelling-cost table appears only when labelling_cost.json exists."""
    config = _experiment(tmp_path, "arms", {("vanilla", s): [(20, 0.2), (40, 0.3)] for s in (0, 1, 2)})
    root = Path(config.output_dir)
    _write_run(root, "extra", 0, [(20, 0.11), (40, 0.12)])
    write_report(config)
    assert "## Labelling cost" not in (tmp_path / "docs" / "arms.md").read_text()
    (root / "labelling_cost.json").write_text(json.dumps({"extra": {
        "seconds_per_1000": 5400.0, "n_prompts": 1061, "what": "k=8 pass rates"}}))
    extra = write_report(config)["analysis"]["arms"]["extra"]
    assert extra["steps_to_target"] is None and extra["never"] == 1 and extra["never_share"] > 0.9
    assert extra["steps_verdict"][0] == extra["points_verdict"][0] == extra["verdict"] == "loss"
    page = (tmp_path / "docs" / "arms.md").read_text()
    assert "| extra | 0 |" in page and "never (1 of 1 seeds)" in page and "**extra vs vanilla: loss.**" in page
    assert "| extra | 5,400 | 1,061 | k=8 pass rates |" in page and "(one seed: no seed spread)" in page


def test_a_vanilla_at_the_target_from_step_0_gives_no_steps_ratio():
    """No vanilla gain puts the target at step 0's accuracy: vanilla takes 0 steps, so there is no ratio to form,
    neither for the point (the verdict says why) nor in the resamples where vanilla's mean starts at the target."""
    import numpy as np

    from saerl_hf.experiment_curves import compute_target, measure

    def run(final: float) -> dict:
        return {"curve": [(0, 0.10), (60, final)], "solved": {}, "heldout_n": 200}

    runs = {"vanilla": {0: run(0.10)}, "saerl": {0: run(0.30)}}
    target = compute_target(runs)
    measured = measure(runs, target, n_boot=400)
    saerl = measured["arms"]["saerl"]
    assert target["accuracy"] == pytest.approx(0.10) and measured["arms"]["vanilla"]["steps_to_target"] == 0.0
    assert saerl["step_ratio"] is None and saerl["steps_verdict"] == ["n/a", "vanilla's fits are at the target from step 0"]
    assert 0 < saerl["step_ratio_share"] < 1 and all(np.isfinite(saerl["step_ratio_ci"]))  # no x/0 as 'never'


def test_a_run_without_held_out_points_or_their_count_is_named():
    """No silent n = 1 (binomial draws of 0 or 1) and no bare numpy error: the run and the fix are named."""
    from saerl_hf.experiment_curves import compute_target, measure

    def run(curve: list, n: int | None) -> dict:
        return {"curve": curve, "solved": {}, "heldout_n": n}

    vanilla = {s: run([(0, 0.1), (60, 0.2)], 200) for s in (0, 1)}
    target = compute_target({"vanilla": vanilla})
    with pytest.raises(ExperimentError, match=r"runs/saerl/seed0: no held-out item count .* Fix: rerun it"):
        measure({"vanilla": vanilla, "saerl": {0: run([(0, 0.1), (60, 0.3)], None)}}, target, n_boot=50)
    with pytest.raises(ExperimentError, match=r"runs/saerl/seed1: no held-out points"):
        measure({"vanilla": vanilla, "saerl": {1: run([], 200)}}, target, n_boot=50)


def test_train_rows_of_seeds_on_different_pools_show_their_span(tmp_path):
    """Seeds whose pools were rebuilt with a slightly different SAE train on different row counts: the table says so."""
    from saerl_hf.experiment_stats import aggregate, collect

    config = _experiment(tmp_path, "rows", {("saerl", s): [(20, 0.3), (40, 0.4)] for s in (0, 1)})
    summary = Path(config.output_dir) / "runs" / "saerl" / "seed1" / "grpo_summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "num_train_rows": 97}))
    assert aggregate(collect(Path(config.output_dir)))["saerl"]["num_train_rows"] == "97-100"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "num_train_rows": 100}))
    assert aggregate(collect(Path(config.output_dir)))["saerl"]["num_train_rows"] == 100
