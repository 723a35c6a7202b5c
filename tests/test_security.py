"""Security: no pickle anywhere, safe defaults, the access token never written, no writes outside the output dir.

(a) A static scan of the package, the benchmarks and the recipes (with a self-test proving the scanner
    flags what it claims to), plus a runtime check that saved probes are safetensors + JSON only and that a
    planted pickle next to them is never opened.
(b) A canary token set as HF_TOKEN and passed as ``token=``: a push to the local Hub emulator, a failing push,
    a missing revision, card rendering, featurize (CLI) with captured logs and an error path; the canary must
    appear in no file, card, log line, printed output, commit or exception message.
(c) Paths from Hub revisions and from names used for output files cannot reach outside the output dir.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import pickle
import re
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from saerl_hf.sparse import write_provenance
from tests.hub_emulator import Entry, git_blob_sha1

ROOT = Path(__file__).resolve().parents[1]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal"}


# ----------------------------------------------------------------------------- (a) static scan


def scan_python(source: str, name: str) -> list[str]:
    """Violations in one Python source: pickle-family imports or calls, torch.load without weights_only=True,
    np.load(allow_pickle=True), yaml.load, eval/exec, and trust_remote_code anywhere but False."""
    found = []
    tree = ast.parse(source, filename=name)
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in PICKLE_MODULES:
                found.append(f"{where}: from {node.module} import ...")
            if module == "torch" and any(a.name == "load" for a in node.names):
                found.append(f"{where}: from torch import load")
            if module == "pandas" and any(a.name == "read_pickle" for a in node.names):
                found.append(f"{where}: from pandas import read_pickle")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in PICKLE_MODULES:
            found.append(f"{where}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in PICKLE_MODULES:
            found.append(f"{where}: the string {node.value!r} (dynamic import?)")
        elif isinstance(node, ast.Call):
            func = node.func
            kwargs = {k.arg: k.value for k in node.keywords if k.arg}
            dotted = ast.unparse(func)
            if dotted.endswith("torch.load"):
                ok = isinstance(kwargs.get("weights_only"), ast.Constant) and kwargs["weights_only"].value is True
                if not ok:
                    found.append(f"{where}: {dotted}(...) without weights_only=True")
            if dotted.endswith(("read_pickle", "np.load", "numpy.load")) and (
                    "read_pickle" in dotted or _is_true(kwargs.get("allow_pickle"))):
                found.append(f"{where}: {dotted}(...) can unpickle")
            if dotted in ("yaml.load", "yaml.unsafe_load", "eval", "exec"):
                found.append(f"{where}: {dotted}(...)")
            if "trust_remote_code" in kwargs and not _is_false_or_passthrough(kwargs["trust_remote_code"]):
                found.append(f"{where}: trust_remote_code={ast.unparse(kwargs['trust_remote_code'])}")
            if dotted == "getattr" and len(node.args) == 3 and _const(node.args[1]) == "trust_remote_code" and (
                    not _is_false(node.args[2])):
                found.append(f"{where}: getattr(..., 'trust_remote_code', {ast.unparse(node.args[2])})")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if _const(key) == "trust_remote_code" and not _is_false_or_passthrough(value):
                    found.append(f"{where}: {{'trust_remote_code': {ast.unparse(value)}}}")
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and (
                node.target.id == "trust_remote_code") and node.value is not None:
            default = node.value
            if isinstance(default, ast.Call) and ast.unparse(default.func) == "field":
                default = {k.arg: k.value for k in default.keywords}.get("default")
            if not _is_false(default):
                found.append(f"{where}: dataclass field trust_remote_code defaults to "
                             f"{ast.unparse(default) if default is not None else 'nothing'}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                if arg.arg == "trust_remote_code" and not _is_false(default):
                    found.append(f"{where}: def {node.name}(trust_remote_code={ast.unparse(default)})")
    return found


def _const(node):
    return node.value if isinstance(node, ast.Constant) else None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_false(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _is_false_or_passthrough(node) -> bool:
    """``False``, or a value passed through from a name/attribute/call (the caller's own False-default field)."""
    if isinstance(node, ast.Constant):
        return node.value is False
    return isinstance(node, (ast.Name, ast.Attribute, ast.Call))


def scan_yaml(text: str, name: str) -> list[str]:
    return [f"{name}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
            if re.match(r"\s*trust_remote_code\s*:\s*(true|yes|on|1)\s*(#.*)?$", line, re.IGNORECASE)]


def scanned_files() -> tuple[list[Path], list[Path]]:
    python = sorted({*ROOT.glob("saerl_hf/**/*.py"), *ROOT.glob("benchmarks/**/*.py"), *ROOT.glob("recipes/**/*.py")})
    yaml_files = sorted({*ROOT.glob("recipes/**/*.yaml"), *ROOT.glob("recipes/**/*.yml")})
    return python, yaml_files


def test_scanner_flags_every_pattern_it_claims_to():
    bad = '''
import pickle
import joblib as jl
from dill import loads
import torch
from dataclasses import dataclass, field
x = pickle.loads(b"")
torch.load("w.pt")
torch.load("w.pt", weights_only=False)
np.load("a.npy", allow_pickle=True)
m = importlib.import_module("cloudpickle")
AutoModel.from_pretrained("x", trust_remote_code=True)
y = getattr(args, "trust_remote_code", True)
kwargs = {"revision": "main", "trust_remote_code": True}
yaml.load(open("r.yaml"))
@dataclass
class C:
    trust_remote_code: bool = field(default=True)
    other_flag: bool = True
def f(trust_remote_code: bool = True): ...
def g(*, trust_remote_code=None): ...
'''
    found = "\n".join(scan_python(bad, "bad.py"))
    for needle in ("import pickle", "import joblib", "from dill", "pickle.loads", "torch.load(...) without", "np.load",
                   "'cloudpickle'", "trust_remote_code=True", "getattr(..., 'trust_remote_code', True)", "yaml.load",
                   "{'trust_remote_code': True}",
                   "field trust_remote_code defaults to True", "def f(trust_remote_code=True)",
                   "def g(trust_remote_code=None)"):
        assert needle in found, needle
    assert len(re.findall(r"torch\.load\(\.\.\.\) without", found)) == 2
    good = '''
import torch
from safetensors.torch import load_file
torch.load("w.pt", weights_only=True)
AutoModel.from_pretrained(p, trust_remote_code=config.trust_remote_code)
AutoModel.from_pretrained(p, trust_remote_code=False)
kwargs = {"trust_remote_code": _trust_remote_code(model_args)}
def h(trust_remote_code: bool = False): ...
'''
    assert scan_python(good, "good.py") == []
    assert scan_yaml("model: x\ntrust_remote_code: true  # no\n", "r.yaml") and not scan_yaml("trust_remote_code: false",
                                                                                                "r.yaml")


def test_no_pickle_no_unsafe_load_no_remote_code_by_default():
    python, yaml_files = scanned_files()
    assert len([p for p in python if p.parts[-2] == "saerl_hf" or "saerl_hf" in p.parts]) >= 20
    assert yaml_files, "the recipes were not found"
    violations = [v for p in python for v in scan_python(p.read_text(), str(p.relative_to(ROOT)))]
    violations += [v for p in yaml_files for v in scan_yaml(p.read_text(), str(p.relative_to(ROOT)))]
    assert violations == [], "\n".join(violations)
    # the literal form the issue names, whatever the syntax around it
    literal = [f"{p.relative_to(ROOT)}" for p in ROOT.glob("saerl_hf/**/*.py")
               if re.search(r"trust_remote_code\s*=\s*True", p.read_text())]
    assert literal == []


def test_every_config_dataclass_defaults_trust_remote_code_to_false():
    import dataclasses

    from saerl_hf.evaluation import EvalConfig
    from saerl_hf.features import FeaturizeConfig
    from saerl_hf.sae import TrainSAEConfig

    for config in (EvalConfig, FeaturizeConfig, TrainSAEConfig):
        (flag,) = [f for f in dataclasses.fields(config) if f.name == "trust_remote_code"]
        assert flag.default is False, config.__name__


# ----------------------------------------------------------------------------- (a) runtime: probe files


D_SAE = 64
PROV = {"model": "reader", "layer": 2, "hook": "model.layers.2", "sae": "s", "sae_hash": "h0", "d_sae": D_SAE,
        "d_in": 32, "pooling": "mean", "top_k": 8}


def featurized(n=80, seed=0):
    rng = np.random.default_rng(seed)
    idx = [np.sort(rng.choice(D_SAE, 8, replace=False)).tolist() for _ in range(n)]
    val = [rng.exponential(1.0, 8).tolist() for _ in range(n)]
    columns = {"problem": [f"p{i}" for i in range(n)], "sae_idx": idx, "sae_val": val,
               "level": [float(sum(v)) for v in val], "is_clean": [i % 2 for i in range(n)]}
    return write_provenance(Dataset.from_dict(columns), dict(PROV))


class _Planted:
    """Unpickling this creates ``marker`` (stands for arbitrary code run by a malicious pickle)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_probe_dirs_hold_only_safetensors_and_json_and_never_unpickle(tmp_path):
    from saerl_hf.signals import (
        ClusterConfig,
        ClusterModel,
        DifficultyConfig,
        DifficultyProbe,
        QualityConfig,
        QualityProbe,
    )

    data = featurized()
    models = {"difficulty": DifficultyProbe(DifficultyConfig(min_labels=20, cv=3, n_alphas=4)).fit(data),
              "quality": QualityProbe(QualityConfig(min_per_class=10, cv=3, Cs=3)).fit(data),
              "clusters": ClusterModel(ClusterConfig(n_clusters=3, n_init=1)).fit(data)}
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps(_Planted(str(marker)))
    for name, model in models.items():
        directory = model.save(tmp_path / name)
        files = sorted(p.name for p in directory.iterdir())
        assert {Path(f).suffix for f in files} == {".safetensors", ".json"}, files
        for path in directory.iterdir():
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"
        for planted in ("model.pkl", "pytorch_model.bin", "probe.pt", "model.joblib"):
            (directory / planted).write_bytes(payload)
        loaded = type(model).load(directory)
        np.testing.assert_array_equal(loaded.predict(data), model.predict(data))
    assert not marker.exists(), "a planted pickle was executed"
    pickle.loads(payload)  # the payload is live: loading it does create the marker
    assert marker.exists()


# ----------------------------------------------------------------------------- (b) canary token

HUB_SCRIPT = r"""
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
from saerl_hf.hub import CuratedLoadError, HubPushError, load_curated, push_curated
token, curated = sys.argv[1], sys.argv[2]
command = f"saerl-hf push {curated} --repo-id saerl/canary-sec --token {token} --hub-token={token}"
out = {}
try:  # the server fails the first commits: an error path that carries the server's message
    push_curated(curated, "saerl/canary-sec", "v0", token=token, max_retries=1, retry_base_wait=0.01, command=command)
    out["failed_push"] = "no error"
except HubPushError as err:
    out["failed_push"] = str(err)
result = push_curated(curated, "saerl/canary-sec", "v1", token=token, retry_base_wait=0.01, command=command)
out["push"] = repr(result)
loaded = load_curated("saerl/canary-sec", "v1", token=token)
out["load"] = json.dumps(loaded.push_record) + json.dumps(loaded.summary) + json.dumps(loaded.provenance)
try:
    load_curated("saerl/canary-sec", "no-such-branch", token=token)
except CuratedLoadError as err:
    out["missing_revision"] = str(err)
print(out)
print("RESULT " + json.dumps(out))
"""


def _files_containing(needle: bytes, *roots: Path) -> list[str]:
    return [str(p) for root in roots for p in Path(root).rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_canary_token_never_leaves_the_authorization_header(hub, hub_run, hub_env, curated_dirs, tmp_path):
    import shutil

    canary = "hf_CANARY" + uuid.uuid4().hex
    needle = canary.encode()
    curated = tmp_path / "curated"
    shutil.copytree(curated_dirs[1], curated)
    hub.reset_log()
    hub.faults.fail("commit", 500, times=2)
    proc = hub_run(canary, str(curated), code=HUB_SCRIPT, env={**hub_env, "HF_TOKEN": canary})
    got = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert "push step 'push rows' failed" in got["failed_push"] and "500" in got["failed_push"]
    assert got["missing_revision"].startswith("Revision 'no-such-branch' does not exist")
    auth = [r.headers.get("authorization") for r in hub.received()]
    assert auth.count(f"Bearer {canary}") >= 10  # the canary really was the token in use

    assert canary not in proc.stdout and canary not in proc.stderr  # printed results, errors, DEBUG logs
    assert "REDACTED" in got["load"]  # the push command was recorded, masked
    assert _files_containing(needle, tmp_path) == []  # HF_HOME caches, downloads, the curated dir
    for request in hub.received():
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        assert canary not in json.dumps(headers) and needle not in request.body, request.path
    assert not [k for k, blob in hub.state.blobs.items() if needle in blob]  # rows, probes, card, push record
    repo = hub.state.repos[("dataset", "saerl/canary-sec")]
    assert not [c.sha for c in repo.commits.values() if canary in c.title + c.message]


def test_canary_token_not_in_cards_logs_or_errors_in_process(monkeypatch, caplog, capsys, tmp_path, tiny_model_dir,
                                                            tiny_sae_dir, data_dir):
    from trl import GRPOConfig, ModelConfig

    from saerl_hf import hub
    from saerl_hf.data import load_math_dataset
    from saerl_hf.features import cli_main as featurize_cli
    from saerl_hf.grpo import GRPOScriptArguments, write_model_card

    canary = "hf_CANARY" + uuid.uuid4().hex
    monkeypatch.setenv("HF_TOKEN", canary)
    monkeypatch.setattr(sys, "argv", ["saerl-hf", "train", "--hub_token", canary, f"--token={canary}",
                                      "--hub-token", canary])
    caplog.set_level(logging.DEBUG)

    # cards: the dataset card (with the recorded push command) and the GRPO model card
    command = hub.redacted_command(["saerl-hf", "push", "out", "--token", canary, f"--hub_token={canary}"])
    record = {"format": hub.PUSH_FORMAT, "dataset_sha256": "0" * 64, "splits": {"train": 1},
              "dataset_description": "", "artefacts": {}, "push_command": command,
              "versions": {"saerl-hf": "test"}}
    card = hub.render_card("", "me/data", "v1", {"sae": "s"}, {"command": command}, record, [("id", "string")])
    assert "--token REDACTED" in card and canary not in card
    out_dir = tmp_path / "model"
    out_dir.mkdir()
    training_args = GRPOConfig(output_dir=str(out_dir), use_cpu=True, bf16=False, report_to="none")
    path = write_model_card(out_dir, GRPOScriptArguments(), training_args, ModelConfig(model_name_or_path="m"),
                            {"train_loss": 0.1}, [], 1)
    assert "--hub_token" in path.read_text() and canary not in path.read_text()

    # featurize through its CLI, every logger at DEBUG, stdout/stderr captured
    load_math_dataset("gsm8k", "test", limit=4).save_to_disk(str(tmp_path / "in"))
    featurize_cli(["--dataset", str(tmp_path / "in"), "--output_dir", str(tmp_path / "featurized"), "--model",
                   tiny_model_dir, "--sae", tiny_sae_dir, "--top_k", "8", "--cache_dir", str(tmp_path / "cache")])

    # error paths: a curated dir whose summary holds the token; a retried step whose error quotes the token
    bad = tmp_path / "bad"
    for name in ("dataset", "probes"):
        (bad / name).mkdir(parents=True)
    (bad / "provenance.json").write_text("{}")
    (bad / "summary.json").write_text(json.dumps({"command": f"curate --token {canary}"}))
    messages = []
    with pytest.raises(hub.HubPushError) as err:
        hub._collect_artefacts(bad, canary)
    messages.append(str(err.value))

    def leaky():
        raise RuntimeError(f"401 Unauthorized for token {canary} at https://hub/api")

    with pytest.raises(hub.HubPushError) as err:
        hub._retry("create repo", leaky, hub.PushConfig(max_retries=0), canary, bad)
    messages.append(str(err.value))
    assert "REDACTED" in messages[1]

    captured = capsys.readouterr()
    assert '"rows": 4' in captured.out  # featurize really ran and printed its summary
    for text in (caplog.text, captured.out, captured.err, *messages):
        assert canary not in text
    assert _files_containing(canary.encode(), tmp_path / "featurized", out_dir, tmp_path / "cache") == []


# ----------------------------------------------------------------------------- (c) paths


UNSAFE_NAMES = ["saerl/../../escape.json", "saerl/probes/../../../../../escape.json", "/escape.json",
                "saerl\\..\\..\\escape.json", "saerl/./probes/x.json", "saerl//x.json"]

TRAVERSAL_SCRIPT = r"""
import json, sys
from saerl_hf.hub import load_curated
from saerl_hf.grpo import load_train_dataset
from saerl_hf.sae import load_sae
out = {}
for repo in sys.argv[1:]:
    for name, fn in (("load", lambda: load_curated(repo, revision="main")), ("grpo", lambda: load_train_dataset(repo))):
        try:
            fn()
            out[f"{repo} {name}"] = "no error"
        except Exception as err:
            out[f"{repo} {name}"] = f"{type(err).__name__}: {err}"
try:
    load_sae(sys.argv[1] + ":../../..")
except Exception as err:
    out["sae subfolder"] = f"{type(err).__name__}: {err}"
try:
    load_sae(sys.argv[1])
except Exception as err:
    out["sae listing"] = f"{type(err).__name__}: {err}"
print("RESULT " + json.dumps(out))
"""


def _publish_unsafe(hub, repo_id: str, name: str, repo_type: str = "dataset") -> None:
    """A revision whose file list holds ``name`` next to a plausible push record (injected into the emulator:
    huggingface_hub's own commit API refuses such names, a hostile server does not)."""
    state = hub.state
    with state.lock:
        repo = state.create_repo(repo_type, repo_id, False)
        head = repo.commits[repo.branches["main"]]
        files = dict(head.files)
        for path, data in ((name, b'{"owned": true}'), ("saerl/push.json", b'{"dataset_sha256": "x"}')):
            state.blobs[git_blob_sha1(data)] = data
            files[path] = Entry(len(data), git_blob_sha1(data), git_blob_sha1(data))
        commit = state.new_commit(repo, [head.sha], "hostile", "", files)
        repo.branches["main"] = commit.sha


def test_hub_file_names_that_escape_the_download_dir_are_refused(hub, hub_run, tmp_path):
    repos = []
    for i, name in enumerate(UNSAFE_NAMES):
        repo_id = f"saerl/unsafe-{uuid.uuid4().hex[:8]}-{i}"
        _publish_unsafe(hub, repo_id, name)
        _publish_unsafe(hub, repo_id, name, repo_type="model")  # the same name in an SAE (model) repo
        repos.append(repo_id)
    hub.reset_log()
    proc = hub_run(*repos, code=TRAVERSAL_SCRIPT)
    got = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    for repo_id, name in zip(repos, UNSAFE_NAMES):
        for step in ("load", "grpo"):
            message = got[f"{repo_id} {step}"]
            assert message.startswith(f"CuratedLoadError: {repo_id}@main lists the file {name!r}"), message
            assert "Nothing was downloaded. Fix" in message
    assert got["sae subfolder"].startswith("SAELoadError: SAE subfolder '../../..'") and "Fix" in got["sae subfolder"]
    assert got["sae listing"].startswith(f"SAELoadError: SAE repo '{repos[0]}' lists the file") and (
        "Fix" in got["sae listing"])
    assert hub.received("resolve") == []  # not one file was fetched
    assert not [p for p in tmp_path.rglob("*escape*")] and not (Path(os.sep) / "escape.json").exists()


def test_probe_file_linked_from_outside_is_not_published(curated_dirs, tmp_path):
    import shutil

    from saerl_hf.hub import HubPushError, push_curated

    secret = tmp_path / "elsewhere" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("PRIVATE KEY")
    curated = tmp_path / "curated"
    shutil.copytree(curated_dirs[1], curated)
    (curated / "probes" / "quality" / "extra.json").symlink_to(secret)
    with pytest.raises(HubPushError, match=r"extra\.json links to .*id_rsa, outside the probes dir.*Nothing was "
                                           r"pushed\. Fix: copy the file"):
        push_curated(curated, "saerl/never", token="hf_unusedToken000000", max_retries=0)
    assert secret.read_text() == "PRIVATE KEY"


def test_benchmark_names_that_look_like_paths_keep_figures_inside_the_output_dir(tiny, tmp_path):
    from saerl_hf.evaluation import evaluate_model, safe_file_stem

    model, tokenizer = tiny
    rows = [{"id": "a", "problem": "What is $1+1$?", "answer": "2", "source": "math500", "level": 1.0},
            {"id": "b", "problem": "What is $2+2$?", "answer": "4", "source": "math500", "level": 2.0}]
    outside = tmp_path / "outside"
    names = ["../escape", str(outside / "abs.jsonl"), "org/name", "..", ".hidden"]
    out = tmp_path / "run" / "eval"
    results = evaluate_model(model, tokenizer, names, datasets={n: rows for n in names}, max_new_tokens=2,
                             output_dir=out, progress=False)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written and all(w.startswith("run/eval/") and w.count("/") == 2 for w in written), written
    assert len([w for w in written if w.endswith("_by_level.png")]) == len(names)
    assert not outside.exists() and sorted(results["figures"]) == sorted(p.split("/")[-1] for p in written
                                                                         if p.endswith(".png"))
    for name in names:
        stem = safe_file_stem(name)
        assert "/" not in stem and "\\" not in stem and not stem.startswith(".")
