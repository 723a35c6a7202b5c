"""Difficulty probe fit: the sparse CSR design against its dense numpy copy, same rows, same probe, one run -> docs.

    .venv/bin/python benchmarks/difficulty_fit.py --n-rows 2000 --sae outputs/sae-sweep-10m/saes/w4096-k32-10M

``DifficultyConfig.dense_fit_density`` decides when the ElasticNetCV fit runs on a dense copy of the design
instead of the CSR matrix. This measures both on real features: MATH train problems featurized by the real
reader and SAE, each pooling with every active latent kept, for the SAE and sae+dense feature sets. Both sides
fit the same problem (the coefficients are compared); the ratio is sparse seconds over dense seconds, so above 1
means the dense copy is faster. Fits alternate sparse/dense and the median of ``--repeats`` is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

from docs_section import machine, write_section


def _fit(dataset, features: str, min_density: float):
    """Seconds of one DifficultyProbe fit and the probe; min_density 1 keeps the CSR design, 0 copies it dense."""
    from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe

    probe = DifficultyProbe(DifficultyConfig(label_column="level", features=features, dense_fit_density=min_density))
    start = time.perf_counter()
    probe.fit(dataset)
    return time.perf_counter() - start, probe


def _compare(featurized, features: str, repeats: int) -> dict:
    import numpy as np

    seconds, coefs = {"sparse": [], "dense": []}, {}
    for _ in range(repeats):  # alternate, so a load change on the shared machine hits both sides
        for side, min_density in (("sparse", 1.0), ("dense", 0.0)):
            took, probe = _fit(featurized, features, min_density)
            if probe.metrics["fit_on"] != side:
                raise RuntimeError(f"asked for a {side} fit, got {probe.metrics['fit_on']} (design over 2 GiB?)")
            seconds[side].append(took)
            coefs[side] = np.asarray(probe.coef)
    stored = float(np.mean([len(r) for r in featurized["sae_idx"]]))
    columns = len(coefs["sparse"])
    if features == "sae+dense":
        stored += len(featurized[0]["dense_mean"])
    return {"features": features, "columns": columns, "density": stored / columns,
            "sparse_s": statistics.median(seconds["sparse"]), "dense_s": statistics.median(seconds["dense"]),
            "max_coef_diff": float(np.max(np.abs(coefs["sparse"] - coefs["dense"])))}


def run(n_rows: int, sae: str | None, poolings: list[str], repeats: int, model: str) -> list[dict]:
    from saerl_hf.features import FeaturizeConfig, featurize
    from saerl_hf.signals.report_sections import math_samples

    train, _ = math_samples(n_rows, 1, 0)
    rows = []
    for pooling in poolings:
        featurized = featurize(train, FeaturizeConfig(model=model, sae=sae, pooling=pooling, top_k=0, dense=True))
        for features in ("sae", "sae+dense"):
            rows.append({"pooling": pooling, "n_rows": len(featurized), **_compare(featurized, features, repeats)})
            print(rows[-1], flush=True)
    return rows


def write_doc(rows: list[dict], command: str, sae: str) -> str:
    fold_rows = rows[0]["n_rows"] * 4 // 5
    gram = ("every design here is wider than that, so neither side precomputes a Gram matrix."
            if all(r["columns"] >= fold_rows for r in rows) else "narrower designs precompute the Gram matrix on the copy.")
    table = "\n".join(
        f"| {r['pooling']} | {r['features']} | {r['columns']} | {r['density']:.3f} | {r['sparse_s']:.1f} | "
        f"{r['dense_s']:.1f} | **{r['sparse_s'] / r['dense_s']:.2f}x** | {r['max_coef_diff']:.1e} |" for r in rows)
    section = f"""## Difficulty probe fit: CSR design vs its dense copy

Regenerate: `{command}`

{rows[0]['n_rows']} MATH train problems (seeded sample), featurized by the real reader with SAE `{sae}`, every active
latent kept; `DifficultyProbe` on `level` (ElasticNetCV, 3 l1_ratios x 12 alphas x 5 folds, one thread unless
OMP says otherwise), fitted on the CSR design (`dense_fit_density=1`) and on its dense numpy copy
(`dense_fit_density=0`), alternating, median of the repeats. Ratio: CSR seconds / dense seconds (above 1: the dense
copy is faster). Machine: {machine()}.

Each CV fold fits on {fold_rows} rows; {gram} `DifficultyConfig.dense_fit_density` (default 0.1) copies a
dense-enough design only when the folds have more rows than columns: there ElasticNet precomputes the Gram matrix,
which it does for dense input only (docs/signals.md lists the seconds of such fits: 7,496 rows x 4,096 latents).

| pooling | features | design columns | non-zero share | CSR s | dense s | CSR / dense | max coefficient difference |
|---|---|---:|---:|---:|---:|---:|---:|
{table}
"""
    return write_section("difficulty-fit", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=2000)
    parser.add_argument("--sae", default=None, help="SAE spec or folder; default: the trained default SAE")
    parser.add_argument("--poolings", nargs="+", default=["mean", "mean+last"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--no-doc", action="store_true", help="print only, do not edit docs/benchmarks.md")
    args = parser.parse_args()
    rows = run(args.n_rows, args.sae, args.poolings, args.repeats, args.model)
    command = (f".venv/bin/python benchmarks/difficulty_fit.py --n-rows {args.n_rows} --poolings "
               f"{' '.join(args.poolings)} --repeats {args.repeats}" + (f" --sae {args.sae}" if args.sae else ""))
    if not args.no_doc:
        print(write_doc(rows, command, args.sae or "default"))


if __name__ == "__main__":
    main()
