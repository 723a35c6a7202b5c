"""The arms of the comparison and the scored pool each one reads, with what its difficulty labels cost.

``ARMS`` holds what an arm sets at train time (order and quality filter). Most arms read curate's scored pool
(``<curated>/stages/07_signals``); the arms in ``ARM_POOLS`` read a sibling of it, so that the data choice is
all that differs:

- ``dense``: the same curate with every probe fitted on dense mean-pooled activations instead of SAE features,
  reusing the pool's pass-rate labels by id (sampling them is the expensive part), in ``<curated>-dense``;
- ``oracle``: the SAE pool with ``difficulty`` = 1 - the policy's measured pass rate on every prompt (same sampling
  settings as the labels, which are reused), in ``<curated>-oracle``: how good the order could be with true labels.

Both resume: the dense pool stage by stage (curate's stages), the oracle's labelling chunk by chunk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from saerl_hf.errors import SaerlError

logger = logging.getLogger(__name__)

# What differs between arms at train time: the curriculum (order) and the quality filter. Nothing else.
ARMS: dict[str, dict] = {
    "vanilla": {"curriculum": "vanilla", "quality_threshold": None},
    "saerl": {"curriculum": "saerl", "quality_threshold": 0.5},
    "saerl_nofilter": {"curriculum": "saerl", "quality_threshold": None},
    "difficulty": {"curriculum": "difficulty", "quality_threshold": None},
    "filter_only": {"curriculum": "vanilla", "quality_threshold": 0.5},
    "adaptive": {"curriculum": "adaptive", "quality_threshold": 0.5},
    "dense": {"curriculum": "saerl", "quality_threshold": 0.5},
    "oracle": {"curriculum": "saerl", "quality_threshold": 0.5},
}
ARM_LABELS = {
    "vanilla": "vanilla GRPO (shuffled, unfiltered)",
    "saerl": "SAERL (quality filter + clusters + mixing + easy-to-hard)",
    "saerl_nofilter": "SAERL order without the quality filter",
    "difficulty": "difficulty only (global easy-to-hard, unfiltered)",
    "filter_only": "quality filter only (shuffled)",
    "adaptive": "adaptive target difficulty (beyond the paper)",
    "dense": "SAERL on dense mean-pooled activations (no SAE; same labels)",
    "oracle": "SAERL with measured pass rates on every prompt (upper bound)",
}


@dataclass(frozen=True)
class ArmPool:
    """An arm whose scored pool is not curate's own: ``<curated><suffix>``, made by a curate with extra flags, or
    (``oracle``) by measuring the pass rate of every pool prompt."""

    suffix: str
    curate_overrides: tuple[str, ...] = ()
    oracle: bool = False


ARM_POOLS = {"dense": ArmPool("-dense", ("--features=dense",)), "oracle": ArmPool("-oracle", oracle=True)}
LABELS_STAGE = "labels_pass_rate"  # where curate keeps its pass-rate labels (stages/)
ORACLE_STAGE = "oracle_pass_rate"
ORACLE_KEPT = "oracle_pass_rates.json"  # in results_dir: the oracle's labels as they land (class KeptOracle)
ORACLE_CHUNK_SIZE = 32  # prompts per resumable oracle chunk: ~2-3 min on 2 cores at k=8, 64 tokens
COST_SAMPLE = 100  # pool prompts timed for a proxy's labelling cost


class ArmPoolError(SaerlError, ValueError):
    """An arm's pool cannot be built as asked; the message names the setting and the fix."""


def results_root(config) -> Path:
    """Where finished runs' small logs and the kept labels live (committed when it is under docs/)."""
    return Path(config.results_dir or config.output_dir)


def parse_curate_config(config, extra: tuple[str, ...] | list[str] = ()):
    """(CurateConfig, its argv): the experiment's curate recipe + its overrides + ``extra`` (later flags win)."""
    from trl import TrlParser

    from saerl_hf.configs import parse_config
    from saerl_hf.curate import CurateConfig

    args = ["--config", config.curate_config, *config.curate_overrides, *extra]
    (curate_config,) = parse_config(TrlParser((CurateConfig,), prog="saerl-hf curate"), args)  # old keys warn
    return curate_config, args


def curate_output(config) -> Path:
    """curate's output dir as the recipe and overrides set it (without parsing the whole recipe)."""
    import yaml

    values = yaml.safe_load(Path(config.curate_config).read_text())
    for flag in config.curate_overrides:
        key, _, value = flag.lstrip("-").partition("=")
        if key == "output_dir":
            values["output_dir"] = value
    return Path(values["output_dir"])


def run_curate_stage(config, extra: tuple[str, ...] | list[str] = ()) -> Path:
    """Curate (or resume curating) the pool; every arm then reads its unfiltered scored stage."""
    from saerl_hf.curate import run_curate

    curate_config, args = parse_curate_config(config, extra)
    run_curate(curate_config, command="saerl-hf curate " + " ".join(shlex.quote(a) for a in args))
    return Path(curate_config.output_dir)


def arm_dir(curated: Path, arm: str) -> Path:
    """The curated dir an arm reads: curate's own, or its sibling for the arms in ``ARM_POOLS``."""
    return Path(f"{curated}{ARM_POOLS[arm].suffix}") if arm in ARM_POOLS else Path(curated)


def arm_curated(config, arm: str, curated: Path) -> Path:
    """Build (or resume) the scored pool ``arm`` reads and return its curated dir."""
    if arm not in ARM_POOLS:
        return Path(curated)
    out, spec = arm_dir(curated, arm), ARM_POOLS[arm]
    if spec.oracle:
        return build_oracle_pool(config, Path(curated), out)
    extra = [*spec.curate_overrides, f"--output_dir={out}"]
    labels = Path(curated) / "stages" / LABELS_STAGE
    if (labels / "dataset_info.json").is_file():
        extra.append(f"--pass_rate_labels={labels}")  # the same labels, not a second sampling
    logger.info("arm %s: curating its pool in %s", arm, out)
    return run_curate_stage(config, extra)


def keep_pass_rate_labels(config, curated: Path) -> Path | None:
    """``<results_dir>/pass_rate_labels.jsonl``: curate's measured labels (id, pass rate, samples), committed so that
    a rebuild can reuse them (``--pass_rate_labels``) instead of sampling them again; written once, never replaced."""
    from saerl_hf.stages import is_done

    labels = Path(curated) / "stages" / LABELS_STAGE
    dest = results_root(config) / "pass_rate_labels.jsonl"
    if dest.is_file() or not is_done(labels):
        return dest if dest.is_file() else None
    from datasets import load_from_disk

    kept = load_from_disk(str(labels))
    kept = kept.select_columns([c for c in ("id", "pass_rate", "n_samples", "n_cut") if c in kept.column_names])
    dest.parent.mkdir(parents=True, exist_ok=True)
    kept.to_json(str(dest), lines=True)
    logger.info("kept %d pass-rate labels in %s", len(kept), dest)
    return dest


def _known_pass_rates(labels_dir: Path) -> dict[str, float]:
    """id -> pass rate of the prompts curate already labelled (none when it did not label pass rates)."""
    from datasets import load_from_disk

    if not (labels_dir / "dataset_info.json").is_file():
        return {}
    labels = load_from_disk(str(labels_dir)).select_columns(["id", "pass_rate"])
    return dict(zip(labels["id"], labels["pass_rate"]))


def _check_oracle_settings(out: Path, settings: dict) -> None:
    """Chunks labelled under other settings must not be mixed into this labelling: refuse, and say how."""
    path = out / "stages" / "oracle_config.json"
    if path.is_file() and json.loads(path.read_text()) != settings:
        raise ArmPoolError(f"{out} holds oracle labels made with other settings ({path}). Fix: delete {out} to "
                           f"label again, or restore the curate recipe it was made with.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1, sort_keys=True))


def build_oracle_pool(config, curated: Path, out: Path) -> Path:
    """``<out>/stages/07_signals``: curate's scored pool with ``difficulty`` = 1 - the policy's measured pass rate
    (k samples, curate's label settings) on every prompt; the proxy's prediction stays as ``difficulty_proxy``."""
    from datasets import load_from_disk

    from saerl_hf.curate import pass_rate_config
    from saerl_hf.stages import chunked_map, run_dataset_stage

    scored = load_from_disk(str(curated / "stages" / "07_signals"))
    pr_config = pass_rate_config(parse_curate_config(config)[0])
    known = _known_pass_rates(curated / "stages" / LABELS_STAGE)
    rows = [i for i, row_id in enumerate(scored["id"]) if row_id not in known]
    ids = "\n".join(scored.select(rows)["id"]).encode()  # the chunks are slices of exactly these prompts
    settings = {"pass_rate": asdict(pr_config), "prompts_sha256": hashlib.sha256(ids).hexdigest(),
                "reused_labels": len(known)}
    _check_oracle_settings(out, settings)
    columns = [c for c in ("id", "problem", "answer", "source") if c in scored.column_names]
    todo = scored.select(rows)
    todo = todo.select_columns(columns).flatten_indices(keep_in_memory=True)  # in memory: no cache files anywhere
    measured = dict(known)
    if len(todo):
        logger.info("oracle: labelling %d prompts (k=%d, %d tokens), %d reused", len(todo), pr_config.k,
                    pr_config.max_new_tokens, len(known))
        kept = KeptOracle(results_root(config) / ORACLE_KEPT, settings)
        labelled = chunked_map(todo, out / "stages" / ORACLE_STAGE, kept.labeller(pr_config),
                               ORACLE_CHUNK_SIZE, ORACLE_STAGE, desc=f"oracle pass@{pr_config.k} (chunks)")
        measured.update(zip(labelled["id"], labelled["pass_rate"]))

    def build():
        pass_rate = [float(measured[row_id]) for row_id in scored["id"]]
        ds = scored.rename_column("difficulty", "difficulty_proxy") if "difficulty" in scored.column_names else scored
        return ds.add_column("pass_rate", pass_rate).add_column("difficulty", [1.0 - p for p in pass_rate])

    oracle = run_dataset_stage(out / "stages" / "07_signals", build, "oracle_signals")
    _write_oracle_summary(out, oracle, known)
    return out


class KeptOracle:
    """``<results_dir>/oracle_pass_rates.json``: every oracle chunk's measured labels and seconds, written as each
    chunk lands (commit it), so that a fresh machine replays them instead of sampling again; only under the same
    settings and prompts (``settings``), else an error that says how to label again."""

    def __init__(self, path: Path, settings: dict):
        self.path, self.settings = Path(path), settings
        self.chunks: dict = {}
        if self.path.is_file():
            kept = json.loads(self.path.read_text())
            if kept.get("settings") != settings:
                raise ArmPoolError(f"{self.path} holds oracle labels made with other settings or prompts. Fix: delete "
                                   f"it to label again, or restore the curate recipe it was made with.")
            self.chunks = kept["chunks"]

    def labeller(self, pr_config):
        """``fn(chunk)`` for chunked_map: a kept chunk's labels replayed, else sampled and kept."""
        from saerl_hf.signals.passrate import label_pass_rates

        def label(chunk):
            ids = list(chunk["id"])
            entry = self.chunks.get(ids[0]) if ids else None
            if entry and entry["ids"] == ids:
                values = {c: entry[c] for c in ("pass_rate", "n_samples", "n_cut")}
                return chunk.map(lambda _, i: {c: v[i] for c, v in values.items()}, with_indices=True,
                                 keep_in_memory=True, desc="oracle labels (kept)")
            started = time.perf_counter()
            out = label_pass_rates(chunk, pr_config)
            self.chunks[ids[0]] = {"ids": ids, "seconds": round(time.perf_counter() - started, 2),
                                   **{c: list(out[c]) for c in ("pass_rate", "n_samples", "n_cut")}}
            self._write()
            return out

        return label

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "chunks": self.chunks}, sort_keys=True))
        tmp.replace(self.path)


def _write_oracle_summary(out: Path, oracle, known: dict) -> dict:
    """``<out>/oracle.json``: how many prompts were measured or reused, and the proxy's Spearman with the truth on
    the prompts it was not fitted on."""
    from scipy.stats import spearmanr

    record: dict = {"n_pool": len(oracle), "n_reused": len(known), "n_measured": len(oracle) - len(known)}
    if "difficulty_proxy" in oracle.column_names:
        pairs = [(p, d) for row_id, p, d in zip(oracle["id"], oracle["difficulty_proxy"], oracle["difficulty"])
                 if row_id not in known]
        if len(pairs) >= 3:
            record["spearman_proxy_vs_oracle"] = float(spearmanr(*zip(*pairs)).statistic)
    (out / "oracle.json").write_text(json.dumps(record, indent=1))
    return record


def proxy_cost(config, curated: Path, extra: tuple[str, ...] = (), n: int = COST_SAMPLE) -> dict:
    """Seconds per 1,000 prompts of a difficulty proxy: featurize + predict, timed on ``n`` pool prompts with
    a fresh cache (the reader and SAE load before the clock starts)."""
    import shutil
    import tempfile

    from datasets import load_from_disk

    from saerl_hf.features import featurize
    from saerl_hf.pool import featurize_config
    from saerl_hf.signals import DifficultyProbe

    curate_config = parse_curate_config(config, extra)[0]
    pool = load_from_disk(str(curated / "stages" / "02_noise"))
    probe = DifficultyProbe.load(curated / "probes" / "difficulty")
    n = max(1, min(n, len(pool) - 2))
    cache = Path(tempfile.mkdtemp(prefix="saerl-cost-"))
    try:
        fconf = featurize_config(curate_config, cache)
        featurize(pool.select(range(2)).flatten_indices(keep_in_memory=True), fconf)  # loads reader + SAE
        sample = pool.select(range(2, 2 + n)).flatten_indices(keep_in_memory=True)
        start = time.perf_counter()
        probe.predict(featurize(sample, fconf))
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"seconds_per_1000": round(1000 * seconds / n, 2), "n_prompts": n,
            "what": f"featurize ({curate_config.features} features, {curate_config.reader_dtype} reader) + "
                    f"difficulty probe, timed on {n} pool prompts; the proxy also needs its labelled subset"}


def oracle_cost(config, curated: Path) -> dict | None:
    """Seconds per 1,000 prompts of measuring pass rates, from the labelling's own timings: every sampled oracle chunk
    (KeptOracle's record; a replayed chunk costs nothing and is not a labelling) and curate's labelled subset when
    curate sampled it (labels reused by ``pass_rate_labels`` were only joined by id). None before any sampling."""
    from saerl_hf.stages import is_done, stage_info

    curate_config = parse_curate_config(config)[0]
    kept = results_root(config) / ORACLE_KEPT
    chunks = json.loads(kept.read_text())["chunks"].values() if kept.is_file() else []
    timed = [(len(chunk["ids"]), chunk["seconds"]) for chunk in chunks]
    labels = Path(curated) / "stages" / LABELS_STAGE
    if is_done(labels) and not curate_config.pass_rate_labels:
        info = stage_info(labels)
        timed += [(info["rows"], info["seconds"])] if "rows" in info and "seconds" in info else []
    n = sum(rows for rows, _ in timed)
    if not n:
        return None
    pr = asdict(curate_config)
    # The median batch: a batch that shared the cores with another job, or spanned a pause, counts once.
    rate = float(np.median([seconds / rows for rows, seconds in timed if rows]))
    return {"seconds_per_1000": round(1000 * rate, 2), "n_prompts": n,
            "what": f"generation: k={pr['pass_rate_samples']} samples of <= {pr['pass_rate_max_new_tokens']} tokens "
                    f"per prompt, scored; the median of {len(timed)} timed batches ({n} prompts, "
                    f"{sum(s for _, s in timed):,.0f} s of wall clock in all)"}


def write_labelling_cost(path: Path, config, curated: Path, arms) -> dict:
    """``labelling_cost.json``: {arm: {seconds_per_1000, n_prompts, what}} for the SAE proxy (``saerl``), the
    dense proxy and the oracle among ``arms``; a proxy is timed once (kept entries are not measured again)."""
    path = Path(path)
    cost = json.loads(path.read_text()) if path.is_file() else {}
    proxies = {"saerl": (Path(curated), ()), "dense": (arm_dir(curated, "dense"), ARM_POOLS["dense"].curate_overrides)}
    for arm, (pool_dir, extra) in proxies.items():
        if arm in arms and arm not in cost and (pool_dir / "probes" / "difficulty").is_dir():
            cost[arm] = proxy_cost(config, pool_dir, extra)
    if "oracle" in arms:
        cost["oracle"] = oracle_cost(config, curated) or cost.get("oracle")
    cost = {arm: entry for arm, entry in cost.items() if entry}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cost, indent=1, sort_keys=True))
    return cost
