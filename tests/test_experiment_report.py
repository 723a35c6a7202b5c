"""The committed results page is exactly what the report template makes of the committed run logs.

Renders in memory (no training, nothing written), so a template edit that changes a byte of docs/RESULTS.md fails
here instead of silently rewriting the page at the next ``--report_only`` run.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/smollm2-135m/experiment/testbed_v3.yaml"


def test_committed_results_page_is_what_the_template_renders(monkeypatch):
    from trl import TrlParser

    from saerl_hf.experiment import ExperimentConfig, results_root
    from saerl_hf.experiment_report import analyse, render_report
    from saerl_hf.experiment_stats import aggregate, collect

    monkeypatch.chdir(REPO_ROOT)  # the recipe's paths are relative to the repository root
    (config,) = TrlParser((ExperimentConfig,)).parse_args_and_config(["--config", RECIPE])
    runs = collect(results_root(config))
    agg = aggregate(runs)
    report = Path(config.report_path)
    page = render_report(config, agg, analyse(config, runs, agg), report.stem.lower() + "_curves.png")
    assert page == report.read_text(encoding="utf-8")
