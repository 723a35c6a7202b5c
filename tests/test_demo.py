"""The README's main job (`saerl-hf demo`), tiny: the testbed v3 design with a tiny reader/policy, a tiny SAE, a
2-step warm start, pass-rate labels, 2 LoRA GRPO steps per arm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datasets import Dataset, load_from_disk

from saerl_hf.curate import CurateConfig
from saerl_hf.demo import DemoConfig, curate_settings
from saerl_hf.pool import load_pool

REPO = Path(__file__).resolve().parents[1]
N_LABELS = 50  # the difficulty proxy's min_labels
SOURCES = ["mawps_singleop@60", "mawps_addsub@40"]


def _varied_labels(out: Path, tiny_model_dir: str, tmp_path: Path) -> Path:
    """Pass rates for the demo's pool ids: a tiny random policy solves nothing, and labels that do not vary
    cannot fit the proxy, so the test feeds the demo varied labels through its reuse flag."""
    demo = DemoConfig(output_dir=str(out), model=tiny_model_dir, sources=SOURCES, holdout_per_source=8)
    ids = load_pool(CurateConfig(**curate_settings(demo, sae="unused", policy=tiny_model_dir)))[0]["id"][:N_LABELS]
    labels = tmp_path / "labels"
    Dataset.from_dict({"id": ids, "pass_rate": [i / N_LABELS for i in range(N_LABELS)], "n_samples": [2] * N_LABELS,
                       "n_cut": [0] * N_LABELS}).save_to_disk(str(labels))
    return labels


def test_demo_runs_the_v3_design_end_to_end(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "demo"
    labels = _varied_labels(out, tiny_model_dir, tmp_path)
    cmd = [sys.executable, "-m", "saerl_hf.cli", "demo", "--output_dir", str(out), "--model", tiny_model_dir,
           "--sae_tokens", "6000", "--d_sae", "128", "--sae_k", "8", "--sae_max_texts", "150",
           "--warmstart_examples", "16", "--sources", *SOURCES, "--holdout_per_source", "8",
           "--pass_rate_labels", str(labels), "--heldout_limit", "16", "--quality_train_size", "40",
           "--n_clusters", "3", "--steps", "2", "--max_completion_length", "8", "--featurize_batch_size", "8"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "saerl-hf demo finished" in proc.stdout and "Where everything is" in proc.stdout
    assert "not evidence" in proc.stdout and "docs/RESULTS.md" in proc.stdout
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["sae"].get("trained") and summary["curated_rows"] > 0
    # v3: a small warm start is the policy every arm starts from
    warm = summary["warmstart"]
    assert warm["trained"] == summary["policy"] == str(out / "warmstart" / "model") and warm["steps"] == 2
    assert (out / "warmstart" / "model" / "config.json").is_file()
    # v3: difficulty = the policy's pass rates on a labelled subset, the proxy fitted on them
    curate_yaml = (out / "curate.yaml").read_text()
    assert "difficulty_label: pass_rate" in curate_yaml and f"pass_rate_model: {summary['policy']}" in curate_yaml
    labelled = load_from_disk(str(out / "curated" / "stages" / "labels_pass_rate"))
    assert len(labelled) == N_LABELS and "pass_rate" in labelled.column_names
    runs = {}
    for arm in ("vanilla", "saerl"):
        run_dir = out / "experiment" / "runs" / arm / "seed0"
        runs[arm] = json.loads((run_dir / "grpo_summary.json").read_text())
        assert runs[arm]["metrics"]["train_runtime"] > 0 and runs[arm]["script_args"]["curriculum"] == arm
        assert runs[arm]["heldout_curve"], "held-out accuracy was logged while training"
        config = (run_dir / "run_config.yaml").read_text()
        assert "use_peft: true" in config and f"model_name_or_path: {summary['policy']}" in config
        assert "reward_funcs:\n- correctness\n" in config, "correctness is the only reward"
        assert (run_dir / "adapter_config.json").is_file(), "the arm trained a LoRA adapter"
    assert runs["vanilla"]["quality_filter"] is None, "vanilla trains on the unfiltered pool"
    assert runs["saerl"]["quality_filter"]["threshold"] == 0.5 and runs["saerl"]["quality_filter"]["n_kept"] > 0
    report = (out / "REPORT.md").read_text()
    assert "vanilla" in report and "SAERL" in report and (out / "report_curves.png").is_file()
    assert "not evidence" in report
    assert (out / "curated" / "dataset" / "dataset_info.json").is_file()
    # rerun: every stage and run is reused, nothing retrained
    finished = [out / "sae" / "cfg.json", out / "warmstart" / "warmstart.json",
                out / "curated" / "dataset" / "dataset_info.json",
                *(out / "experiment" / "runs").glob("*/seed0/grpo_summary.json")]
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps, "the rerun retrained nothing"
    assert "saerl-hf demo finished" in again.stdout


def test_the_report_says_where_the_difficulty_labels_come_from():
    """Reused labels (--pass_rate_labels) were not sampled by the demo's policy, prompt count or k: the report's
    testbed lines say so instead of describing a labelling that did not happen."""
    from saerl_hf.demo import _testbed_lines

    sampled = " ".join(_testbed_lines(DemoConfig(), {"kind": "a small warm start (demo)"}))
    assert "Difficulty labels: the warm policy's pass rates (k=4) on 52 pool prompts; the SAE proxy" in sampled
    reused = " ".join(_testbed_lines(DemoConfig(pass_rate_labels="/x/labels"), {}))
    assert "Difficulty labels: pass-rate labels reused from /x/labels (not sampled by this demo)" in reused
    assert "k=4" not in reused and "52 pool prompts" not in reused
