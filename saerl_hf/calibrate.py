"""Is the policy inside GRPO's learnable window? Pass-rate distribution per source, before any training.

GRPO learns only from groups whose completions disagree: a group of G samples carries gradient with
probability ``1 - (1-p)^G - p^G``. This measures p per problem (k samples at the training prompt, temperature
and completion budget) on a development sample of each source, and reports mean p, the share of problems with
0 < p < 1 (the window), pass@k, the share of samples cut at the budget, and the expected share of groups with
gradient at G = 8 and 16.

    saerl-hf calibrate --config recipes/smollm2-135m/calibrate/testbed.yaml
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

TEMPLATE = "calibration.md"  # under saerl_hf/templates (package data)


@dataclass
class CalibrateConfig:
    """Which policy, prompt settings and sources to calibrate (YAML via ``--config``)."""

    models: list[str] = field(default_factory=lambda: ["smollm2-135m"], metadata={
        "help": "Policies to measure: alias, dir (e.g. a warm start's model dir) or Hub id; one table each."})
    labels: list[str] = field(default_factory=list, metadata={"help": "A name per model for the tables."})
    sources: list[str] = field(default_factory=lambda: ["mawps_singleop", "mawps_addsub", "svamp"], metadata={
        "help": "saerl_hf.data names; a seeded sample of each is the development split."})
    split: str | None = field(default=None, metadata={"help": "Split of every source (None: the source's default)."})
    n_per_source: int = field(default=32, metadata={"help": "Problems per source."})
    skip_first: int = field(default=0, metadata={"help": "Leave the first N rows of each source's seeded "
                                                         "permutation out (e.g. rows a held-out set will use)."})
    k: int = field(default=8, metadata={"help": "Samples per problem."})
    temperatures: list[float] = field(default_factory=lambda: [0.7], metadata={"help": "One table per temperature."})
    max_new_tokens: int = field(default=64, metadata={"help": "Completion budget (the GRPO recipe's)."})
    seed: int = field(default=1, metadata={"help": "Problem sampling and generation seed."})
    output_json: str = field(default="docs/results/calibration/testbed.json", metadata={
        "help": "Per-problem pass rates and the summary (committed: the page regenerates from it)."})
    report_path: str = field(default="docs/calibration.md", metadata={"help": "Markdown tables."})


def gradient_share(p: np.ndarray, group: int) -> float:
    """Mean chance that a group of ``group`` samples has both a correct and a wrong completion."""
    p = np.asarray(p, dtype=float)
    return float(np.mean(1.0 - (1.0 - p) ** group - p**group)) if p.size else float("nan")


def summarize(pass_rates: list[float], cut: list[float], k: int, seed: int = 0) -> dict:
    """The table row of one source (95% bootstrap CI of mean p over problems)."""
    from scipy.stats import bootstrap

    p = np.asarray(pass_rates, dtype=float)
    if p.size > 1 and np.ptp(p) > 0:
        ci = bootstrap((p,), np.mean, n_resamples=1000, method="percentile", random_state=seed).confidence_interval
        interval = [float(ci.low), float(ci.high)]
    else:  # one problem, or every problem alike: no spread to resample
        interval = [float(p.mean()), float(p.mean())] if p.size else [float("nan")] * 2
    return {"n": int(p.size), "mean_p": float(p.mean()) if p.size else float("nan"), "mean_p_ci": interval,
            "window": float(np.mean((p > 0) & (p < 1))) if p.size else float("nan"),
            "pass_at_k": float(np.mean(p > 0)) if p.size else float("nan"),
            "grad_8": gradient_share(p, 8), "grad_16": gradient_share(p, 16),
            "cut": float(np.mean(cut)) if len(cut) else float("nan"), "k": k}


def dev_sample(source: str, config: CalibrateConfig):
    """A seeded sample of one source, after the first ``skip_first`` rows of the same permutation."""
    from saerl_hf.data import load_math_dataset

    ds = load_math_dataset(source, split=config.split)
    order = np.random.default_rng(config.seed).permutation(len(ds))
    take = order[config.skip_first : config.skip_first + config.n_per_source]
    return ds.select(sorted(take.tolist()))


def measure(model: str, temperature: float, config: CalibrateConfig) -> dict:
    """Pass rates of one policy at one temperature on every source's development sample (the pass-rate labeller
    that curate uses, so calibration and labels sample the same way)."""
    from saerl_hf.signals.passrate import PassRateConfig, label_pass_rates

    labels = PassRateConfig(model=model, k=config.k, max_new_tokens=config.max_new_tokens, temperature=temperature,
                            seed=config.seed, generation_batch_size=64)
    started = time.perf_counter()
    rows, problems = [], []
    for source in config.sources:
        ds = dev_sample(source, config)
        labelled = label_pass_rates(ds, labels, batch_size=max(1, len(ds)))
        rates = list(labelled["pass_rate"])
        cut = [n / k for n, k in zip(labelled["n_cut"], labelled["n_samples"]) if n is not None]
        problems += [{"id": i, "source": source, "pass_rate": r} for i, r in zip(labelled["id"], rates)]
        rows.append({"source": source, **summarize(rates, cut, config.k, config.seed)})
        logger.info("%s T=%s %s: mean p %.3f, window %.2f", model, temperature, source, rows[-1]["mean_p"],
                    rows[-1]["window"])
    return {"model": model, "temperature": temperature, "rows": rows, "problems": problems,
            "seconds": round(time.perf_counter() - started, 1)}


def render(record: dict) -> str:
    """Markdown from the saved JSON (jinja2 template), so the page regenerates without generating again."""
    from saerl_hf.templating import environment

    env = environment()
    env.globals["pct"] = lambda v: "n/a" if v is None or v != v else f"{100 * v:.1f}%"
    return env.get_template(TEMPLATE).render(**record)


def run_calibration(config: CalibrateConfig, command: str = "saerl-hf calibrate") -> dict:
    """Measure every (model, temperature) not already in ``output_json``, then rewrite the page."""
    path = Path(config.output_json)
    record = json.loads(path.read_text()) if path.is_file() else {"settings": []}
    labels = config.labels or config.models
    for model, label in zip(config.models, labels):
        for temperature in config.temperatures:
            key = {"model": model, "temperature": temperature, "k": config.k, "max_new_tokens": config.max_new_tokens,
                   "n_per_source": config.n_per_source, "seed": config.seed, "sources": config.sources}
            if any(all(s.get(k) == v for k, v in key.items()) for s in record["settings"]):
                continue  # measured before: resumable setting by setting
            result = measure(model, temperature, config)
            record["settings"].append({**key, "label": f"{label}, T={temperature}", **result})
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
    record.update(command=command, json_path=str(path), config=asdict(config))
    Path(config.report_path).write_text(render(record))
    return record


def cli_main(argv: list[str] | None = None) -> int:
    import shlex
    import sys

    from trl import TrlParser

    from saerl_hf.configs import parse_config

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    (config,) = parse_config(TrlParser((CalibrateConfig,), prog="saerl-hf calibrate"), argv)
    run_calibration(config, command="saerl-hf calibrate " + " ".join(shlex.quote(a) for a in argv))
    print(f"calibration: {config.report_path}")
    return 0


if __name__ == "__main__":  # the same error handling as `saerl-hf calibrate`
    import sys

    from saerl_hf.cli import main as saerl_hf_main

    sys.exit(saerl_hf_main(["calibrate", *sys.argv[1:]]))
