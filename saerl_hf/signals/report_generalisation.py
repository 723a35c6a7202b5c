"""The report's feature-set sections (issue 15): SAE vs dense vs sae+dense on the same rows, quality on what it did
not see (leave-one-kind-out, real text), the difficulty learning curve, and what the probes look at.

:func:`generalisation_section` measures (with :mod:`saerl_hf.signals.evaluation` and :mod:`~.explain`) and
:func:`render_generalisation` fills ``templates/signals_generalisation.md``; ``report-signals`` appends it to the
page. The quality sets are rebuilt exactly as ``report_sections.quality_section`` builds them, so featurizing
them hits its cache.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

logger = logging.getLogger(__name__)

QUALITY_COLUMNS = ("problem", "is_clean", "corruption", "sae_idx", "sae_val", "sae_l0", "dense_mean")


def _quality_set(clean, featurize, part: str, seed: int, name: str):
    """Featurized clean rows (``is_clean`` 1) + their featurized corruptions, the columns the probes need."""
    from datasets import concatenate_datasets

    from saerl_hf.signals.corruptions import make_quality_dataset, off_domain_prompts

    raw = make_quality_dataset(clean.select_columns(["problem", "answer"]), seed=seed,
                               off_domain_pool=off_domain_prompts(part))
    negatives = featurize(raw.filter(lambda r: r["is_clean"] == 0), name)
    positives = clean.add_column("is_clean", [1] * len(clean)).add_column("corruption", ["none"] * len(clean))
    merged = concatenate_datasets([positives.select_columns(list(QUALITY_COLUMNS)).cast(
        negatives.select_columns(list(QUALITY_COLUMNS)).features), negatives.select_columns(list(QUALITY_COLUMNS))])
    merged.info.description = negatives.info.description  # the featurize provenance
    return merged


def generalisation_section(train, test, featurize, config) -> dict:
    """Quality generalisation per feature set, the learning curve, and the probes' explanations (JSON-ready)."""
    from saerl_hf.signals.corruptions import real_text_dataset
    from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe
    from saerl_hf.signals.evaluation import learning_curve, quality_generalisation
    from saerl_hf.signals.explain import probe_explanations
    from saerl_hf.signals.matrix import default_scaling
    from saerl_hf.signals.quality import QualityConfig, QualityProbe

    start = time.perf_counter()
    train_q = _quality_set(train.select(range(config.n_quality_train)), featurize, "train", config.seed,
                           "quality_train_negatives")
    test_q = _quality_set(test, featurize, "test", config.seed + 1, "quality_test_negatives")
    real = featurize(real_text_dataset(config.n_real_text, config.seed), "real_text_negatives") \
        if config.n_real_text else None
    from saerl_hf.signals.report_sections import bootstrap_ci

    def interval(metric, x, y):
        return bootstrap_ci(metric, x, y, config.bootstrap, config.seed)

    quality_config = QualityConfig(seed=config.seed, pooling_part=config.quality_pooling_part)
    quality = quality_generalisation(train_q, test_q, real, config=quality_config, interval=interval)
    difficulty_config = DifficultyConfig(label_column="level", seed=config.seed,
                                         pooling_part=config.difficulty_pooling_part)
    curve = learning_curve(train, test, sizes=tuple(config.learning_curve_sizes), seed=config.seed,
                           config=difficulty_config, interval=interval)
    difficulty_probe = DifficultyProbe(difficulty_config).fit(train)
    quality_probe = QualityProbe(quality_config).fit(train_q)
    explanations = probe_explanations(train, difficulty_probe, quality_probe, k=config.explain_k)
    example = test[int(np.argmax(difficulty_probe.predict(test)))]
    from saerl_hf.signals.explain import explain

    return {"quality": quality, "learning_curve": curve, "explanations": explanations,
            "example": {"problem": example["problem"][:300],
                        **explain(example, difficulty_probe, quality_probe, k=3)},
            "n_real_text": config.n_real_text, "seconds": round(time.perf_counter() - start, 1),
            "dense_scaling": default_scaling("dense")}  # the dense rows' scaling (log1p, clipping, before 01a0de7)


# The report settings that fix a variant's rows and scores (variants_only refuses a run that changes one).
SAME_ROWS = ("model", "sae", "d_sae", "sae_k", "layer", "max_length", "reader_dtype", "n_train", "n_test", "seed",
             "bootstrap")


def parse_variant(text: str) -> tuple[str, int | None]:
    """``"mean+max:0"`` -> ``("mean+max", None)``; ``"mean:64"`` -> ``("mean", 64)`` (0 or no k: keep all)."""
    from saerl_hf.pooling import POOLINGS

    pooling, _, k = text.partition(":")
    if pooling not in POOLINGS or (k and not k.isdigit()):
        raise ValueError(f"feature variant '{text}' is not 'pooling:top_k' with pooling in {POOLINGS}. Fix: e.g. "
                         f"mean:0 (every active latent) or max:64.")
    return pooling, (int(k) or None) if k else None


def variant_sweep(train_raw, test_raw, config, cache, expected: dict | None = None) -> list[dict]:
    """Difficulty Spearman (SAE and sae+dense, with intervals) and SAE quality AUROC (in distribution, leave one
    kind out) for each featurization variant in ``config.feature_variants`` (``pooling:top_k``). Mean, max and
    mean+max variants are all derived from one ``mean+max:0`` reader pass (:func:`saerl_hf.pooling.narrow_pooling`);
    other poolings get their own pass.
    ``expected``: the provenance of the features the rest of the page measured; variants featurized by another
    reader, layer, dtype or SAE raise before any fit."""
    from saerl_hf.pooling import NARROWABLE, narrow_pooling

    parsed = [(variant, *parse_variant(variant)) for variant in config.feature_variants]
    shared = _VariantPass(train_raw, test_raw, config, cache, "mean+max", None) \
        if any(pooling in NARROWABLE for _, pooling, _ in parsed) else None
    rows = []
    for variant, pooling, top_k in parsed:
        if pooling in NARROWABLE:
            source, narrow = shared, (lambda part, p=pooling, k=top_k: narrow_pooling(part, p, k))
            featurized = "shared mean+max:0 pass"
        else:
            source, narrow = _VariantPass(train_raw, test_raw, config, cache, pooling, top_k), (lambda part: part)
            featurized = "own pass"
        train, test = (narrow(part) for part in source.parts)
        _check_provenance(train, expected)
        done = _variant_record(cache, config, variant, train)
        row = json.loads(done.read_text()) if done.is_file() else {}  # an earlier, interrupted run's (same rows, SAE)
        quality = row.get("quality", {})
        if quality.get("n_quality_train") != config.n_quality_train or "mean_ci95" not in quality.get(
                "leave_one_kind_out", {}):  # records from before variants scored quality, or its intervals
            row["quality"] = _variant_quality(*(narrow(part) for part in source.quality_sets()), config)
            _keep(done, row)
        if row.get("clusters", {}).get("n_clusters") != config.n_clusters:  # also records from before clusters
            row["clusters"] = _variant_clusters(train, test, config)
            _keep(done, row)
        if "variant" not in row:
            row.update({"variant": variant, "pooling": pooling, "top_k": top_k, "featurized": featurized,
                        "featurize_seconds": source.seconds, "mean_l0": float(np.mean(train["sae_l0"])),
                        "mean_kept": float(np.mean([len(r) for r in train["sae_idx"]]))})
        for features in ("sae", "sae+dense"):  # each fit kept as it finishes (a wide one can take an hour here)
            if features not in row:
                row[features] = _variant_score(train, test, config, features)
                _keep(done, row)
        logger.info("variant %s: Spearman sae %.3f, sae+dense %.3f; quality leave-one-kind-out %.3f", variant,
                    row["sae"]["spearman"], row["sae+dense"]["spearman"], row["quality"]["leave_one_kind_out"]["mean"])
        _keep(done, row)
        rows.append(row)
    return rows


def _keep(path, row: dict) -> None:
    """Write a variant's record as far as it is measured, so an interrupted sweep resumes from it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2))


def _variant_record(cache, config, variant: str, train):
    """Where a measured variant row is kept, keyed by everything that changes it, so a rerun resumes."""
    import hashlib

    from saerl_hf.sparse import feature_provenance

    key = {name: getattr(config, name) for name in SAME_ROWS}
    key.update(variant=variant, sae_hash=feature_provenance(train).get("sae_hash"))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache / "variants" / f"{variant.replace(':', '_')}-{digest}.json"


SAME_READER = ("model", "model_revision", "layer", "hook", "dtype", "max_length", "prompt_format", "sae_hash")


def _check_provenance(train, expected: dict | None) -> None:
    from saerl_hf.sparse import feature_provenance

    found = feature_provenance(train)
    differ = {k: (expected.get(k), found.get(k)) for k in SAME_READER if expected and expected.get(k) != found.get(k)}
    if differ:
        raise ValueError(f"The variants' features differ from the rest of the page's in {differ} (page, variants): "
                         f"the reader, its dtype or the default SAE changed since the full run. Fix: run the full "
                         f"report again.")


class _VariantPass:
    """The train and test sets featurized once with ``pooling`` and ``top_k`` (the report's other settings)."""

    def __init__(self, train_raw, test_raw, config, cache, pooling: str, top_k: int | None):
        from dataclasses import replace

        from saerl_hf.signals.matrix import PART_OPTIONS
        from saerl_hf.signals.report_sections import Featurizer

        own = replace(config, pooling=pooling, top_k=top_k or 0, **dict.fromkeys(PART_OPTIONS))  # a whole vector
        self.featurize, self.config, self.tag = Featurizer(own, cache), config, f"{pooling}:{top_k or 0}"
        names = (f"math_train[{self.tag}]", f"math500_test[{self.tag}]")
        self.parts = (self.featurize(train_raw, names[0]), self.featurize(test_raw, names[1]))
        # the pass's own seconds, also when this run found it in the featurize cache
        self.seconds = round(sum(self.featurize.timings.get(name, {}).get("seconds", 0.0) for name in names), 1)
        self._quality = None

    def quality_sets(self):
        """The generalisation section's quality train and test sets (same rows, same corruptions), this pooling."""
        if self._quality is None:
            train, test = self.parts
            self._quality = (
                _quality_set(train.select(range(self.config.n_quality_train)), self.featurize, "train",
                             self.config.seed, f"quality_train_negatives[{self.tag}]"),
                _quality_set(test, self.featurize, "test", self.config.seed + 1, f"quality_test_negatives[{self.tag}]"))
        return self._quality


def _variant_quality(train_q, test_q, config) -> dict:
    """The SAE quality probe on one variant's features: AUROC in distribution (with its interval) and with each
    corruption kind held out, as the generalisation section measures the page's own features."""
    from functools import partial

    from saerl_hf.signals.evaluation import _label_auroc, leave_one_kind_out, per_kind_auroc
    from saerl_hf.signals.quality import QualityConfig, QualityProbe
    from saerl_hf.signals.report_sections import bootstrap_ci

    quality_config = QualityConfig(seed=config.seed)
    probe = QualityProbe(quality_config).fit(train_q)
    labels = np.asarray(test_q["is_clean"])
    return {"in_distribution": per_kind_auroc(probe, test_q)["all"],
            "in_distribution_ci95": bootstrap_ci(_label_auroc, probe.predict(test_q), labels, config.bootstrap,
                                                 config.seed),
            "leave_one_kind_out": leave_one_kind_out(train_q, test_q, "sae", quality_config, partial(
                bootstrap_ci, n=config.bootstrap, seed=config.seed)),
            "n_quality_train": config.n_quality_train}


def _variant_clusters(train, test, config) -> dict:
    """NMI with MATH subject of the default SAE k-means (idf-weighted) on one variant's features, at the cluster
    section's seeds, so a pooling is judged on diversity too before it becomes the default."""
    from saerl_hf.signals.report_sections import clusters_over_seeds

    model, _, nmi = clusters_over_seeds(train, test, config)  # the default scaling: idf-weighted
    return {"nmi_test": nmi[0], "nmi_test_seeds": nmi, "nmi_test_mean": float(np.mean(nmi)),
            "scaling": model.config.scaling, "n_clusters": config.n_clusters}


def _variant_score(train, test, config, features: str) -> dict:
    """Spearman with MATH-500 level and its interval of the difficulty probe on ``features`` (sae or sae+dense)."""
    from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe
    from saerl_hf.signals.evaluation import _spearman
    from saerl_hf.signals.report_sections import bootstrap_ci

    levels = np.asarray(test["level"], dtype=float)
    probe = DifficultyProbe(DifficultyConfig(label_column="level", seed=config.seed, features=features))
    predicted = probe.fit(train).predict(test)
    return {"spearman": _spearman(predicted, levels),
            "ci95": bootstrap_ci(_spearman, predicted, levels, config.bootstrap, config.seed),
            "fit_seconds": probe.metrics["fit_seconds"]}


def render_generalisation(section: dict, pooling: str = "mean", parts: dict | None = None) -> str:
    """The Markdown of :func:`generalisation_section`'s results (``templates/signals_generalisation.md``);
    ``pooling`` and ``parts`` (signal -> the part it reads) describe the page's own featurization."""
    from saerl_hf.templating import environment

    sizes = sorted({row["n_labels"] for row in section["learning_curve"]})
    curve = {}
    for row in section["learning_curve"]:
        curve.setdefault(row["features"], {})[row["n_labels"]] = _fmt(row["spearman"]) + _ci(row.get("ci95"))
    kinds = sorted({k for row in section["quality"] for k in row["leave_one_kind_out"]["per_kind"]})
    variant_kinds = sorted({k for row in section.get("variants") or []
                            for k in ((row.get("quality") or {}).get("leave_one_kind_out") or {}).get("per_kind", {})})
    return environment().get_template("signals_generalisation.md").render(
        section=section, sizes=sizes, curve=curve, kinds=kinds, variant_kinds=variant_kinds, fmt=_fmt, ci=_ci,
        pooling=pooling, parts=parts or {},
        quality_verdict=quality_verdict(section["quality"]), curve_verdict=curve_verdict(section["learning_curve"]),
        variant_verdict=variant_verdict(section.get("variants") or [], section["learning_curve"]))


def quality_verdict(rows: list[dict]) -> str:
    """Issue 15's two quality goals (point estimates >= 0.95: held-out-kind mean, real text), per feature set."""
    parts = []
    for goal, value in (("leave-one-kind-out mean", lambda r: r["leave_one_kind_out"].get("mean")),
                        ("real text", lambda r: r.get("real_text"))):
        scored = [(r["features"], value(r)) for r in rows if _finite(value(r))]
        met = [f for f, v in scored if v >= 0.95]
        if not scored:
            parts.append(f"{goal}: not measured")
        elif met:
            parts.append(f"{goal} >= 0.95: met by {', '.join(met)}")
        else:
            best = max(scored, key=lambda fv: fv[1])
            parts.append(f"{goal} >= 0.95: not met (best {best[0]}, {_fmt(best[1])})")
    return "Goals (point estimates): " + "; ".join(parts) + "."


def variant_verdict(variants: list[dict], curve: list[dict]) -> str:
    """The best variant's SAE Spearman against issue 15's difficulty goal (>= 0.60 and >= dense on the same rows:
    the learning curve's dense fit at the variants' label count, the largest)."""
    scored = [v for v in variants if _finite(v["sae"]["spearman"])]
    dense = [r for r in curve if r["features"] == "dense_mean" and _finite(r.get("spearman"))]
    if not scored or not dense:
        return _quality_variant(variants).strip()
    best, dense_rho = max(scored, key=lambda v: v["sae"]["spearman"]), max(dense, key=lambda r: r["n_labels"])
    rho = best["sae"]["spearman"]
    met = rho >= 0.60 and rho >= dense_rho["spearman"]
    overlap = met and dense_rho.get("ci95") and best["sae"]["ci95"][0] <= dense_rho["ci95"][1]
    return (f"Best SAE variant: {best['variant']}, {_fmt(rho)}{_ci(best['sae']['ci95'])} vs dense "
            f"{_fmt(dense_rho['spearman'])} (n = {dense_rho['n_labels']}): the difficulty goal (SAE >= 0.60 and >= "
            f"dense, point estimates) is {'met' if met else 'not met'}{'; the intervals overlap' if overlap else ''}."
            + _own_setting(curve, dense_rho["n_labels"]) + _quality_variant(variants))


def _quality_variant(variants: list[dict]) -> str:
    """The variant whose SAE quality probe generalises best to held-out corruption kinds, against the 0.95 goal."""
    def held_out(v):
        return ((v.get("quality") or {}).get("leave_one_kind_out") or {}).get("mean")

    scored = [v for v in variants if _finite(held_out(v))]
    if not scored:
        return ""
    best = max(scored, key=held_out)
    return (f" Best quality variant on held-out corruption kinds: {best['variant']}, mean AUROC {_fmt(held_out(best))} "
            f"(in distribution {_fmt(best['quality']['in_distribution'])}): the leave-one-kind-out goal (>= 0.95) is "
            f"{'met' if held_out(best) >= 0.95 else 'not met'}.")


def _own_setting(curve: list[dict], n: int) -> str:
    """The page's own featurization on the same rows (the learning curve's SAE fit at ``n``), beside the variants."""
    own = [r for r in curve if r["features"] == "sae" and r["n_labels"] == n and _finite(r.get("spearman"))]
    return (f" The page's own featurization (the tables above) on the same rows: {_fmt(own[0]['spearman'])}"
            f"{_ci(own[0].get('ci95'))}." if own else "")


def curve_verdict(rows: list[dict]) -> str:
    """Which feature set leads at each label count, and whether at the largest count its interval clears every
    other set's (the test rows are shared, so interval overlap is a conservative test; a paired one may settle more)."""
    by_size: dict[int, list[dict]] = {}
    for row in rows:
        if _finite(row.get("spearman")):
            by_size.setdefault(row["n_labels"], []).append(row)
    if not by_size:
        return ""
    leaders = {n: max(group, key=lambda r: r["spearman"])["features"] for n, group in by_size.items()}
    lead, *rest = sorted(by_size[max(by_size)], key=lambda r: -r["spearman"])
    listed = ", ".join(f"{r['features']} {_fmt(r['spearman'])}" for r in [lead, *rest])
    text = (f"Highest at each label count: {', '.join(f'n = {n}: {f}' for n, f in sorted(leaders.items()))}. "
            f"At n = {max(by_size)}: {listed}")
    intervals = [r.get("ci95") for r in [lead, *rest]]
    if rest and all(ci and all(_finite(b) for b in ci) for ci in intervals):
        separated = lead["ci95"][0] > max(r["ci95"][1] for r in rest)
        text += (f"; {lead['features']}'s interval {'clears' if separated else 'overlaps'} "
                 f"{'every other' if separated else 'another'} feature set's, so the lead is "
                 f"{'established' if separated else 'not established by interval overlap'} on these test problems")
    return text + "."


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and bool(np.isfinite(value))


def _ci(interval) -> str:
    return f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else ""


def _fmt(value, digits: int = 3) -> str:
    from jinja2 import Undefined

    if value is None or isinstance(value, Undefined) or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"
