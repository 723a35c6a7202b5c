"""A corpus of bad inputs fed through the public entry points: each gives an error naming the file/row/field
and the fix (asserted on the message), or a counted, reported skip; and nothing already on disk is lost.

Covered: loaders (saerl_hf.data), featurize (tiny random model + tiny sae-lens SAE from conftest), the signal
probes, curate / GRPO / push configs, the Hub emulator (missing revision), and evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from saerl_hf.data import DataError, load_math_dataset
from saerl_hf.sparse import InvalidFeaturesError, write_provenance


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): digest(p) for p in sorted(Path(root).rglob("*")) if p.is_file()}


def jsonl(*rows) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()


OK = {"problem": "What is 2 + 2?", "answer": "4"}


def _parquet(table: dict, cut: bool = False) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(table), sink)
    data = sink.getvalue().to_pybytes()
    return data[: len(data) // 2] if cut else data


# ----------------------------------------------------------------------------- loaders (saerl_hf.data)

# (kind, file name, bytes, regex the message must match besides the file name and "Fix")
LOADER_CASES = [
    ("whitespace prompt", "ws.jsonl", jsonl(OK, {"problem": "  \t ", "answer": "1"}), r"row 1: field 'problem' is empty"),
    ("empty prompt", "empty_p.jsonl", jsonl({"problem": "", "answer": "1"}), r"row 0: field 'problem' is empty"),
    ("missing column", "noanswer.jsonl", jsonl(OK, {"problem": "Why?"}), r"row 1: missing required field 'answer'"),
    ("non-string prompt", "int_p.jsonl", jsonl({"problem": 42, "answer": "1"}), r"row 0: field 'problem' .*\(42\)"),
    ("dict prompt", "dict_p.jsonl", jsonl(OK, OK, {"problem": {"q": "x"}, "answer": "1"}), r"row 2: field 'problem'"),
    ("list answer", "list_a.jsonl", jsonl({"problem": "p?", "answer": [1, 2]}), r"row 0: field 'answer': .*list"),
    ("bool answer", "bool_a.jsonl", jsonl(OK, {"problem": "p?", "answer": True}), r"row 1: .*boolean"),
    ("NaN answer", "nan_a.jsonl", jsonl(OK, '{"problem": "p?", "answer": NaN}'), r"row 1: field 'answer': nan is not a finite"),
    ("inf answer", "inf_a.jsonl", jsonl('{"problem": "p?", "answer": -Infinity}'), r"row 0: field 'answer': -inf"),
    ("level of the wrong dtype", "lvl.jsonl", jsonl(OK, {**OK, "level": "hard"}), r"row 1: field 'level' holds 'hard'"),
    ("duplicate ids", "dup.jsonl", jsonl({**OK, "id": "a"}, {**OK, "id": "b"}, {**OK, "id": "a"}),
     r"duplicate id 'a' in rows 0 and 2"),
    ("empty file", "empty.jsonl", b"", r"no rows to load"),
    ("whitespace-only file", "blank.jsonl", b"\n   \n\t\n", r"no rows to load"),
    ("non-UTF-8 JSONL", "latin1.jsonl", '{"problem": "caf\u00e9?", "answer": "1"}\n'.encode("latin-1"),
     r"not valid UTF-8 \(byte 16\)"),
    ("non-UTF-8 JSON", "latin1.json", '[{"problem": "caf\u00e9?", "answer": "1"}]'.encode("latin-1"), r"not valid UTF-8"),
    ("truncated JSONL", "cut.jsonl", jsonl(OK, OK) + b'\n{"problem": "What is 3 +', r"line 3: invalid JSON"),
    ("truncated JSON", "cut.json", json.dumps([OK, OK]).encode()[:-9], r"not valid JSON .*truncated"),
    ("truncated parquet", "cut.parquet", _parquet({"problem": ["a?"] * 50, "answer": ["1"] * 50}, cut=True),
     r"not a readable parquet file"),
    ("parquet null prompt", "null_p.parquet", _parquet({"problem": ["a?", None], "answer": ["1", "2"]}),
     r"row 1: field 'problem' .*None"),
    ("parquet NaN answer", "nan_a.parquet", _parquet({"problem": ["a?", "b?"], "answer": [1.0, float("nan")]}),
     r"row 1: field 'answer': nan"),
    ("JSON list of non-objects", "scalars.json", b"[1, 2, 3]", r"row 0: expected an object"),
    ("JSONL line that is not an object", "array.jsonl", jsonl(OK, "[1, 2]"), r"line 2: expected a JSON object"),
    ("unsupported file type", "rows.csv", b"problem,answer\nWhat is 1+1?,2\n", r"unsupported file type '\.csv'"),
]


@pytest.mark.parametrize("kind,name,content,pattern", LOADER_CASES, ids=[c[0] for c in LOADER_CASES])
def test_loader_errors_name_file_row_field_and_fix(tmp_path, kind, name, content, pattern):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_math_dataset(str(path))
    message = str(err.value)
    assert str(path) in message, message
    assert "Fix" in message, message
    assert re.search(pattern, message), message
    assert path.read_bytes() == content  # the input is only read


def test_loader_refuses_a_directory_and_a_missing_file(tmp_path):
    (tmp_path / "a_dir.jsonl").mkdir()
    with pytest.raises(DataError, match=r"a_dir\.jsonl is a directory, not a data file\. Fix:"):
        load_math_dataset(str(tmp_path / "a_dir.jsonl"))
    with pytest.raises(DataError, match=r"nope\.jsonl' does not exist\. Fix"):
        load_math_dataset(str(tmp_path / "nope.jsonl"))


def test_nan_and_inf_levels_are_a_counted_reported_skip(tmp_path, caplog):
    path = tmp_path / "levels.jsonl"
    path.write_bytes(jsonl({**OK, "level": 3}, '{"problem": "a?", "answer": "1", "level": NaN}',
                           '{"problem": "b?", "answer": "2", "level": Infinity}', {**OK, "level": None}))
    with caplog.at_level(logging.WARNING, logger="saerl_hf.data"):
        ds = load_math_dataset(str(path))
    assert ds["level"] == [3.0, None, None, None]  # kept as unlabelled rows, not dropped, not NaN
    assert "2 row(s) have a NaN/inf 'level'" in caplog.text and "row 1, row 2" in caplog.text


def test_enormous_prompt_loads_whole(tmp_path):
    problem = "How many apples? " + "and one more apple " * 60_000  # ~1.1 MB
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl({"problem": problem, "answer": "1"}))
    assert load_math_dataset(str(path))[0]["problem"] == problem


# ----------------------------------------------------------------------------- featurize


@pytest.fixture(scope="module")
def gsm(data_dir):
    return load_math_dataset("gsm8k", "test", limit=10)


@pytest.fixture()
def fconfig(tiny_model_dir, tiny_sae_dir, tmp_path):
    from saerl_hf.features import FeaturizeConfig

    return FeaturizeConfig(model=tiny_model_dir, sae=tiny_sae_dir, top_k=8, batch_size=4,
                           cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("value", ["", "   \n", None], ids=["empty", "whitespace", "None"])
def test_featurize_bad_prompt_names_row_id_and_fix(gsm, fconfig, value):
    from saerl_hf.features import FeaturizeError, featurize

    rows = [{"id": r["id"], "problem": r["problem"], "source": r["source"]} for r in gsm.select(range(4))]
    rows[3] = {"id": "bad-row", "problem": value, "source": "gsm8k"}
    with pytest.raises(FeaturizeError, match=r"row 3 id='bad-row': 'problem' is empty or missing\. Fix"):
        featurize(Dataset.from_list(rows), fconfig)


def test_featurize_non_string_prompt_column_names_row_and_fix(fconfig):
    from saerl_hf.features import FeaturizeError, featurize

    ds = Dataset.from_dict({"id": ["a", "b"], "problem": [12, 7]})
    with pytest.raises(FeaturizeError, match=r"row 0 id='a': 'problem' is not a string \(got int '12'\)\. Fix"):
        featurize(ds, fconfig)


def test_featurize_missing_column_names_columns_and_fix(gsm, fconfig):
    from saerl_hf.features import FeaturizeError, featurize

    with pytest.raises(FeaturizeError, match=r"no 'question' column \(columns: id, problem.*Fix: pass problem_column"):
        featurize(gsm, fconfig, problem_column="question")


def test_featurize_enormous_prompt_is_truncated_counted_and_kept(gsm, fconfig):
    from saerl_hf import features as F
    from saerl_hf.features import featurize

    rows = gsm.select(range(3)).to_list()
    rows[1]["problem"] = "Count the apples. " + "One apple and one more. " * 20_000
    before = F.STATS["truncated"]
    with pytest.warns(UserWarning, match="longer than max_length=64"):
        out = featurize(Dataset.from_list(rows), fconfig, max_length=64)
    assert F.STATS["truncated"] - before >= 1
    assert len(out) == 3 and all(len(v) > 0 for v in out["sae_idx"])  # the row is featurized, not dropped


def test_featurize_batch_sizes_that_do_not_divide_give_the_same_columns(gsm, fconfig):
    from saerl_hf import features as F
    from saerl_hf.features import featurize

    whole = featurize(gsm, fconfig, batch_size=10, map_batch_size=10)
    rows = F.STATS["rows"]
    # Another cache dir: batch sizes are not part of the fingerprint, so this really recomputes.
    ragged = featurize(gsm, fconfig, batch_size=3, map_batch_size=4, cache_dir=fconfig.cache_dir + "-ragged")
    assert F.STATS["rows"] - rows == 10  # 10 rows: map batches 4+4+2, forwards of 3+1, 3+1, 2
    assert len(ragged) == len(whole) == 10
    assert ragged["sae_idx"] == whole["sae_idx"] and ragged["sae_l0"] == whole["sae_l0"]
    for a, b in zip(ragged["sae_val"], whole["sae_val"]):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_featurize_empty_dataset_returns_empty_columns(gsm, fconfig):
    from saerl_hf.features import featurize

    out = featurize(gsm.select([]), fconfig)
    assert len(out) == 0 and {"sae_idx", "sae_val", "sae_l0"} <= set(out.column_names)


def _sae_copy(src: str, dst: Path, damage) -> Path:
    shutil.copytree(src, dst)
    damage(dst)
    return dst


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


SAE_DAMAGE = {
    "truncated weights": (lambda d: _truncate(d / "sae_weights.safetensors"), r"sae_weights\.safetensors.*corrupt"),
    "garbage weights": (lambda d: (d / "sae_weights.safetensors").write_bytes(b"\0" * 64), r"corrupt or truncated"),
    "truncated cfg.json": (lambda d: _truncate(d / "cfg.json"), r"cfg\.json is not valid JSON"),
    "cfg.json without d_in": (lambda d: (d / "cfg.json").write_text(json.dumps(
        {k: v for k, v in json.loads((d / "cfg.json").read_text()).items() if k != "d_in"})), r"no integer 'd_in'"),
    "missing weights": (lambda d: (d / "sae_weights.safetensors").unlink(), r"not a sae-lens SAE directory"),
}


@pytest.mark.parametrize("kind", list(SAE_DAMAGE))
def test_corrupt_or_truncated_sae_is_refused_before_any_row(gsm, fconfig, tiny_sae_dir, tmp_path, kind):
    from saerl_hf import features as F
    from saerl_hf.features import featurize
    from saerl_hf.sae import SAELoadError

    damage, pattern = SAE_DAMAGE[kind]
    sae = _sae_copy(tiny_sae_dir, tmp_path / "sae", damage)
    before_files, rows = tree(sae), F.STATS["rows"]
    with pytest.raises(SAELoadError, match=pattern) as err:
        featurize(gsm, fconfig, sae=str(sae))
    assert str(sae) in str(err.value) and "Fix" in str(err.value)
    assert F.STATS["rows"] == rows and tree(sae) == before_files  # no work done, nothing touched


def test_sae_given_as_a_file_says_pass_its_directory(gsm, fconfig, tiny_sae_dir):
    from saerl_hf.features import featurize
    from saerl_hf.sae import SAELoadError

    weights = str(Path(tiny_sae_dir) / "sae_weights.safetensors")
    with pytest.raises(SAELoadError, match=r"is a file; an SAE is a directory .*Fix: pass the directory"):
        featurize(gsm, fconfig, sae=weights)


def test_sae_of_the_wrong_width_fails_before_any_row(gsm, fconfig, tmp_path):
    from saerl_hf import features as F
    from saerl_hf._testing import save_tiny_model
    from saerl_hf.features import featurize
    from saerl_hf.sae import SAELoadError

    narrow = save_tiny_model(tmp_path / "narrow", hidden_size=32)  # the SAE reads width 64
    rows = F.STATS["rows"]
    with pytest.raises(SAELoadError, match=r"d_in=64, but model '.*narrow' has hidden size 32\. Fix: use an SAE"):
        featurize(gsm, fconfig, model=narrow)
    assert F.STATS["rows"] == rows


def _not_a_model(kind: str, root: Path, tiny_model_dir: str) -> Path:
    path = root / kind.replace(" ", "_")
    if kind == "missing path":
        return path
    if kind == "a file":
        path.write_text("not a model")
        return path
    path.mkdir()
    if kind == "bad config.json":
        (path / "config.json").write_text('{"model_type": "llama", ')
    elif kind == "no weights":
        shutil.copy(Path(tiny_model_dir) / "config.json", path / "config.json")
        for name in Path(tiny_model_dir).glob("tokenizer*"):
            shutil.copy(name, path / name.name)
    return path


@pytest.mark.parametrize("kind", ["missing path", "a file", "empty dir", "bad config.json", "no weights"])
def test_model_path_that_is_not_a_model(gsm, fconfig, tiny_model_dir, tmp_path, kind):
    from saerl_hf.features import featurize
    from saerl_hf.models import ModelNotFoundError

    bad = _not_a_model(kind, tmp_path, tiny_model_dir)
    with pytest.raises(ModelNotFoundError) as err:
        featurize(gsm, fconfig, model=str(bad))
    assert str(bad) in str(err.value) and "Fix" in str(err.value), str(err.value)


# ----------------------------------------------------------------------------- signal probes

D_SAE = 64
PROV = {"model": "reader", "layer": 2, "hook": "model.layers.2", "sae": "test-sae", "sae_hash": "h0", "d_sae": D_SAE,
        "d_in": 32, "pooling": "mean", "top_k": 8}


def featurized(n=80, seed=0, provenance=None, edit=None, labels=None):
    rng = np.random.default_rng(seed)
    idx = [np.sort(rng.choice(D_SAE, 8, replace=False)).tolist() for _ in range(n)]
    val = [rng.exponential(1.0, 8).round(4).tolist() for _ in range(n)]
    level = labels if labels is not None else [float(sum(v) + i % 3) for i, v in enumerate(val)]
    if edit:
        edit(idx, val)
    columns = {"id": [f"r{i}" for i in range(n)], "problem": [f"p{i}" for i in range(n)], "sae_idx": idx,
               "sae_val": val, "level": level}
    return write_provenance(Dataset.from_dict(columns), dict(provenance or PROV))


@pytest.fixture(scope="module")
def probe():
    from saerl_hf.signals import DifficultyConfig, DifficultyProbe

    return DifficultyProbe(DifficultyConfig(min_labels=20, cv=3, n_alphas=4)).fit(featurized())


def _set(row, col, value):
    def edit(idx, val):
        (idx if col == "idx" else val)[row][2] = value
    return edit


def _drop_last(idx, val):
    val[9] = val[9][:-1]


BAD_FEATURES = {
    "NaN activation": (_set(37, "val", float("nan")), r"row 37: sae_val holds nan"),
    "inf activation": (_set(5, "val", float("inf")), r"row 5: sae_val holds inf"),
    "negative index": (_set(7, "idx", -1), r"row 7: feature index -1 is outside \[0, 64\)"),
    "index past the width": (_set(50, "idx", 64), r"row 50: feature index 64 is outside \[0, 64\)"),
    "misaligned idx/val": (_drop_last, r"row 9: sae_idx has 8 entries but sae_val has 7"),
}


@pytest.mark.parametrize("kind", list(BAD_FEATURES))
@pytest.mark.parametrize("step", ["apply", "fit", "clusters"])
def test_bad_feature_values_name_the_row(probe, kind, step):
    from saerl_hf.signals import ClusterConfig, ClusterModel, DifficultyConfig, DifficultyProbe

    edit, pattern = BAD_FEATURES[kind]
    data = featurized(seed=1, edit=edit)
    run = {"apply": lambda: probe.apply(data, batch_size=16),
           "fit": lambda: DifficultyProbe(DifficultyConfig(min_labels=20)).fit(data),
           "clusters": lambda: ClusterModel(ClusterConfig(n_clusters=2)).fit(data)}[step]
    with pytest.raises(InvalidFeaturesError, match=pattern + r".*Fix"):
        run()


def test_nan_and_inf_labels_are_skipped_counted_and_logged(caplog):
    from saerl_hf.signals import DifficultyConfig, DifficultyProbe

    labels = [float(i % 5) for i in range(80)]
    labels[3], labels[4], labels[5] = float("nan"), float("inf"), None
    with caplog.at_level(logging.INFO, logger="saerl_hf.signals.difficulty"):
        fitted = DifficultyProbe(DifficultyConfig(min_labels=20, cv=3, n_alphas=4)).fit(featurized(labels=labels))
    assert fitted.metrics["n_excluded_missing_label"] == 3 and fitted.metrics["n_labelled"] == 77
    assert "3 of 80 rows" in caplog.text


def test_non_numeric_and_non_binary_labels_name_row_and_fix():
    from saerl_hf.signals import DifficultyProbe, QualityConfig, QualityProbe, SignalLabelError

    text = featurized(labels=["hard" if i == 5 else str(i) for i in range(80)])
    with pytest.raises(SignalLabelError, match=r"Row 5: label column 'level' holds 'hard'.*Fix"):
        DifficultyProbe().fit(text)
    with pytest.raises(SignalLabelError, match=r"must be 0 or 1; 'level' also holds \[2\.0\].*Fix"):
        QualityProbe(QualityConfig(label_column="level")).fit(featurized(labels=[float(i % 3) for i in range(80)]))


def test_probe_fitted_on_another_sae_is_refused(probe):
    from saerl_hf.signals import SAEMismatchError

    other = featurized(seed=2, provenance={**PROV, "sae_hash": "h1"})
    with pytest.raises(SAEMismatchError, match=r"sae_hash: fitted on 'h0', dataset has 'h1'.*Fix"):
        probe.apply(other)
    wider = featurized(seed=3, provenance={**PROV, "d_sae": 128})
    with pytest.raises(SAEMismatchError, match=r"d_sae: fitted on 64, dataset has 128.*Fix"):
        probe.predict(wider)


def test_empty_dataset_to_the_probes_is_a_clear_error(probe):
    from saerl_hf.signals import (
        ClusterConfig,
        ClusterModel,
        DifficultyConfig,
        DifficultyProbe,
        SignalLabelError,
    )

    empty = featurized().select([])
    with pytest.raises(SignalLabelError, match=r"Only 0 rows .*Fix"):
        DifficultyProbe(DifficultyConfig(min_labels=20)).fit(empty)
    with pytest.raises(ValueError, match=r"n_clusters=2 needs at least 2 rows; the dataset has 0\. Fix"):
        ClusterModel(ClusterConfig(n_clusters=2)).fit(empty)
    assert len(probe.apply(empty)) == 0  # applying to nothing is nothing, not an error


PROBE_DAMAGE = {
    "truncated config.json": (lambda d: _truncate(d / "config.json"), r"config\.json is not valid JSON"),
    "truncated weights": (lambda d: _truncate(d / "model.safetensors"), r"model\.safetensors cannot be read"),
    "config without identity": (lambda d: (d / "config.json").write_text(json.dumps(
        {k: v for k, v in json.loads((d / "config.json").read_text()).items() if k != "identity"})),
        r"missing config\.json:identity"),
}


@pytest.mark.parametrize("kind", list(PROBE_DAMAGE))
def test_corrupt_probe_files_are_refused_and_left_as_they_are(probe, tmp_path, kind):
    from saerl_hf.signals import DifficultyProbe
    from saerl_hf.signals.persistence import ProbeLoadError

    damage, pattern = PROBE_DAMAGE[kind]
    probe.save(tmp_path / "p")
    damage(tmp_path / "p")
    before = tree(tmp_path / "p")
    with pytest.raises(ProbeLoadError, match=pattern + r".*Fix"):
        DifficultyProbe.load(tmp_path / "p")
    assert tree(tmp_path / "p") == before


# ----------------------------------------------------------------------------- configs (curate, GRPO, push)


def _yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_curate_recipe_with_unknown_key_or_wrong_dtype(tmp_path):
    from trl import TrlParser

    from saerl_hf.configs import ConfigError, parse_config
    from saerl_hf.curate import CurateConfig

    def parse(*argv):
        return parse_config(TrlParser((CurateConfig,), prog="saerl-hf curate"), list(argv))

    recipe = _yaml(tmp_path, "output_dir: out\nquality_threshlod: 0.3\n")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) in the config file: 'quality_threshlod' \(did you mean "
                                          r"'quality_threshold'\?\)\. Fix"):
        parse("--config", recipe)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) on the command line: 'chunksize' \(did you mean "
                                          r"'chunk_size'\?\)\. Fix"):
        parse("--chunksize", "10")
    recipe = _yaml(tmp_path, "output_dir: out\nprompts_per_batch: two\n")
    with pytest.raises(ConfigError, match=r"prompts_per_batch.*invalid int value: 'two'.*Fix: give 'prompts_per_batch'"):
        parse("--config", recipe)


@pytest.mark.parametrize("settings,pattern", [
    ({"quality_threshold": 0.5, "quality_keep_fraction": 0.8}, r"either quality_threshold or quality_keep_fraction"),
    ({"prompts_per_batch": 0}, r"prompts_per_batch and chunk_size must be >= 1 \(got 0"),
    ({"curriculum": "hardest-first"}, r"curriculum must be saerl"),
    ({"sources": []}, r"sources is empty"),
    ({"columns": ["problem"]}, r"columns entry 'problem' is not 'canonical=source'"),
    ({"quality_threshold": None, "quality_keep_fraction": 1.5}, r"quality_keep_fraction must be in \(0, 1\]"),
], ids=["conflicting quality keys", "zero batch", "unknown order", "no sources", "bad column mapping",
        "fraction out of range"])
def test_curate_config_conflicts_name_the_field_and_fix(settings, pattern):
    from saerl_hf.curate import CurateConfig, CurateError

    with pytest.raises(CurateError, match=pattern + r".*Fix"):
        CurateConfig(**settings)


def test_curate_resume_with_other_settings_keeps_the_finished_run(tmp_path):
    from saerl_hf.curate import PUBLISH_OPTIONS, CurateConfig, CurateError, run_curate

    out = tmp_path / "run"
    (out / "stages").mkdir(parents=True)
    first = CurateConfig(output_dir=str(out), sources=["gsm8k:test@40"], pooling="mean")
    from dataclasses import asdict

    (out / "stages" / "config.json").write_text(json.dumps(
        {k: v for k, v in asdict(first).items() if k not in PUBLISH_OPTIONS},
        sort_keys=True))
    (out / "stages" / "01_load").mkdir()
    (out / "stages" / "01_load" / "data.arrow").write_bytes(b"finished work")
    before = tree(out)
    with pytest.raises(CurateError, match=r"other settings \(pooling\)\. Fix: choose another --output_dir"):
        run_curate(CurateConfig(output_dir=str(out), sources=["gsm8k:test@40"], pooling="max"))
    assert tree(out) == before


def test_curate_with_a_truncated_source_file_stops_before_writing_a_stage(tmp_path):
    from saerl_hf.curate import CurateConfig, run_curate

    source = tmp_path / "mine.jsonl"
    source.write_bytes(jsonl(OK, OK) + b'\n{"problem": "cut')
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"mine\.jsonl, line 3: invalid JSON.*Fix"):
        run_curate(CurateConfig(output_dir=str(out), sources=[str(source)]))
    assert sorted(p.name for p in (out / "stages").iterdir()) == ["config.json"]  # no half-made stage


GRPO_BASE = ["--output_dir", "grpo-out", "--use_cpu", "true", "--bf16", "false"]


@pytest.mark.parametrize("argv,pattern", [
    (["--per_device_train_batch_size", "3", "--num_generations", "2"],
     r"generation_batch_size \(3\) must be divisible by num_generations \(2\)\. Fix"),
    (["--curriculum", "hardest"], r"curriculum must be one of .*got 'hardest'\. Fix"),
    (["--quality_threshold", "0.5", "--quality_keep_fraction", "0.5"], r"both set.*Fix"),
    (["--epoch_order", "shuffle"], r"epoch_order must be repeat or band_shuffle.*Fix"),
    (["--curriculum_mixing", "2"], r"curriculum_mixing must be in \[0, 1\].*Fix"),
    (["--num_generatons", "4"], r"'num_generatons' \(did you mean 'num_generations'\?\)\. Fix"),
], ids=["batch does not divide", "unknown curriculum", "conflicting quality keys", "bad epoch order",
        "mixing out of range", "misspelt key"])
def test_grpo_script_config_errors(argv, pattern):
    from saerl_hf.grpo import parse_args

    with pytest.raises(ValueError, match=pattern):
        parse_args([*GRPO_BASE, *argv])


def test_grpo_recipe_with_unknown_key_via_the_cli_exits_2_with_the_fix(tmp_path, capsys):
    from saerl_hf.cli import main

    recipe = _yaml(tmp_path, "output_dir: out\nuse_cpu: true\ncuriculum: saerl\n")
    assert main(["train", "--config", recipe]) == 2
    assert "'curiculum' (did you mean 'curriculum'?). Fix" in capsys.readouterr().err


def test_grpo_data_and_model_errors(tmp_path, tiny_model_dir):
    from trl import ModelConfig

    from saerl_hf.grpo import _load_model, load_train_dataset, prepare_prompts
    from saerl_hf.models import ModelNotFoundError

    (tmp_path / "not_a_dataset").mkdir()
    with pytest.raises(FileNotFoundError, match=r"neither a save_to_disk dataset nor a curated dir.*Fix"):
        load_train_dataset(str(tmp_path / "not_a_dataset"))
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unsupported data file.*Fix"):
        load_train_dataset(str(tmp_path / "rows.txt"))
    with pytest.raises(ValueError, match=r"no 'answer' column \(columns: problem\)\. Fix"):
        prepare_prompts(Dataset.from_dict({"problem": ["a?"]}))
    no_weights = _not_a_model("no weights", tmp_path, tiny_model_dir)
    with pytest.raises(ModelNotFoundError, match=r"model_name_or_path=.*no_weights.*Fix"):
        _load_model(ModelConfig(model_name_or_path=str(no_weights)), None)


def test_dataset_that_does_not_fill_the_last_batch_is_a_counted_skip(caplog):
    from saerl_hf.curriculum import CurriculumError, validate_alignment

    with caplog.at_level(logging.WARNING, logger="saerl_hf.curriculum"):
        report = validate_alignment(10, 4)
    assert (report.num_batches, report.dropped_tail) == (2, 2)
    assert "2 tail prompts" in caplog.text and "10 is not a multiple of 4" in caplog.text
    with pytest.raises(CurriculumError, match=r"has 3 rows but one generation batch needs 4.*Fix"):
        validate_alignment(3, 4)


# ----------------------------------------------------------------------------- Hub (local emulator)

HUB_ERRORS = r"""
import json, sys
from saerl_hf.hub import CuratedLoadError, HubPushError, load_curated, push_curated
from saerl_hf.grpo import load_train_dataset
out = {}
def catch(name, fn):
    try:
        fn()
        out[name] = "no error"
    except Exception as err:  # noqa: BLE001
        out[name] = f"{type(err).__name__}: {err}"
catch("load", lambda: load_curated("saerl/bad-inputs", revision="no-such-branch"))
catch("grpo", lambda: load_train_dataset("saerl/bad-inputs", revision="no-such-branch"))
for bad in sys.argv[1:]:
    catch(bad, lambda: push_curated(bad, "saerl/bad-inputs-push", revision="v1", max_retries=0))
print("RESULT " + json.dumps(out))
"""


def test_hub_missing_revision_and_broken_curated_dirs(hub, hub_run, curated_dirs, tmp_path):
    """A revision that does not exist is named with the branches that do (also through the GRPO loader, which
    must not hide it behind a plain-dataset fallback); a curated dir with a truncated summary.json or a
    corrupt dataset/ is refused before a single request, and stays as it was."""
    hub_run(code="from huggingface_hub import HfApi; HfApi().create_repo('saerl/bad-inputs', repo_type='dataset')")
    truncated, corrupt = tmp_path / "truncated", tmp_path / "corrupt"
    shutil.copytree(curated_dirs[1], truncated)
    _truncate(truncated / "summary.json")
    shutil.copytree(curated_dirs[1], corrupt)
    (corrupt / "dataset" / "dataset_info.json").write_text("{")
    before = {d: tree(d) for d in (truncated, corrupt)}
    hub.reset_log()
    proc = hub_run(str(truncated), str(corrupt), code=HUB_ERRORS)
    got = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    for name in ("load", "grpo"):
        assert got[name].startswith("CuratedLoadError: Revision 'no-such-branch' does not exist in dataset repo "
                                    "'saerl/bad-inputs'. Branches: main"), got[name]
        assert "Fix: pass one of those" in got[name]
    assert got[str(truncated)].startswith(f"HubPushError: {truncated / 'summary.json'}: invalid JSON")
    assert got[str(corrupt)].startswith(f"HubPushError: {corrupt / 'dataset'} is not a readable `save_to_disk`")
    assert all("Fix" in got[str(d)] for d in (truncated, corrupt))
    assert not [r for r in hub.received() if "bad-inputs-push" in r.path]  # refused before any request
    assert {d: tree(d) for d in (truncated, corrupt)} == before


# ----------------------------------------------------------------------------- evaluation


ROWS = [{"id": "a", "problem": "What is 3 + 4?", "answer": "7", "source": "mawps"},
        {"id": "b", "problem": "What is 2 * 5?", "answer": "10", "source": "mawps"}]


@pytest.mark.parametrize("rows,pattern", [
    ([], r"toy: no rows to evaluate .*Fix"),
    ([ROWS[0], {**ROWS[1], "id": "a"}], r"toy: duplicate 'id' 'a' in rows 0 and 1.*Fix"),
    ([ROWS[0], {**ROWS[1], "problem": "  "}], r"toy: row 1 has no 'problem' text.*Fix"),
    ([ROWS[0], {"id": "x", "answer": "1"}], r"toy: row 1 has no 'problem' text.*Fix"),
    ([ROWS[0], "What is 1 + 1?"], r"toy: row 1 is a str, not a mapping.*Fix"),
], ids=["empty dataset", "duplicate ids", "whitespace prompt", "missing column", "non-mapping row"])
def test_evaluation_bad_rows_name_row_and_fix(tiny, rows, pattern):
    from saerl_hf.evaluation import evaluate_model

    model, tokenizer = tiny
    with pytest.raises(ValueError, match=pattern):
        evaluate_model(model, tokenizer, ["toy"], datasets={"toy": rows}, max_new_tokens=2, progress=False)


@pytest.mark.parametrize("gold", [None, "", float("nan"), 7], ids=["None", "empty", "NaN", "int"])
def test_evaluation_missing_gold_scores_zero_and_is_reported(tiny, gold):
    from saerl_hf.evaluation import evaluate_model

    model, tokenizer = tiny
    results = evaluate_model(model, tokenizer, ["toy"], datasets={"toy": [ROWS[0], {**ROWS[1], "answer": gold}]},
                             max_new_tokens=2, progress=False, make_plots=False)
    items = results["items"]["toy"]
    assert items[1]["verdicts"] == [False] and items[1]["error"] == "missing gold answer: scored 0"
    assert "error" not in items[0] and results["benchmarks"]["toy"]["n_items"] == 2


def test_evaluation_truncated_results_file_is_left_intact(tiny, tmp_path):
    from saerl_hf.evaluation import evaluate_model

    model, tokenizer = tiny
    evaluate_model(model, tokenizer, ["toy"], datasets={"toy": ROWS}, max_new_tokens=2, output_dir=tmp_path,
                   progress=False, make_plots=False)
    _truncate(tmp_path / "results.json")
    before = digest(tmp_path / "results.json")
    with pytest.raises(ValueError, match=r"results\.json is not valid JSON .*left as it is\. Fix: rerun with "
                                         r"--overwrite true"):
        evaluate_model(model, tokenizer, ["toy"], datasets={"toy": ROWS}, max_new_tokens=2, output_dir=tmp_path,
                       progress=False, make_plots=False)
    assert digest(tmp_path / "results.json") == before
