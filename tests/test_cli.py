"""The command line as a new user meets it: a known error is one `error: ...` line with the fix, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from saerl_hf.errors import format_error, is_known


def _saerl_hf(args: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    """Run the real `saerl-hf` entry point (``python -m saerl_hf.cli``) offline, in ``tmp_path``."""
    inherited = {key: value for key, value in os.environ.items() if key != "SAERL_DEBUG"}
    full_env = {**inherited, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "saerl_hf.cli", *args], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=300)


def _assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, no traceback, and the last stderr line is `error: ...` with every fragment (the fix among them)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), proc.stderr[-3000:]
    assert [line.count("error: "), *[fragment in line for fragment in fragments]] == [1] + [True] * len(fragments), line
    return line


@pytest.fixture()
def malformed_jsonl(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text('{"problem": "What is 1+1?", "answer": "2"}\n{"problem": "broken\n')
    return path


def test_featurize_malformed_jsonl(tmp_path, malformed_jsonl, data_dir):
    proc = _saerl_hf(["featurize", "--dataset", str(malformed_jsonl), "--output_dir", "out"], tmp_path)
    _assert_one_error_line(proc, "problems.jsonl, line 2", "invalid JSON", "Fix or remove that line")
    assert not (tmp_path / "out").exists()


def test_curate_missing_config_file(tmp_path):
    proc = _saerl_hf(["curate", "--config", "recipes/no-such-recipe.yaml"], tmp_path)
    _assert_one_error_line(proc, "config file 'recipes/no-such-recipe.yaml' does not exist", "Fix: pass the path of a YAML recipe")
    assert "FileNotFoundError" not in proc.stderr


def test_evaluate_unknown_model(tmp_path, data_dir):
    proc = _saerl_hf(["evaluate", "--model", "no-such-model-xyz", "--benchmarks", "gsm8k", "--limit", "1",
                      "--output_dir", "eval"], tmp_path)
    _assert_one_error_line(proc, "'no-such-model-xyz'", "Fix: pass a local model dir", "alias (smollm2-135m")


def test_featurize_missing_split(tmp_path, data_dir):
    proc = _saerl_hf(["featurize", "--dataset", "gsm8k", "--split", "validation", "--output_dir", "out"], tmp_path)
    _assert_one_error_line(proc, "'gsm8k' has no split 'validation'", "Available: train, test")


def test_train_unknown_curriculum_is_one_line_with_status_2(tmp_path):
    proc = _saerl_hf(["train", "--curriculum", "foo"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "curriculum must be one of" in line and "got 'foo'" in line and "Fix" in line, line


def test_train_unknown_curriculum_error_line(tmp_path):
    proc = _saerl_hf(["train", "--curriculum", "foo"], tmp_path)
    _assert_one_error_line(proc, "curriculum must be one of", "got 'foo'", "Fix: set `curriculum:`")


@pytest.mark.parametrize("how", [["--debug"], []])
def test_debug_shows_the_traceback(tmp_path, how):
    env = {} if how else {"SAERL_DEBUG": "1"}
    proc = _saerl_hf([*how, "curate", "--config", "missing.yaml"], tmp_path, **env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: saerl-hf curate: config file 'missing.yaml'")


def test_unknown_command_and_help(tmp_path):
    proc = _saerl_hf(["no-such-command"], tmp_path)
    assert proc.returncode == 2 and "unknown command 'no-such-command'" in proc.stderr
    assert "--debug" in _saerl_hf(["--help"], tmp_path).stdout


def test_known_errors_are_those_of_loaded_modules():
    from saerl_hf.configs import ConfigError
    from saerl_hf.data import DataError

    assert is_known(ConfigError("x")) and is_known(DataError("y"))
    assert not is_known(ValueError("a bug")) and not is_known(KeyError("k"))
    assert format_error(DataError("line 1\n  line 2. Fix: this")) == "error: line 1 line 2. Fix: this"


def test_user_errors_share_the_base_and_keep_their_own():
    from saerl_hf.configs import ConfigError
    from saerl_hf.curate import CurateError
    from saerl_hf.curriculum import CurriculumError
    from saerl_hf.data import DataError
    from saerl_hf.errors import KNOWN_ERRORS, SaerlError
    from saerl_hf.features import FeaturizeError
    from saerl_hf.hub import CuratedLoadError, HubPushError
    from saerl_hf.models import ModelNotFoundError
    from saerl_hf.sparse import InvalidFeaturesError, MissingFeaturesError

    for cls in (ConfigError, CurateError, CurriculumError, DataError, FeaturizeError, CuratedLoadError,
                ModelNotFoundError, MissingFeaturesError, InvalidFeaturesError):
        assert issubclass(cls, SaerlError) and issubclass(cls, ValueError) and is_known(cls("x")), cls
    assert issubclass(HubPushError, SaerlError) and issubclass(HubPushError, RuntimeError)
    assert not issubclass(HubPushError, ValueError)  # a push failure is not a bad value
    for cls in (ConfigError, DataError, HubPushError):
        assert f"{cls.__module__}:{cls.__name__}" not in KNOWN_ERRORS  # the base says it; no by-name entry


def test_module_launch_speaks_like_the_cli(tmp_path):
    """`accelerate launch -m saerl_hf.grpo` runs the module: its errors read like `saerl-hf train`'s."""
    env = {key: value for key, value in os.environ.items() if key != "SAERL_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "saerl_hf.grpo", "--curriculum", "foo"], cwd=tmp_path,
                          env={**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    _assert_one_error_line(proc, "curriculum", "foo")
