"""`saerl-hf sae-sweep` on the tiny random reader with tiny budgets: two real SAEs trained, scored and reused.

The numbers are meaningless for a random reader; what is checked is the bookkeeping: one SAE per point, finite
training figures and a difficulty Spearman per point in the JSON, a rerun that trains nothing (the SAE files keep
their mtimes), a changed setting that retrains its point only, and the rendered section with every point's row.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import pytest

from saerl_hf.configs import ConfigError
from saerl_hf.sae_load import SAE_WEIGHTS
from saerl_hf.sae_sweep import SAESweepConfig, run_sweep, sweep_points
from saerl_hf.signals.report_sweep import best_point, render_sweep, sweep_section_for

# tests/conftest.py's TINY_SAE_SETTINGS, as the sweep's shared train-sae options
TRAIN_OPTIONS = ["train_batch_size=128", "buffer_tokens=2048", "lr=0.003", "sources=gsm8k:test,svamp",
                 "max_texts=150", "eval_tokens=1024", "context_size=128", "device=cpu"]


def _config(tmp_path, model: str, **overrides) -> SAESweepConfig:
    values = dict(model=model, d_sae=[64], k=[8], extra_points=["wide:d_sae=128,k=8"], training_tokens=4096,
                  train_options=TRAIN_OPTIONS, n_train=60, n_test=30, top_k=16, max_length=64, bootstrap=20,
                  output_dir=str(tmp_path / "sweep"), results=str(tmp_path / "docs" / "results" / "sae_sweep.json"))
    return SAESweepConfig(**{**values, **overrides})


def _weights_mtimes(results: dict) -> dict:
    from pathlib import Path

    return {p["name"]: (Path(p["sae_dir"]) / SAE_WEIGHTS).stat().st_mtime_ns for p in results["points"]}


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory, tiny_model_dir, data_dir):
    """One sweep of two points (the grid's w64 and the named extra point `wide`), run once for the module."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    config = _config(tmp_path, tiny_model_dir)
    return tmp_path, config, run_sweep(config)


def test_sweep_trains_one_sae_per_point_and_writes_finite_metrics(first_sweep):
    tmp_path, config, results = first_sweep
    saved = json.loads((tmp_path / "docs" / "results" / "sae_sweep.json").read_text())
    assert [p["name"] for p in saved["points"]] == ["w64-k8-4.096k", "wide"]
    assert sorted(p.name for p in (tmp_path / "sweep" / "saes").iterdir()) == ["w64-k8-4.096k", "wide"]
    assert saved["partial"] is False and saved["n_train"] == 60 and saved["n_test"] == 30
    for point, width in zip(saved["points"], (64, 128)):
        assert point["d_sae"] == width and point["reused"] is False and point["train_tokens"] > 0
        assert point["trained_on"] == "cpu"  # the device that trained it, from its sae_training.json
        for key in ("explained_variance", "l0", "dead_fraction", "train_seconds", "featurize_seconds",
                    "mean_pooled_l0"):
            assert math.isfinite(point[key]), (point["name"], key)
        difficulty = point["difficulty"]
        assert isinstance(difficulty["spearman"], float) and len(difficulty["ci95"]) == 2
    # The second point reads the same texts: every activation block comes from the first point's cache.
    first, wide = (p["activation_blocks_cached"] for p in saved["points"])
    assert first == 0 and wide == saved["points"][1]["activation_blocks"] > 0
    assert (tmp_path / "sweep" / "activations").is_dir()
    assert saved["dense"]["d_in"] == 64 and isinstance(saved["dense"]["spearman"], float)
    assert saved["command"].startswith("saerl-hf sae-sweep ") and "--extra_points wide:d_sae=128,k=8" in \
        saved["command"]


def test_rerun_reuses_every_sae(first_sweep):
    tmp_path, config, results = first_sweep
    before = _weights_mtimes(results)
    again = run_sweep(config)
    assert [p["reused"] for p in again["points"]] == [True, True]
    assert _weights_mtimes(again) == before
    assert [p["difficulty"]["spearman"] for p in again["points"]] == \
        pytest.approx([p["difficulty"]["spearman"] for p in results["points"]], nan_ok=True)


def test_a_changed_setting_retrains_that_point_only(first_sweep, tmp_path):
    _, config, results = first_sweep
    shutil.copytree(config.output_dir, tmp_path / "sweep")  # copy2 keeps the mtimes
    config = replace(config, output_dir=str(tmp_path / "sweep"), results=str(tmp_path / "sae_sweep.json"),
                     extra_points=["wide:d_sae=128,k=8,lr=0.002"])
    before = _weights_mtimes(json.loads(json.dumps(results).replace(str(first_sweep[1].output_dir),
                                                                   config.output_dir)))
    again = run_sweep(config)
    after = _weights_mtimes(again)
    assert [p["reused"] for p in again["points"]] == [True, False]
    assert after["w64-k8-4.096k"] == before["w64-k8-4.096k"] and after["wide"] != before["wide"]
    assert again["points"][1]["overrides"] == ["lr=0.002"]


def test_the_section_has_every_point_and_the_pick(first_sweep):
    tmp_path, config, results = first_sweep
    text = render_sweep(results)
    assert "## Which SAE? A sweep at 4.096k training tokens" in text and results["command"] in text
    for point in results["points"]:
        assert f"| `{point['name']}` | {point['layer']} | {point['d_sae']} | 8 | " in text
    assert "| dense baseline (mean residual, d_in 64) | 2 |" in text and "block 2. Every SAE" in text
    blocks = results["points"][1]["activation_blocks"]
    assert f"| {blocks:,} of {blocks:,} blocks |" in text  # the second point read its activations from the cache
    assert all(line.count("|") == text.splitlines()[text.splitlines().index(line) - 1].count("|")
               for line in text.splitlines() if line.startswith("| dense baseline"))  # as many cells as the rows
    assert "Best by difficulty Spearman" in text or "No SAE has a finite difficulty Spearman" in text
    saved = json.loads((tmp_path / "docs" / "results" / "sae_sweep.json").read_text())  # the latest run's
    assert sweep_section_for(tmp_path / "docs" / "signals.md") == render_sweep(saved)  # what report-signals appends
    assert sweep_section_for(tmp_path / "elsewhere" / "signals.md") == ""
    # A second sweep's results beside the first (the 10M-token GPU points): one section each, in name order.
    later = {**saved, "config": {**saved["config"], "training_tokens": 10_000_000}}
    (tmp_path / "docs" / "results" / "sae_sweep_10m.json").write_text(json.dumps(later))
    both = sweep_section_for(tmp_path / "docs" / "signals.md")
    assert both == render_sweep(saved) + render_sweep(later)
    assert both.index("A sweep at 4.096k training tokens") < both.index("A sweep at 10M training tokens")
    (tmp_path / "docs" / "results" / "sae_sweep_10m.json").unlink()


def test_points_on_other_blocks_record_their_block_and_its_dense_baseline(first_sweep, tmp_path):
    _, config, results = first_sweep
    shutil.copytree(config.output_dir, tmp_path / "sweep")
    config = replace(config, output_dir=str(tmp_path / "sweep"), results=str(tmp_path / "sae_sweep.json"),
                     extra_points=["block1:d_sae=64,k=8,layer=1"])
    again = run_sweep(config)
    assert [(p["name"], p["layer"], p["reused"]) for p in again["points"]] == [("w64-k8-4.096k", 2, True),
                                                                                ("block1", 1, False)]
    # Block 1 has its own activations (the cache is keyed by the hook) and its own dense baseline.
    assert again["points"][1]["activation_blocks_cached"] == 0
    assert sorted(again["dense_by_layer"]) == ["1", "2"] and again["dense"] == again["dense_by_layer"]["2"]
    assert again["dense_by_layer"]["1"]["spearman"] != again["dense_by_layer"]["2"]["spearman"]
    text = render_sweep(again)
    assert "blocks 1, 2 (each SAE reads its own" in text
    assert "| `block1` | 1 | 64 | 8 | " in text
    assert "| dense baseline (mean residual, d_in 64) | 1 |" in text and "| dense baseline (mean residual, d_in 64) | 2 |" in text


def test_best_point_says_when_the_intervals_overlap():
    def point(name, rho, low, high):
        return {"name": name, "difficulty": {"spearman": rho, "ci95": [low, high]}}

    overlapping = best_point([point("a", 0.50, 0.42, 0.57), point("b", 0.53, 0.46, 0.60), point("c", float("nan"),
                                                                                               0, 0)])
    assert overlapping["name"] == "b" and overlapping["overlapping"] == ["a"] and not overlapping["winner"]
    separated = best_point([point("a", 0.30, 0.22, 0.37), point("b", 0.53, 0.46, 0.60)])
    assert separated["winner"] and separated["overlapping"] == []
    assert best_point([]) is None


def test_points_are_named_and_checked_before_anything_trains(tmp_path):
    config = _config(tmp_path, "smollm2-135m", d_sae=[4096, 8192], k=[32], training_tokens=2_000_000,
                     override_sets=["lr=0.001", "lr=0.0005,sources=gsm8k:train,math:train"],
                     extra_points=["final:d_sae=8192,k=64,training_tokens=10000000", "d_sae=16384,k=32"])
    points = sweep_points(config)
    assert [p.name for p in points] == ["w4096-k32-2M-lr0.001", "w4096-k32-2M-lr0.0005-sourcesgsm8k_train_math_train",
                                        "w8192-k32-2M-lr0.001", "w8192-k32-2M-lr0.0005-sourcesgsm8k_train_math_train",
                                        "final", "w16384-k32-2M"]
    assert points[1].train_config.sources == "gsm8k:train,math:train" and points[1].train_config.lr == 0.0005
    assert points[4].train_config.training_tokens == 10_000_000 and points[4].train_config.k == 64
    assert points[0].train_config.output_dir == str(tmp_path / "sweep" / "saes" / "w4096-k32-2M-lr0.001")
    with pytest.raises(ConfigError, match="not 'key=value"):
        sweep_points(replace(config, override_sets=["lr"]))
    with pytest.raises(ConfigError, match="d_saee"):
        sweep_points(replace(config, extra_points=["d_saee=1"]))
    with pytest.raises(ConfigError, match="share a name"):
        sweep_points(replace(config, extra_points=["d_sae=4096,k=32,lr=0.001"]))
    with pytest.raises(ConfigError, match="no points"):
        sweep_points(replace(config, d_sae=[], extra_points=[]))


def test_the_recipe_resolves_to_its_grid():
    from pathlib import Path

    from trl import TrlParser

    from saerl_hf.configs import parse_config

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "smollm2-135m" / "sae" / "sweep.yaml"
    (config,) = parse_config(TrlParser((SAESweepConfig,)), ["--config", str(recipe)])
    points = sweep_points(config)
    assert [p.name for p in points] == [f"w{d}-k{k}-2M" for d in (4096, 8192, 16384) for k in (32, 64)]
    assert {(p.train_config.dtype, p.train_config.training_tokens, p.train_config.seed,
             p.train_config.general_text_fraction) for p in points} == {("bfloat16", 2_000_000, 0, 0.2)}
    assert {p.train_config.activation_cache for p in points} == {"outputs/sae-sweep/activations"}


def test_a_bad_point_is_one_error_line_before_anything_loads(tmp_path, capsys):
    from saerl_hf.cli import main as cli

    assert cli(["sae-sweep", "--d_sae", "64", "--k", "8", "--override_sets", "lr", "--output_dir",
                str(tmp_path)]) == 2
    assert "error: sae-sweep: override_sets entry 'lr' is not 'key=value" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_help_lists_every_option(capsys):
    from dataclasses import fields

    from saerl_hf.cli import main as cli

    with pytest.raises(SystemExit) as stopped:
        cli(["sae-sweep", "--help"])
    text = capsys.readouterr().out
    assert stopped.value.code == 0 and all(f"--{option.name}" in text for option in fields(SAESweepConfig))
