"""The canonical loader on the real shared data: counts, gold answers, schema, bad input."""

from __future__ import annotations

import json
import logging

import pytest

from saerl_hf.data import (
    CANONICAL_COLUMNS,
    DataError,
    format_number,
    last_boxed,
    list_benchmarks,
    load_math_dataset,
    load_mixture,
)

# Row counts of the shared files (SOURCES.md counts lines; the MAWPS files lack a final newline, so
# each holds one more record than `wc -l` says). MATH train: 7500 minus the 2 rows whose solution ends
# in an empty \boxed{} (number_theory 7115 and 7117), skipped with a warning.
EXPECTED_ROWS = {
    ("gsm8k", "train"): 7473, ("gsm8k", "test"): 1319,
    ("math", "train"): 7498, ("math", "test"): 5000,
    ("math500", "test"): 500, ("omni_math", "test"): 2821,
    ("aime24", "test"): 30, ("amc23", "test"): 40, ("minerva_math", "test"): 272,
    ("olympiadbench", "test"): 675, ("mawps", "test"): 2065, ("svamp", "test"): 1000, ("asdiv", "test"): 2215,
}


@pytest.mark.parametrize("name,split", sorted(EXPECTED_ROWS))
def test_every_shared_set_loads_in_the_canonical_schema(data_dir, name, split):
    ds = load_math_dataset(name, split=split, data_dir=data_dir)
    assert len(ds) == EXPECTED_ROWS[(name, split)]
    assert tuple(ds.column_names) == CANONICAL_COLUMNS
    assert all(isinstance(p, str) and p.strip() for p in ds["problem"])
    assert all(isinstance(a, str) and a.strip() for a in ds["answer"])
    assert len(set(ds["id"])) == len(ds), "ids must be unique"
    assert set(ds["source"]) == {name}


def test_gold_answer_spot_checks(data_dir):
    gsm = load_math_dataset("gsm8k", "train", data_dir=data_dir)
    assert gsm[0]["answer"] == "72"
    # thousands separators are removed from GSM8K golds
    big = [a for a in gsm["answer"] if len(a) > 4 and a.lstrip("-").isdigit()]
    assert big and all("," not in a for a in gsm["answer"])
    math_train = load_math_dataset("math", "train", data_dir=data_dir)
    assert math_train[0]["answer"] == "0" and math_train[0]["level"] == 5.0
    assert set(math_train["level"]) == {1.0, 2.0, 3.0, 4.0, 5.0, None}  # "Level ?" -> None
    m500 = load_math_dataset("math500", data_dir=data_dir)
    assert m500[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)" and m500[0]["level"] == 2.0
    assert m500[0]["subject"] == "Precalculus"
    assert load_math_dataset("mawps", data_dir=data_dir)[0]["answer"] == "14"  # 14.0 -> "14"
    assert load_math_dataset("svamp", data_dir=data_dir)[0]["answer"] == "145"
    asdiv = load_math_dataset("asdiv", data_dir=data_dir)
    assert asdiv[0]["answer"] == "9" and asdiv[0]["problem"].endswith("How many apples are in the basket?")
    omni = load_math_dataset("omni_math", data_dir=data_dir)
    assert omni[0]["level"] == 8.0 and omni[0]["answer"] == "115440"
    assert load_math_dataset("olympiadbench", data_dir=data_dir)[0]["answer"] == "2"
    assert load_math_dataset("minerva_math", data_dir=data_dir)[0]["answer"] == "1.6"
    assert load_math_dataset("aime24", data_dir=data_dir)[0]["answer"] == "204"


def test_mawps_subsets_and_mixture(data_dir):
    single = load_math_dataset("mawps_singleop", data_dir=data_dir)
    assert len(single) == 562 and set(single["subject"]) == {"singleop"}
    mix = load_mixture(["mawps_singleop", "gsm8k", "svamp"], split="train", data_dir=data_dir, limit_per_source=50)
    assert len(mix) == 150 and set(mix["source"]) == {"mawps_singleop", "gsm8k", "svamp"}
    again = load_mixture(["mawps_singleop", "gsm8k", "svamp"], split="train", data_dir=data_dir, limit_per_source=50)
    assert mix["id"] == again["id"], "seeded slices are deterministic"


def test_math_rows_without_gold_are_skipped_and_reported(data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="saerl_hf.data"):
        load_math_dataset("math", "train", data_dir=data_dir)
    assert "skipped 2 row(s)" in caplog.text and "number_theory/7115.json" in caplog.text


def test_helpers():
    assert last_boxed(r"so $\boxed{\frac{1}{2}}$ and then \boxed{3}") == "3"
    assert last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert last_boxed("no box") is None
    assert format_number(14.0) == "14" and format_number(0.5) == "0.5" and format_number("7.0") == "7"
    assert format_number("x+1") == "x+1"


def test_local_file_with_column_mapping(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"What is {i}+1?", "final": i + 1, "uid": f"u{i}"}) for i in range(3)))
    ds = load_math_dataset(str(path), columns={"problem": "q", "answer": "final", "id": "uid"})
    assert ds["answer"] == ["1", "2", "3"] and ds["id"] == ["u0", "u1", "u2"]


def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError) as err:
        load_math_dataset("gsm9k")
    assert "gsm8k" in str(err.value) and "math500" in str(err.value)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2"):
        load_math_dataset(str(path))


def test_missing_required_column_is_named(tmp_path):
    path = tmp_path / "noanswer.jsonl"
    path.write_text('{"problem": "What is 1+1?"}\n')
    with pytest.raises(DataError, match=r"row 0: missing required field 'answer'"):
        load_math_dataset(str(path))


def test_empty_problem_names_row_and_field(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text('{"problem": "ok?", "answer": "1"}\n{"problem": "   ", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"row 1: field 'problem' is empty"):
        load_math_dataset(str(path))


def test_non_utf8_file_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"problem": "caf\u00e9?", "answer": "1"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_math_dataset(str(path))


def test_missing_data_dir_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="SAERL_DATA_DIR"):
        load_math_dataset("gsm8k", "train", data_dir=tmp_path / "nope")


def test_local_only_set_without_files_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="SAERL_DATA_DIR"):
        load_math_dataset("mawps_singleop", data_dir=tmp_path)


def test_list_benchmarks_has_every_family():
    names = set(list_benchmarks())
    assert {"gsm8k", "math", "math500", "omni_math", "aime24", "amc23", "minerva_math", "olympiadbench",
            "mawps", "svamp", "asdiv"} <= names
