"""The shared SFT warm start and the calibration table, on a tiny model and the real data (seconds)."""

from __future__ import annotations

import json
from pathlib import Path

from saerl_hf.warmstart import WarmStartConfig, build_sft_dataset, run_warmstart, solution_completion


def test_solution_completion_drops_calculator_notes_and_ends_with_the_answer_cue():
    text = solution_completion("She sold 48/2 = <<48/2=24>>24 clips.\nTotal 48+24 = <<48+24=72>>72\n#### 72", "72")
    assert "<<" not in text and text.endswith("\nAnswer: 72") and "####" not in text


def test_sft_rows_use_the_grpo_prompt_and_short_solutions(data_dir):
    from saerl_hf.prompts import build_messages

    ds = build_sft_dataset(WarmStartConfig(num_examples=20, max_solution_steps=2))
    assert len(ds) == 20 and set(ds.column_names) == {"id", "prompt", "completion"}
    row = ds[0]
    assert row["prompt"][0]["content"].endswith(build_messages("x", "gsm8k")[0]["content"].split("\n")[-1])
    assert row["completion"][0]["role"] == "assistant" and "Answer:" in row["completion"][0]["content"]
    assert all(r["completion"][0]["content"].count("\n") <= 2 for r in ds)  # <= 2 solution lines + the answer


def test_warmstart_trains_merges_and_is_reused(tiny_model_dir, data_dir, tmp_path):
    from saerl_hf.models import load_model

    config = WarmStartConfig(model_name_or_path=tiny_model_dir, num_examples=24, per_device_train_batch_size=4,
                             max_length=96, lora_r=4, lora_alpha=8, output_dir=str(tmp_path / "ws"))
    record = run_warmstart(config)
    assert record["steps"] >= 1 and record["n_examples"] == 24 and len(record["train_ids"]) == 24
    model = load_model(record["model_path"])  # a plain checkpoint: the adapter is merged
    assert not any("lora" in name for name, _ in model.named_parameters())
    before, base = load_model(tiny_model_dir).state_dict(), model.state_dict()
    assert any((before[k] - base[k]).abs().max() > 0 for k in before if k in base and "proj" in k)
    stamp = (Path(record["model_path"]) / "model.safetensors").stat().st_mtime
    assert run_warmstart(config)["model_path"] == record["model_path"]  # same settings: reused, not retrained
    assert (Path(record["model_path"]) / "model.safetensors").stat().st_mtime == stamp
    assert json.loads((tmp_path / "ws" / "warmstart.json").read_text())["config"]["num_examples"] == 24


def test_calibration_table_from_real_generation(tiny_model_dir, data_dir, tmp_path):
    from saerl_hf.calibrate import CalibrateConfig, gradient_share, run_calibration

    assert abs(gradient_share([0.5], 2) - 0.5) < 1e-12 and gradient_share([0.0, 1.0], 8) == 0.0
    config = CalibrateConfig(models=[tiny_model_dir], labels=["tiny"], sources=["mawps_singleop", "svamp"],
                             n_per_source=3, k=2, temperatures=[1.0], max_new_tokens=4,
                             output_json=str(tmp_path / "cal.json"), report_path=str(tmp_path / "cal.md"))
    record = run_calibration(config)
    rows = record["settings"][0]["rows"]
    assert [r["source"] for r in rows] == ["mawps_singleop", "svamp"] and all(r["n"] == 3 for r in rows)
    assert all(r["cut"] == 1.0 for r in rows)  # a random tiny model never stops inside 4 tokens
    page = (tmp_path / "cal.md").read_text()
    assert "| mawps_singleop | 3 |" in page and "tiny, T=1.0" in page
    run_calibration(config)  # measured before: nothing is generated again, the page is the same
    assert (tmp_path / "cal.md").read_text() == page and len(json.loads((tmp_path / "cal.json").read_text())
                                                              ["settings"]) == 1
