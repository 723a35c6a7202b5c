"""benchmarks/run_all.py: every benchmark is listed, and one whose input is missing is skipped, not failed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_listed_script_exists(run_all):
    assert {"dedup", "grpo-step"} <= set(run_all.BENCHMARKS)
    assert all((BENCH / args[0]).is_file() for args in run_all.BENCHMARKS.values())
    assert run_all.BENCHMARKS["grpo-step"][-1] == run_all.REQUIRES["grpo-step"][0][0]


def test_a_missing_input_skips_with_the_command_that_makes_it(run_all, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(run_all, "REQUIRES", {"grpo-step": [("outputs/none/model", "saerl-hf warmstart ...")]})
    assert run_all.missing_requirement("grpo-step", root=tmp_path) == (
        "outputs/none/model is missing; make it first with: saerl-hf warmstart ...")
    assert run_all.missing_requirement("dedup", root=tmp_path) is None
    (tmp_path / "outputs" / "none" / "model").mkdir(parents=True)
    assert run_all.missing_requirement("grpo-step", root=tmp_path) is None
    monkeypatch.setattr(run_all.subprocess, "call", lambda *a, **k: pytest.fail("a skipped benchmark ran"))
    assert run_all.main(["--only", "grpo-step"]) == 0
    captured = capsys.readouterr()
    assert "== grpo-step: skipped: outputs/none/model is missing" in captured.out
    assert "skipped (a required path is missing" in captured.err
