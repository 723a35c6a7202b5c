"""The README's main job (`saerl-hf demo`), tiny: a tiny reader/policy, a tiny SAE, 2 GRPO steps per arm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_the_whole_pipeline_end_to_end(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "saerl_hf.cli", "demo", "--output_dir", str(out), "--model", tiny_model_dir,
           "--sae_tokens", "6000", "--d_sae", "128", "--sae_k", "8", "--sae_max_texts", "150",
           "--sources", "mawps_singleop@60", "gsm8k:train@40", "--holdout_per_source", "8",
           "--heldout_limit", "16", "--quality_train_size", "40", "--n_clusters", "3", "--steps", "2",
           "--max_completion_length", "8", "--featurize_batch_size", "8"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "saerl-hf demo finished" in proc.stdout and "Where everything is" in proc.stdout
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["sae"].get("trained") and summary["curated_rows"] > 0
    runs = {}
    for arm in ("vanilla", "saerl"):
        runs[arm] = json.loads((out / "experiment" / "runs" / arm / "seed0" / "grpo_summary.json").read_text())
        assert runs[arm]["metrics"]["train_runtime"] > 0 and runs[arm]["script_args"]["curriculum"] == arm
        assert runs[arm]["heldout_curve"], "held-out accuracy was logged while training"
    assert runs["vanilla"]["quality_filter"] is None, "vanilla trains on the unfiltered pool"
    assert runs["saerl"]["quality_filter"]["threshold"] == 0.5 and runs["saerl"]["quality_filter"]["n_kept"] > 0
    assert runs["saerl"]["num_train_rows"] == runs["saerl"]["quality_filter"]["n_kept"]
    report = (out / "REPORT.md").read_text()
    assert "vanilla" in report and "SAERL" in report and (out / "report_curves.png").is_file()
    assert (out / "curated" / "dataset" / "dataset_info.json").is_file()
    # rerun: every stage and run is reused, nothing retrained
    finished = [out / "sae" / "cfg.json", out / "curated" / "dataset" / "dataset_info.json",
                *(out / "experiment" / "runs").glob("*/seed0/grpo_summary.json")]
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps, "the rerun retrained nothing"
    assert "saerl-hf demo finished" in again.stdout
