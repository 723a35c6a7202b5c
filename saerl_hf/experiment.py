"""SAERL vs vanilla GRPO, arm by arm and seed by seed, then one report regenerated from the saved run logs.

Every arm trains on the *same* pool (curate's unfiltered ``07_signals`` stage) with the same GRPO settings; only
the data order and the quality filter differ, so differences are the data engineering's. Two arms score that pool
their own way (:mod:`saerl_hf.experiment_arms`: ``dense`` features, ``oracle`` measured pass rates).
Each run is a real ``accelerate launch -m saerl_hf.grpo``; a finished run (its
``grpo_summary.json`` exists) is skipped on rerun, so a killed experiment resumes run by run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from saerl_hf.configs import parse_config
from saerl_hf.experiment_arms import (  # noqa: F401  (re-exported: the arms and their pools live there)
    ARM_LABELS,
    ARM_POOLS,
    ARMS,
    arm_curated,
    curate_output,
    keep_pass_rate_labels,
    results_root,
    run_curate_stage,
    write_labelling_cost,
)
from saerl_hf.grpo_card import OLD_SUMMARY_FILE, SUMMARY_FILE, finished_runs, summary_file

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

class ExperimentError(ValueError):
    """A bad experiment setting; the message names the field and the fix."""


@dataclass
class ExperimentConfig:
    """Options of the comparison (YAML via ``--config``; fields overridable by flags)."""

    output_dir: str = field(default="outputs/experiment", metadata={"help": "Runs, logs and the report data."})
    results_dir: str | None = field(default=None, metadata={
        "help": "Where each finished run's small logs are copied (e.g. docs/results/<name>, committed): the report "
                "reads them from there and a later session skips runs found there. Default: output_dir."})
    warmstart_config: str | None = field(default=None, metadata={
        "help": "SFT warm-start recipe (saerl-hf warmstart) run before everything else; the curate and GRPO recipes "
                "then point at its model dir, so every arm starts from the same policy."})
    curate_config: str = field(default="recipes/smollm2-135m/curate/testbed.yaml", metadata={
        "help": "Curate recipe that builds the scored pool and the held-out split."})
    curate_overrides: list[str] = field(default_factory=list, metadata={
        "help": "Extra curate flags, e.g. '--output_dir=x' (one string per flag)."})
    grpo_config: str = field(default="recipes/smollm2-135m/grpo/config_saerl.yaml", metadata={
        "help": "GRPO recipe whose settings every arm shares."})
    grpo_overrides: list[str] = field(default_factory=list, metadata={
        "help": "key=value overrides applied to every arm (e.g. 'max_steps=60' 'learning_rate=2e-5')."})
    runs: list[str] = field(default_factory=lambda: ["vanilla:0", "saerl:0", "vanilla:1", "saerl:1", "vanilla:2",
                                                     "saerl:2", "difficulty:0"], metadata={
        "help": f"arm:seed,seed,... in launch order (interleave arms so a cut-short run stays balanced); arms: "
                f"{', '.join(ARMS)}."})
    accelerate_config: str = field(default="recipes/accelerate_configs/cpu.yaml", metadata={
        "help": "accelerate config every run is launched with."})
    parallel: int = field(default=1, metadata={
        "help": "Runs trained side by side; each gets cores // parallel torch threads (2 cores: parallel 2 "
                "with one thread each beats one run with two threads)."})
    heldout_per_source: int = field(default=30, metadata={
        "help": "Held-out rows per source (from curate's holdout, interleaved so every source is scored)."})
    shared_step0: bool = field(default=True, metadata={
        "help": "Score the untrained policy on the held-out set once and use it as step 0 of every run "
                "(greedy decoding makes it identical across runs)."})
    probe_benchmark: str | None = field(default=None, metadata={
        "help": "A harder benchmark every run's final model (and the untrained policy) is scored on once, e.g. "
                "gsm8k: its test split, never trained on."})
    probe_limit: int = field(default=100, metadata={"help": "Items of the probe benchmark (the first N)."})
    probe_max_new_tokens: int = field(default=64, metadata={"help": "Greedy tokens per probe item."})
    report_path: str = field(default="docs/RESULTS.md", metadata={"help": "Markdown report (PNGs beside it)."})
    title: str = field(default="SAERL vs vanilla GRPO on the CPU testbed", metadata={"help": "Report title."})
    companions: list[str] = field(default_factory=list, metadata={
        "help": "Other experiments (their YAML), summarised in a section of this report from their saved "
                "results.json, e.g. the transfer experiment beside the main one."})
    testbed: list[str] = field(default_factory=list, metadata={
        "help": "What the testbed is and how it was calibrated, one line each (the report lists them under "
                "'The testbed', before the results)."})
    calibration_json: str | None = field(default=None, metadata={
        "help": "Per-problem pass rates of the policy (saerl-hf calibrate's JSON): the difficulty proxy is checked "
                "against them on problems outside its labelled subset (proxy_check.json in the results dir)."})
    history: list[str] = field(default_factory=list, metadata={
        "help": "Earlier designs of this comparison and what they gave, one entry each (the report lists them "
                "under 'What was tried', so a regenerated page keeps them)."})

    def run_list(self) -> list[tuple[str, int]]:
        out = []
        for item in self.runs:
            arm, sep, seeds = item.partition(":")
            if arm not in ARMS or not sep:
                raise ExperimentError(f"runs entry '{item}': expected 'arm:seed,seed' with arm in {', '.join(ARMS)}.")
            out += [(arm, int(s)) for s in seeds.split(",") if s.strip()]
        return out


def _parse_value(text: str):
    """YAML scalar, except that YAML 1.1 words like ``no``/``off`` stay strings (``save_strategy=no``)."""
    value = yaml.safe_load(text)
    if isinstance(value, bool) and text.strip().lower() not in ("true", "false"):
        return text.strip()
    return value


RUN_LOGS = (SUMMARY_FILE, OLD_SUMMARY_FILE, "trainer_state.json", "wall_clock.json", "run_config.yaml", "probe.json")


def keep_run_logs(config: ExperimentConfig, run_dir: Path, arm: str, seed: int) -> Path:
    """Copy a finished run's small logs (curves, per-step metrics, settings) to the results dir."""
    import shutil

    dest = results_root(config) / "runs" / arm / f"seed{seed}"
    if dest.resolve() == run_dir.resolve():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_LOGS:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, dest / name)
    return dest


def keep_finished_runs(config: ExperimentConfig) -> list[Path]:
    """Copy every finished run under output_dir (and the shared step-0 score) to the results dir."""
    import shutil

    kept = []
    for run_dir in finished_runs(config.output_dir):
        kept.append(keep_run_logs(config, run_dir, run_dir.parent.name, int(run_dir.name.removeprefix("seed"))))
    for name in ("step0.json", "probe_step0.json"):
        source, dest = Path(config.output_dir) / name, results_root(config) / name
        if source.is_file() and not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
    return kept


def run_warmstart_stage(config: ExperimentConfig) -> dict:
    """The shared SFT warm start (reused when it exists with the same settings)."""
    from trl import TrlParser

    from saerl_hf.warmstart import WarmStartConfig, run_warmstart

    (ws_config,) = parse_config(TrlParser((WarmStartConfig,), prog="saerl-hf warmstart"),
                                ["--config", config.warmstart_config])
    return run_warmstart(ws_config)


def build_heldout(config: ExperimentConfig, curated: Path) -> Path:
    """A stratified held-out set: ``heldout_per_source`` rows of each source, interleaved round-robin."""
    from datasets import load_from_disk

    out = Path(config.output_dir) / "heldout"
    ids_path = results_root(config) / "heldout_ids.json"
    if (out / "dataset_info.json").is_file() and ids_path.is_file():
        return out
    holdout = load_from_disk(str(curated / "holdout"))
    by_source: dict[str, list[int]] = {}
    for i, source in enumerate(holdout["source"]):
        by_source.setdefault(source, []).append(i)
    picked = [rows[: config.heldout_per_source] for rows in by_source.values()]
    order = [rows[j] for j in range(max(map(len, picked))) for rows in picked if j < len(rows)]
    # One held-out set for every arm: a problem whose text is also in the pool (MAWPS subsets share problems) is
    # left out here, not by each run against its own (filtered) train rows.
    pool = curated / "stages" / "07_signals"
    in_pool = set(load_from_disk(str(pool))["problem"]) if pool.is_dir() else set()
    order = [i for i in order if holdout[i]["problem"] not in in_pool]
    heldout = holdout.select(order).flatten_indices()
    if (out / "dataset_info.json").is_file():
        import shutil

        shutil.rmtree(out)
    heldout.save_to_disk(str(out))
    ids_path.parent.mkdir(parents=True, exist_ok=True)
    ids_path.write_text(json.dumps({"n": len(heldout), "left_out_in_pool": sum(map(len, picked)) - len(order),
                                    "ids": list(heldout["id"])}))
    return out


def step0_accuracy(config: ExperimentConfig, heldout: Path, grpo_values: dict) -> dict:
    """Held-out accuracy of the untrained policy, computed once with the runs' own evaluation settings."""
    from datasets import load_from_disk

    from saerl_hf.evaluation import evaluate_model
    from saerl_hf.grpo_data import heldout_subset
    from saerl_hf.models import load_model, load_tokenizer

    path = results_root(config) / "step0.json"
    if path.is_file():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    model_name = grpo_values["model_name_or_path"]
    rows = [dict(r) for r in load_from_disk(str(heldout))]
    rows = heldout_subset(rows, grpo_values.get("heldout_limit"))  # the items every run scores
    start = time.perf_counter()
    result = evaluate_model(load_model(model_name), load_tokenizer(model_name), ["heldout"],
                            datasets={"heldout": rows}, max_new_tokens=int(grpo_values.get("heldout_max_new_tokens", 64)),
                            batch_size=int(grpo_values.get("heldout_batch_size", 16)), progress=True, make_plots=False)
    bench = result["benchmarks"]["heldout"]
    items = result["items"]["heldout"]
    record = {"step": 0, "accuracy": bench["accuracy"], "n": bench["n_items"],
              "seconds": round(time.perf_counter() - start, 1),
              "correct_ids": sorted(i["id"] for i in items if i.get("verdicts") and i["verdicts"][0]),
              "scored_ids": sorted(i["id"] for i in items),
              "mean_new_tokens": float(np.mean([n for i in items for n in i.get("new_tokens", [])] or [np.nan]))}
    path.write_text(json.dumps(record))
    return record


def base_grpo_values(config: ExperimentConfig) -> dict:
    values = yaml.safe_load(Path(config.grpo_config).read_text())
    for item in config.grpo_overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ExperimentError(f"grpo_overrides entry '{item}' is not key=value.")
        values[key.strip()] = _parse_value(value)
    return values


def run_yaml(config: ExperimentConfig, arm: str, seed: int, curated: Path) -> dict:
    """The GRPO settings of one run: the shared recipe + overrides + the arm's order/filter + the seed."""
    values = base_grpo_values(config)
    values.update(ARMS[arm])
    values.update({
        "dataset_name": str(curated / "stages" / "07_signals"),
        "heldout_dataset_name": str(Path(config.output_dir) / "heldout"),
        "heldout_on_start": not config.shared_step0,
        "seed": seed,
        "curriculum_seed": seed,
        "output_dir": str(Path(config.output_dir) / "runs" / arm / f"seed{seed}"),
    })
    return values


def run_done(config: ExperimentConfig, arm: str, seed: int) -> bool:
    """Whether this run finished before (its summary is in output_dir or kept in the results dir)."""
    run = Path("runs") / arm / f"seed{seed}"
    return summary_file(Path(config.output_dir) / run) is not None or summary_file(results_root(config) / run) is not None


def launch_run(config: ExperimentConfig, arm: str, seed: int, curated: Path) -> Path:
    """One ``accelerate launch`` GRPO run; skipped when its results already exist."""
    values = run_yaml(config, arm, seed, curated)
    out = Path(values["output_dir"])
    if run_done(config, arm, seed):
        logger.info("run %s seed %d: done before, skipping", arm, seed)
        if summary_file(results_root(config) / "runs" / arm / f"seed{seed}") is None:
            keep_run_logs(config, out, arm, seed)
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.yaml").write_text(yaml.safe_dump(values, sort_keys=True))
    if any(out.glob("checkpoint-*")):
        values["resume_from_checkpoint"] = "last"
        (out / "run_config.yaml").write_text(yaml.safe_dump(values, sort_keys=True))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config.accelerate_config,
           "-m", "saerl_hf.grpo", "--config", str(out / "run_config.yaml")]
    logger.info("run %s seed %d: %s", arm, seed, " ".join(cmd))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), WANDB_MODE="disabled")
    if config.parallel > 1:
        threads = str(max(1, (os.cpu_count() or 1) // config.parallel))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    start = time.perf_counter()
    with open(out / "train.log", "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise ExperimentError(f"run {arm} seed {seed} failed (exit {proc.returncode}); see {out / 'train.log'}.")
    (out / "wall_clock.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}))
    keep_run_logs(config, out, arm, seed)
    for checkpoint in out.glob("checkpoint-*"):  # keep the report data, not 0.5 GB per checkpoint
        import shutil

        shutil.rmtree(checkpoint, ignore_errors=True)
    return out


def probe_model(config: ExperimentConfig, model: str, out: Path) -> dict:
    """Score one model on the probe benchmark's test split once (``out`` holds the record; reruns reuse it)."""
    if out.is_file():
        return json.loads(out.read_text())
    from saerl_hf.evaluation import evaluate_model

    start = time.perf_counter()
    result = evaluate_model(model, benchmarks=[config.probe_benchmark], split="test", limit=config.probe_limit,
                            max_new_tokens=config.probe_max_new_tokens, batch_size=32, progress=True, make_plots=False)
    bench = result["benchmarks"][config.probe_benchmark]
    record = {"benchmark": config.probe_benchmark, "accuracy": bench["accuracy"], "n": bench["n_items"],
              "max_new_tokens": config.probe_max_new_tokens, "seconds": round(time.perf_counter() - start, 1)}
    out.write_text(json.dumps(record))
    return record


def probe_runs(config: ExperimentConfig) -> None:
    """The probe for the untrained policy and every finished run that kept its final model."""
    if not config.probe_benchmark:
        return
    probe_model(config, base_grpo_values(config)["model_name_or_path"], results_root(config) / "probe_step0.json")
    for run_dir in finished_runs(config.output_dir):
        if (run_dir / "config.json").is_file() or (run_dir / "adapter_config.json").is_file():
            logger.info("probe %s on %s", config.probe_benchmark, run_dir)
            probe_model(config, str(run_dir), run_dir / "probe.json")
            keep_run_logs(config, run_dir, run_dir.parent.name, int(run_dir.name.removeprefix("seed")))


def run_experiment(config: ExperimentConfig) -> dict:
    """Curate once, run every arm x seed (resumable), then write the report."""
    from concurrent.futures import ThreadPoolExecutor

    if config.warmstart_config:
        run_warmstart_stage(config)
    curated = run_curate_stage(config)
    keep_pass_rate_labels(config, curated)
    from saerl_hf.experiment_stats import check_proxy

    check_proxy(config, curated)
    heldout = build_heldout(config, curated)
    if config.shared_step0:
        step0_accuracy(config, heldout, base_grpo_values(config))
    runs = config.run_list()
    arms = {arm for arm, _ in runs}
    cost_path = results_root(config) / "labelling_cost.json" if arms & set(ARM_POOLS) else None  # SAE vs the rest
    if cost_path:
        write_labelling_cost(cost_path, config, curated, arms)
    pools: dict[str, Path] = {}

    def pool_of(arm: str, seed: int) -> Path:  # an arm's own pool is built (or resumed) just before its first run
        if arm not in pools and not run_done(config, arm, seed):
            pools[arm] = arm_curated(config, arm, curated)
            if cost_path:
                write_labelling_cost(cost_path, config, curated, arms)
        return pools.get(arm, curated)

    if config.parallel > 1:
        curated_of = {run: pool_of(*run) for run in runs}  # before the threads: two seeds never build one pool
        with ThreadPoolExecutor(max_workers=config.parallel) as pool:
            for done in pool.map(lambda run: launch_run(config, run[0], run[1], curated_of[run]), runs):
                logger.info("finished %s", done)
    else:
        for i, (arm, seed) in enumerate(runs, 1):
            logger.info("[%d/%d] %s seed %d", i, len(runs), arm, seed)
            launch_run(config, arm, seed, pool_of(arm, seed))
    probe_runs(config)
    if "oracle" in arms:
        check_proxy(config, curated)  # again: the oracle arm's labels exist only now
    from saerl_hf.experiment_report import write_report

    return write_report(config)


def cli_main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    @dataclass
    class ReportOnly:
        report_only: bool = field(default=False, metadata={"help": "Only rebuild the report from saved runs."})
        probe_only: bool = field(default=False, metadata={
            "help": "Only score the probe benchmark on finished runs (no training), then rebuild the report."})

    parser = TrlParser((ExperimentConfig, ReportOnly), prog="python -m saerl_hf.experiment")
    config, flags = parse_config(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from saerl_hf.experiment_report import write_report

    if flags.probe_only:
        probe_runs(config)
    if flags.report_only or flags.probe_only:
        keep_finished_runs(config)
        if curate_output(config).is_dir():
            keep_pass_rate_labels(config, curate_output(config))
            if (arms := {arm for arm, _ in config.run_list()}) & set(ARM_POOLS):  # the oracle's cost as its labels land
                write_labelling_cost(results_root(config) / "labelling_cost.json", config, curate_output(config), arms)
        from saerl_hf.experiment_stats import check_proxy

        check_proxy(config, curate_output(config))
    data = write_report(config) if flags.report_only or flags.probe_only else run_experiment(config)
    print(json.dumps(data["analysis"], indent=1, default=str))
    print(f"report: {config.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
