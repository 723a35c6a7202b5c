"""`saerl-hf report-signals` end to end on real MATH text with the tiny random reader (small sizes).

Checks that the command writes the markdown and every figure it links, with the measured tables and the
cost rows; the numbers themselves are meaningless for a random reader (the real ones are in docs/signals.md).
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from saerl_hf.cli import main as cli


def _random_sae(path):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(k=8, d_in=64, d_sae=256, device="cpu"))
    sae.cfg.metadata.hook_name = "model.layers.2"
    sae.save_inference_model(str(path))
    return str(path)


def test_report_signals_writes_markdown_and_figures(tmp_path, tiny_model_dir, data_dir):
    sae = _random_sae(tmp_path / "sae")
    out = tmp_path / "docs" / "signals.md"
    args = ["report-signals", "--model", tiny_model_dir, "--sae", sae, "--n_train", "80", "--n_test", "40",
            "--n_quality_train", "40", "--n_clusters", "3", "--n_passrate", "2", "--passrate_max_new_tokens", "4",
            "--bootstrap", "20", "--cache_dir", str(tmp_path / "cache"), "--output", str(out),
            "--img_dir", str(tmp_path / "docs" / "img"), "--n_real_text", "30", "--learning_curve_sizes", "50", "80",
            "--explain_k", "2", "--feature_variants", "max:0", "mean+max:0", "--top_k", "0"]
    assert cli(args) == 0
    text = out.read_text()
    # the page says what top_k 0 means and its regenerate line carries the flags that made it
    assert "every active latent kept" in text and "top-None" not in text
    for flag in ("--top_k 0 ", "--reader_dtype auto ", "--generalisation true ", "--n_real_text 30 ",
                 "--learning_curve_sizes 50 80 ", "--explain_k 2 ", "--feature_variants max:0 mean+max:0\n"):
        assert flag in text, flag
    for heading in ("## Difficulty", "## Quality", "## Diversity", "## Cost", "## Verdict"):
        assert heading in text
    for row in ("| SAE, ElasticNetCV |", "| dense, ElasticNetCV |", "| prompt length (tokens) |",
                "| SAE, logistic |", "| dense, logistic |", "| SAE k-means (`log1p_idf`) |", "| SAE k-means, no idf (`log1p`) |", "| dense k-means (`std`) |",
                "| pass-rate labeller, k=4, 4 new tokens |"):
        assert row in text, row
    for line in ("## SAE, dense and hybrid on the same rows", "### Quality on what it did not see",
                 "| features | AUROC in distribution | held out: off_domain | held out: remove_numbers |",
                 "| features | n = 50 | n = 80 |", "#### difficulty (higher = harder)", "#### quality (higher = cleaner)",
                 "Why the hardest-scored MATH-500 problem", "### Pooling and how many latents to keep"):
        assert line in text, line
    for features in ("sae", "dense_mean", "sae+dense"):
        assert re.search(rf"^\| {re.escape(features)} \| \d\.\d{{3}} \[(\d\.\d{{3}}|n/a), ", text, re.M), features
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 4 and all((out.parent / image).is_file() for image in images)
    results = json.loads((tmp_path / "cache" / "results.json").read_text())
    assert results["difficulty"]["SAE, ElasticNetCV"]["round_trip_identical"] is True
    # the default pooling is mean+last, read by each signal in its own part: the page and the saved probe say so
    assert ("--pooling mean+last --difficulty_pooling_part mean --quality_pooling_part none --cluster_pooling_part "
            "mean --top_k") in text
    assert "the difficulty models read the mean part, the cluster models read the mean part, the others" in text
    saved = json.loads((tmp_path / "cache" / "probes" / "difficulty" / "config.json").read_text())
    assert saved["identity"]["pooling_part"] == "mean" and saved["feature_width"] == 256
    for row in results["clusters"]["rows"].values():  # the first seed's NMI with its bootstrap interval
        low, high = row["nmi_test_ci95"]
        assert 0.0 <= low <= high <= 1.0
    assert re.search(r"^\| SAE k-means \(`log1p_idf`\) \| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|", text, re.M)
    assert results["cost"]["passrate"]["prompts"] == 2
    dtype = results["provenance"]["dtype"]  # auto: bfloat16 where native (devices.native_bf16), else float32
    assert dtype in ("bfloat16", "float32") and f"reader in {dtype}." in text
    variants = {row["variant"]: row for row in results["generalisation"]["variants"]}
    assert variants["mean+max:0"]["top_k"] is None and variants["max:0"]["pooling"] == "max"
    assert variants["mean+max:0"]["mean_kept"] == 2 * variants["max:0"]["mean_l0"]  # every latent, both halves
    assert re.search(r"^\| mean\+max:0 \| \d+ \| \d+ \| ", text, re.M)
    for row in variants.values():  # the quality probe on each variant's features of the same quality sets
        assert 0.0 <= row["quality"]["in_distribution"] <= 1.0 and len(row["quality"]["in_distribution_ci95"]) == 2
        assert set(row["quality"]["leave_one_kind_out"]["per_kind"]) == {"off_domain", "remove_numbers", "shuffle",
                                                                         "truncate"}
        assert len(row["clusters"]["nmi_test_seeds"]) == 3 and 0.0 <= row["clusters"]["nmi_test"] <= 1.0
    assert "| quality: SAE held-out-kind mean | held out: off_domain |" in text
    assert "| clusters: SAE NMI (MATH-500), seeds mean |" in text
    quality = {row["features"]: row for row in results["generalisation"]["quality"]}
    assert set(quality) == {"sae", "dense_mean", "sae+dense"}
    assert set(quality["sae"]["leave_one_kind_out"]["per_kind"]) == {"off_domain", "remove_numbers", "shuffle",
                                                                     "truncate"}
    assert 0.0 <= quality["sae+dense"]["real_text"] <= 1.0
    for row in [*quality.values(), *(v["quality"] for v in variants.values())]:  # held-out figures carry intervals
        loko = row["leave_one_kind_out"]
        assert len(loko["mean_ci95"]) == 2 and set(loko["per_kind_ci95"]) == set(loko["per_kind"])
    # re-rendering from the cached results gives the same page
    out.write_text("")
    assert cli(args + ["--render_only", "true"]) == 0
    assert out.read_text() == text
    # --variants_only measures other variants on the same rows and keeps every other section as it was
    assert cli(args + ["--variants_only", "true", "--feature_variants", "mean:3", "last:0"]) == 0
    merged = json.loads((tmp_path / "cache" / "results.json").read_text())
    assert merged["difficulty"] == results["difficulty"] and merged["quality"] == results["quality"]
    variants = {row["variant"]: row for row in merged["generalisation"]["variants"]}
    assert set(variants) == {"mean:3", "last:0"} and merged["config"]["feature_variants"] == ["mean:3", "last:0"]
    assert variants["mean:3"]["featurized"] == "shared mean+max:0 pass" and variants["mean:3"]["mean_kept"] <= 3
    assert variants["last:0"]["featurized"] == "own pass"
    page = out.read_text()
    assert "`--variants_only true`" in page and "`--variants_only true`" not in text
    assert "--feature_variants mean:3 last:0\n" in page and re.search(r"^\| mean:3 \| \d+ \| [0-3] \| ", page, re.M)
    assert page.split("## Quality")[0].split("\n", 12)[-1] == text.split("## Quality")[0].split("\n", 12)[-1]
    # each measured variant is kept, so an interrupted sweep resumes: a rerun reads the record instead of refitting
    records = sorted((tmp_path / "cache" / "variants").glob("mean_3-*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    # a record from before variants scored quality: its difficulty is kept, its quality measured and added
    # (and from before they measured clusters: those are added too)
    old = {k: v for k, v in record.items() if k not in ("quality", "clusters")}
    records[0].write_text(json.dumps({**old, "mean_kept": 123.0}))
    assert cli(args + ["--variants_only", "true", "--feature_variants", "mean:3", "last:0"]) == 0
    again = json.loads((tmp_path / "cache" / "results.json").read_text())["generalisation"]["variants"]
    assert again[0]["mean_kept"] == 123.0 and again[1] == merged["generalisation"]["variants"][1]
    assert again[0]["quality"] == record["quality"] and again[0]["clusters"] == record["clusters"]
    # a record whose held-out mean lacks its interval, or whose clusters used another k, is measured again
    loko = {k: v for k, v in record["quality"]["leave_one_kind_out"].items() if k != "mean_ci95"}
    stale = {**record, "quality": {**record["quality"], "leave_one_kind_out": loko},
             "clusters": {**record["clusters"], "n_clusters": 99, "nmi_test_mean": -1.0}}
    records[0].write_text(json.dumps(stale))
    assert cli(args + ["--variants_only", "true", "--feature_variants", "mean:3", "last:0"]) == 0
    assert json.loads(records[0].read_text()) == record
    # an interrupted difficulty part resumes per feature set: the kept SAE fit is read, the missing one is fitted
    records[0].write_text(json.dumps({**{k: v for k, v in record.items() if k != "sae+dense"},
                                      "sae": {**record["sae"], "fit_seconds": -1.0}}))
    assert cli(args + ["--variants_only", "true", "--feature_variants", "mean:3", "last:0"]) == 0
    resumed = json.loads(records[0].read_text())
    assert resumed["sae"]["fit_seconds"] == -1.0 and resumed["sae+dense"]["spearman"] == record["sae+dense"]["spearman"]
    with pytest.raises(ValueError, match="n_train"):
        cli(args + ["--variants_only", "true", "--n_train", "60"])
    cached = json.loads((tmp_path / "cache" / "results.json").read_text())  # as if the full run used another SAE
    cached["provenance"]["sae_hash"] = "0" * 64
    (tmp_path / "cache" / "results.json").write_text(json.dumps(cached))
    with pytest.raises(ValueError, match="sae_hash"):
        cli(args + ["--variants_only", "true", "--feature_variants", "max:2"])
    with pytest.raises(ValueError, match="exclude each other"):
        cli(args + ["--variants_only", "true", "--render_only", "true"])


def test_the_committed_page_is_the_render_of_the_committed_results(tmp_path):
    """docs/signals.md is what `--render_only` makes of docs/results/signals/results.json (the run's record), so
    the page's numbers regenerate from the repository (plus a section per sweep JSON beside the page)."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "docs" / "results").mkdir(parents=True)
    for sweep in (root / "docs" / "results").glob("sae_sweep*.json"):  # one section per sweep beside the page
        shutil.copy(sweep, tmp_path / "docs" / "results")
    out = tmp_path / "docs" / "signals.md"
    assert cli(["report-signals", "--render_only", "true", "--cache_dir", str(root / "docs" / "results" / "signals"),
                "--output", str(out)]) == 0
    assert out.read_text() == (root / "docs" / "signals.md").read_text()


def test_verdict_lines_name_the_goals_and_whether_a_lead_is_established():
    from saerl_hf.signals.report_generalisation import curve_verdict, quality_verdict

    quality = [{"features": "sae", "leave_one_kind_out": {"mean": 0.96}, "real_text": 0.99},
               {"features": "dense_mean", "leave_one_kind_out": {"mean": 0.80}, "real_text": 0.90}]
    assert quality_verdict(quality) == ("Goals (point estimates): leave-one-kind-out mean >= 0.95: met by sae; "
                                        "real text >= 0.95: met by sae.")
    quality[0]["leave_one_kind_out"]["mean"] = 0.70
    assert "leave-one-kind-out mean >= 0.95: not met (best dense_mean, 0.800)" in quality_verdict(quality)
    for row in quality:
        del row["real_text"]  # --n_real_text 0
    assert "real text: not measured" in quality_verdict(quality)

    def row(features, n, rho, lo, hi):
        return {"features": features, "n_labels": n, "spearman": rho, "ci95": [lo, hi]}

    curve = [row("sae", 10, 0.5, 0.4, 0.6), row("dense_mean", 10, 0.3, 0.2, 0.4), row("hybrid", 10, float("nan"),
                                                                                      float("nan"), float("nan")),
             row("sae", 20, 0.6, 0.55, 0.65), row("dense_mean", 20, 0.7, 0.66, 0.74)]
    text = curve_verdict(curve)
    assert text.startswith("Highest at each label count: n = 10: sae, n = 20: dense_mean.")
    assert "dense_mean 0.700, sae 0.600" in text and "clears every other feature set's, so the lead is established" \
        in text
    curve.append(row("hybrid", 20, 0.5, 0.3, 0.7))  # a third set whose wide interval reaches the leader's
    assert "overlaps another feature set's, so the lead is not established" in curve_verdict(curve)
    assert curve_verdict([]) == ""


def test_variant_verdict_names_the_best_variant_against_dense():
    from saerl_hf.signals.report_generalisation import variant_verdict

    curve = [{"features": "dense_mean", "n_labels": 50, "spearman": 0.2, "ci95": [0.1, 0.3]},
             {"features": "dense_mean", "n_labels": 100, "spearman": 0.55, "ci95": [0.5, 0.6]}]
    variants = [{"variant": "mean:64", "sae": {"spearman": 0.5, "ci95": [0.4, 0.6]}},
                {"variant": "mean:0", "sae": {"spearman": 0.65, "ci95": [0.62, 0.7]}}]
    text = variant_verdict(variants, curve)
    assert text.startswith("Best SAE variant: mean:0, 0.650 [0.620, 0.700] vs dense 0.550 (n = 100)")
    assert "is met." in text
    variants[1]["sae"]["spearman"] = 0.58
    assert "is not met" in variant_verdict(variants, curve) and variant_verdict([], curve) == ""
    assert "own featurization" not in text  # no SAE row in this curve
    curve.append({"features": "sae", "n_labels": 100, "spearman": 0.61, "ci95": [0.55, 0.66]})
    assert variant_verdict(variants, curve).endswith(
        "The page's own featurization (the tables above) on the same rows: 0.610 [0.550, 0.660].")
    assert "quality variant" not in variant_verdict(variants, curve)  # rows from before variants scored quality
    variants[0]["quality"] = {"in_distribution": 0.97, "leave_one_kind_out": {"mean": 0.87}}
    variants[1]["quality"] = {"in_distribution": 0.96, "leave_one_kind_out": {"mean": 0.80}}
    assert variant_verdict(variants, curve).endswith(
        "Best quality variant on held-out corruption kinds: mean:64, mean AUROC 0.870 (in distribution 0.970): the "
        "leave-one-kind-out goal (>= 0.95) is not met.")


def test_report_parts_are_checked_against_the_pooling_before_any_reader_runs():
    from saerl_hf.signals.report import ReportSignalsConfig

    with pytest.raises(ValueError, match=r"difficulty_pooling_part: .*'mean' is not a part of .*'max'.*auto"):
        ReportSignalsConfig(pooling="max", difficulty_pooling_part="mean")
    assert ReportSignalsConfig(pooling="max").difficulty_pooling_part is None  # auto: no mean part to read
    config = ReportSignalsConfig(pooling="mean+max", difficulty_pooling_part="null", cluster_pooling_part="max")
    assert config.difficulty_pooling_part is None and config.cluster_pooling_part == "max"
    assert config.quality_pooling_part is None
