"""Push curated datasets to Hub revisions and load them back, with the real huggingface_hub and datasets
clients talking HTTP to the local emulator (tests/hub_emulator.py). Client code runs in subprocesses because
the clients read HF_ENDPOINT / HF_HUB_DISABLE_XET at import time (see tests/hub_plugin.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.hub_plugin import REPO_ROOT, tree_digest

# Loads each (repo, revision, local dir) with load_curated and compares it with the local curated dir.
CHECK = r"""
import hashlib, json, sys
from datasets import load_from_disk
from huggingface_hub import DatasetCard, hf_hub_download
from saerl_hf.hub import dataset_content_hash, load_curated
from saerl_hf.sparse import read_provenance

def bare(table):
    return table.replace_schema_metadata(None).combine_chunks()

out = {}
for repo, rev, local in json.loads(sys.argv[1]):
    got, ref = load_curated(repo, revision=rev), load_from_disk(local + "/dataset")
    card = DatasetCard.load(hf_hub_download(repo, "README.md", repo_type="dataset", revision=rev))
    out[rev] = {
        "rows": len(got.dataset), "sha": got.commit_sha,
        "hash": dataset_content_hash(got.dataset), "local_hash": dataset_content_hash(ref),
        "lists_equal": got.dataset.to_list() == ref.to_list(),
        "arrow_equal": bare(got.dataset.data.table).equals(bare(ref.data.table)),
        "features_equal": got.dataset.features == ref.features,
        "provenance_equal": read_provenance(got.dataset) == read_provenance(ref) != {},
        "provenance": got.provenance, "summary": got.summary,
        "probes": {p.relative_to(got.probes_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in got.probes_dir.rglob("*") if p.is_file()},
        "card_data": card.data.to_dict(), "card_text": card.text,
    }
print("RESULT " + json.dumps(out))
"""


def _result(proc) -> dict:
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(("RESULT ", "{"))][-1]
    return json.loads(line.removeprefix("RESULT "))


def _push(hub_run, curated: Path, repo: str, revision: str, *extra: str, check: bool = True):
    proc = hub_run("push", str(curated), "--repo-id", repo, "--hub_revision", revision, "--retry-base-wait", "0.01",
                   *extra, check=check)
    return (_result(proc) if proc.returncode == 0 else None), proc


def _check(hub_run, *items) -> dict:
    return _result(hub_run(json.dumps([[r, rev, str(d)] for r, rev, d in items]), code=CHECK))


def _branch_titles(hub, repo: str, branch: str) -> list[str]:
    state = hub.state.repos[("dataset", repo)]
    sha, titles = state.branches[branch], []
    while sha:
        commit = state.commits[sha]
        titles.append(commit.title)
        sha = commit.parents[0] if commit.parents else None
    return titles


def test_two_revisions_round_trip_rows_card_probes(hub, hub_run, curated_dirs):
    """Each revision loads back byte-identical to its local dir, also by commit sha; card and probes survive."""
    v1, v2 = curated_dirs
    before = {d: tree_digest(d) for d in curated_dirs}
    r1, _ = _push(hub_run, v1, "saerl/round-trip", "v1")
    hub_run(str(v2), code="import sys; from saerl_hf.hub import push_curated; "
                          "print(push_curated(sys.argv[1], 'saerl/round-trip', 'v2', retry_base_wait=0.01))")
    got = _check(hub_run, ("saerl/round-trip", "v1", v1), ("saerl/round-trip", "v2", v2),
                 ("saerl/round-trip", r1["commit"], v1))
    assert (got["v1"]["rows"], got["v2"]["rows"]) == (50, 30)
    for rev in ("v1", "v2", r1["commit"]):
        assert got[rev]["hash"] == got[rev]["local_hash"], rev
        assert got[rev]["lists_equal"] and got[rev]["arrow_equal"] and got[rev]["features_equal"], rev
        assert got[rev]["provenance_equal"], rev
    assert got["v1"]["hash"] != got["v2"]["hash"] and got[r1["commit"]]["sha"] == r1["commit"]
    assert got["v1"]["provenance"] == json.loads((v1 / "provenance.json").read_text())
    assert got["v2"]["summary"] == json.loads((v2 / "summary.json").read_text())
    assert got["v1"]["probes"] == tree_digest(v1 / "probes") and got["v2"]["probes"] == tree_digest(v2 / "probes")

    data, text = got["v1"]["card_data"], got["v1"]["card_text"]
    assert data["configs"][0]["data_files"][0]["path"] == "data/train-*"  # push_to_hub's YAML kept
    assert data["dataset_info"]["splits"][0]["num_examples"] == 50
    assert data["license"] == "mit" and data["source_datasets"] == ["openai/gsm8k"] and "saerl" in data["tags"]
    for needle in ("test-sae-v0", "blocks.12.hook_resid_post", "| curriculum_mixing | 0.25 |", "| prompts_per_batch | 8 |",
                   r1["dataset_sha256"], "saerl-hf curate --config recipes/test.yaml --seed 0", "`curriculum_rank`",
                   'revision="v1"', "| openai/gsm8k | test | 50 |  | MIT |", "huggingface_hub 2.4"):
        assert needle in text, needle
    assert "test-sae-v1" in got["v2"]["card_text"] and got["v2"]["card_data"]["dataset_info"]["splits"][0][
        "num_examples"] == 30

    repo = hub.state.repos[("dataset", "saerl/round-trip")]
    assert sorted(repo.branches) == ["main", "v1", "v2"]
    assert _branch_titles(hub, "saerl/round-trip", "main") == ["initial commit"]  # branches came from main
    assert {d: tree_digest(d) for d in curated_dirs} == before


def test_rerun_of_a_finished_push_commits_nothing(hub, hub_run, curated_dirs):
    """Same dir, same branch: no commit, no LFS upload, same head."""
    first, _ = _push(hub_run, curated_dirs[0], "saerl/rerun", "v1")
    commits = len(hub.received("commit", "POST"))
    hub.reset_log()
    again, _ = _push(hub_run, curated_dirs[0], "saerl/rerun", "v1")
    assert (again["dataset_pushed"], again["artefacts_pushed"]) == (False, False)
    assert again["commit"] == first["commit"] and commits == 2
    assert hub.received("commit", "POST") == [] and hub.received("lfs-upload") == []


def test_push_failing_midway_keeps_local_copy_and_rerun_completes(hub, hub_run, curated_dirs, tmp_path):
    """500s on the second commit: the push stops after bounded retries; the rerun skips the rows."""
    v1 = curated_dirs[0]
    before = tree_digest(v1)
    hub.faults.fail("commit", 500, times=-1, after=1)
    res, proc = _push(hub_run, v1, "saerl/midway", "v1", "--max-retries", "1", check=False)
    assert res is None and proc.returncode == 1
    assert "push step 'push card and saerl/' failed after 2 attempt(s)" in proc.stderr
    assert "is unchanged" in proc.stderr and "rerun the same command" in proc.stderr
    assert [r.status for r in hub.received("commit", "POST")] == [200, 500, 500]
    assert tree_digest(v1) == before
    assert _branch_titles(hub, "saerl/midway", "v1")[0].startswith("saerl-hf: curated rows")

    half = hub_run("saerl/midway", code="import sys; from saerl_hf.hub import load_curated; "
                                        "load_curated(sys.argv[1], revision='v1')", check=False)
    assert half.returncode != 0 and "has no saerl/push.json" in half.stderr and "rerun the push" in half.stderr

    hub.faults.clear()
    res, _ = _push(hub_run, v1, "saerl/midway", "v1")
    assert (res["dataset_pushed"], res["artefacts_pushed"]) == (False, True)
    titles = _branch_titles(hub, "saerl/midway", "v1")
    assert sum(t.startswith("saerl-hf: curated rows") for t in titles) == 1  # rows pushed once
    got = _check(hub_run, ("saerl/midway", "v1", v1))["v1"]
    assert got["hash"] == got["local_hash"] and got["arrow_equal"]
    assert tree_digest(v1) == before


def test_push_killed_midway_resumes_without_repushing(hub, hub_run, hub_env, curated_dirs):
    """kill -9 while the server holds the card commit; the rerun completes and skips the rows."""
    v2 = curated_dirs[1]
    before = tree_digest(v2)
    released = hub.faults.hold("commit", after=1)
    cmd = [sys.executable, "-m", "saerl_hf.cli", "push", str(v2), "--repo-id", "saerl/killed", "--hub_revision", "v1"]
    proc = subprocess.Popen(cmd, env=hub_env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert hub.faults.held.wait(timeout=120), "the push never reached its second commit"
        proc.kill()
        proc.wait(timeout=60)
    finally:
        released.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -9 and tree_digest(v2) == before
    res, _ = _push(hub_run, v2, "saerl/killed", "v1")
    assert (res["dataset_pushed"], res["artefacts_pushed"]) == (False, True)
    titles = _branch_titles(hub, "saerl/killed", "v1")
    assert sum(t.startswith("saerl-hf: curated rows") for t in titles) == 1 and len(titles) == 3
    assert tree_digest(v2) == before


def test_retries_are_bounded_with_doubling_backoff(hub, hub_run, curated_dirs):
    """An outage (503 everywhere) gives up after max_retries + 1 attempts; transient 500s are ridden out;
    a permanent 403 is not retried."""
    hub.stop()
    res, proc = _push(hub_run, curated_dirs[1], "saerl/retries", "v1", "--max-retries", "3", check=False)
    assert res is None and proc.returncode == 1
    assert "push step 'create repo' failed after 4 attempt(s)" in proc.stderr
    assert len(hub.received("create")) == 4
    waits = [float(w) for w in re.findall(r"retrying in ([0-9.e-]+)s", proc.stderr)]
    assert waits == [0.01, 0.02, 0.04]

    hub.resume()
    hub.faults.fail("branch", 500, times=2)
    res, proc = _push(hub_run, curated_dirs[1], "saerl/retries", "v1", "--max-retries", "2")
    assert res["dataset_pushed"] and res["artefacts_pushed"]
    assert [r.status for r in hub.received("branch", "POST")][:3] == [500, 500, 200]

    hub.faults.clear()
    hub.faults.fail("create", 403, times=-1)
    hub.reset_log()
    res, proc = _push(hub_run, curated_dirs[1], "saerl/forbidden", "v1", "--max-retries", "3", check=False)
    assert proc.returncode == 1 and "failed after a permanent error" in proc.stderr
    assert len(hub.received("create")) == 1


def test_a_silent_server_times_out_and_the_push_retries(hub, hub_run, curated_dirs):
    """The server takes the card commit and never answers: the bounded request timeout turns that into a
    retried timeout instead of a push that hangs forever, and the push completes."""
    v1 = curated_dirs[0]
    before = tree_digest(v1)
    released = hub.faults.hold("commit", after=1)
    try:
        res, proc = _push(hub_run, v1, "saerl/silent", "v1", "--request-timeout", "2")
    finally:
        released.set()
    assert re.search(r"push step 'push card and saerl/': attempt 1/5 failed \(\w*Timeout", proc.stderr)
    assert res["dataset_pushed"] and res["artefacts_pushed"]
    titles = _branch_titles(hub, "saerl/silent", "v1")
    assert titles[0].startswith("saerl-hf: card") and sum(t.startswith("saerl-hf: curated rows") for t in titles) == 1
    assert tree_digest(v1) == before


def test_canary_token_is_never_written(hub, hub_run, hub_env, curated_dirs, tmp_path):
    """The token reaches the server only in Authorization headers: not in files, logs, errors, commits."""
    canary = "hf_CANARY" + uuid.uuid4().hex
    env = {**hub_env, "HF_TOKEN": canary}
    hub.reset_log()
    hub.faults.fail("commit", 500, times=-1, after=1)
    failed = hub_run("push", str(curated_dirs[0]), "--repo-id", "saerl/canary", "--hub_revision", "v1", "--token",
                     canary, "--max-retries", "0", env=env, check=False)
    assert failed.returncode == 1
    hub.faults.clear()
    done = hub_run("push", str(curated_dirs[0]), "--repo-id", "saerl/canary", "--hub_revision", "v1", "--token",
                   canary, env=env)
    loaded = hub_run(code="from saerl_hf.hub import load_curated; print(load_curated('saerl/canary', 'v1').source)",
                     env=env)
    auth = [r.headers.get("authorization") for r in hub.received()]
    assert auth.count(f"Bearer {canary}") >= 10  # the canary really was the token in use

    needle = canary.encode()
    for proc in (failed, done, loaded):
        assert canary not in proc.stdout + proc.stderr
    written = [p for root in (tmp_path, *curated_dirs) for p in root.rglob("*") if p.is_file()]
    assert written and not [p for p in written if needle in p.read_bytes()]
    for request in hub.received():
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        assert canary not in json.dumps(headers) and needle not in request.body, request.path
    assert not [k for k, blob in hub.state.blobs.items() if needle in blob]
    card = next(b for b in hub.state.blobs.values() if b.startswith(b"---") and b"--repo-id saerl/canary" in b)
    assert b"--token REDACTED" in card  # the push command is recorded, with the token masked
    assert "prefer HF_TOKEN" in done.stderr  # a token on the command line is discouraged


def test_create_pr_opens_one_pull_request(hub, hub_run, curated_dirs):
    """--create-pr leaves the branch alone, publishes to refs/pr/N, and a rerun reuses that PR."""
    res, _ = _push(hub_run, curated_dirs[1], "saerl/pr", "v1", "--create-pr")
    assert res["revision"] == "refs/pr/1" and res["pr_url"].endswith("/discussions/1")
    repo = hub.state.repos[("dataset", "saerl/pr")]
    assert repo.branches["v1"] == repo.branches["main"]
    again, _ = _push(hub_run, curated_dirs[1], "saerl/pr", "v1", "--create-pr")
    assert again["revision"] == "refs/pr/1" and not again["dataset_pushed"] and not again["artefacts_pushed"]
    assert list(repo.prs) == [1]
    got = _check(hub_run, ("saerl/pr", "refs/pr/1", curated_dirs[1]))["refs/pr/1"]
    assert got["hash"] == got["local_hash"] and got["arrow_equal"]


def test_missing_revision_or_repo_is_a_clear_error(hub, hub_run):
    hub_run(code="from huggingface_hub import HfApi; HfApi().create_repo('saerl/empty', repo_type='dataset')")
    code = ("import sys\nfrom saerl_hf.hub import load_curated, CuratedLoadError\n"
            "try:\n    load_curated(sys.argv[1], revision=sys.argv[2])\n"
            "except CuratedLoadError as err:\n    print('ERR', err)\n")
    missing_rev = hub_run("saerl/empty", "no-such-branch", code=code).stdout
    assert "Revision 'no-such-branch' does not exist in dataset repo 'saerl/empty'" in missing_rev
    assert "Branches: main" in missing_rev and "Fix:" in missing_rev
    missing_repo = hub_run("saerl/nope", "main", code=code).stdout
    assert "Dataset repo 'saerl/nope' not found" in missing_repo
    unpublished = hub_run("saerl/empty", "main", code=code).stdout
    assert "has no saerl/push.json" in unpublished


def test_local_dir_loads_and_bad_inputs_are_refused(curated_dirs, tmp_path):
    """No network: the loader reads a local curated dir; a malformed dir or an artefact holding the token
    is refused before anything is sent."""
    from saerl_hf.hub import HubPushError, dataset_content_hash, load_curated, push_curated

    local = load_curated(curated_dirs[1])
    assert len(local.dataset) == 30 and local.probes_dir == curated_dirs[1] / "probes"
    assert local.provenance["sae"]["id"] == "test-sae-v1"
    assert dataset_content_hash(local.dataset) != dataset_content_hash(load_curated(curated_dirs[0]).dataset)

    with pytest.raises(HubPushError, match=r"missing dataset/, probes/, summary.json, provenance.json"):
        push_curated(tmp_path, "saerl/x", token="hf_unused", max_retries=0)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("dataset", "probes"):
        (bad / name).symlink_to(curated_dirs[1] / name)
    (bad / "provenance.json").write_text("{}")
    (bad / "summary.json").write_text(json.dumps({"command": "curate --hub-token hf_leakyTOKEN1234567890"}))
    with pytest.raises(HubPushError, match=r"contains the access token; .*Nothing was pushed"):
        push_curated(bad, "saerl/x", token="hf_leakyTOKEN1234567890", max_retries=0)


def test_card_fields_from_curate_shaped_summary_and_provenance_in_its_own_field(hub, hub_run, curated_dirs,
                                                                             tmp_path):
    """A summary as `saerl-hf curate` writes it (``hub_id``, rows per source in ``counts``, ``config``) and flat
    provenance fill the card; the dataset's own description is published as such, the feature provenance in
    a field of its own, and both come back on load."""
    import shutil

    from datasets import load_from_disk

    from saerl_hf.hub_load import join_description
    from saerl_hf.sparse import read_provenance

    local = tmp_path / "curated"
    shutil.copytree(curated_dirs[1], local)
    ds = load_from_disk(str(curated_dirs[1] / "dataset"))
    feature_prov = read_provenance(ds)
    ds.info.description = join_description("Grade-school math word problems.", feature_prov)
    shutil.rmtree(local / "dataset")
    ds.save_to_disk(str(local / "dataset"))
    (local / "summary.json").write_text(json.dumps({
        "sources": [{"name": "gsm8k", "split": "test", "hub_id": "openai/gsm8k", "license": "MIT"},
                    {"name": "mawps", "split": None, "hub_id": None, "license": "see the source"}],
        "counts": {"pool": 70, "by_source": {"gsm8k": 50, "mawps": 20}, "kept_by_source": {"gsm8k": 30},
                   "quality": {"n_dropped": 40, "n_kept": 30}, "kept": 30},
        "config": {"n_clusters": 4, "quality_threshold": 0.5, "order": "saerl", "output_dir": "/home/me/out"},
        "order": {"mode": "saerl"}, "command": "saerl-hf curate --config c.yaml"}))
    (local / "provenance.json").write_text(json.dumps({
        "reader_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "model_revision": "abc123", "sae": "me/sae-l15",
        "sae_hash": "f" * 64, "d_sae": 512, "layer": 15, "hook": "blocks.15.hook_resid_pre", "top_k": 8,
        "pooling": "mean", "dtype": "bfloat16"}))
    res, _ = _push(hub_run, local, "saerl/card-fields", "v1")
    repo = hub.state.repos[("dataset", "saerl/card-fields")]
    files = repo.commits[res["commit"]].files
    card = hub.state.blobs[files["README.md"].key].decode()
    assert "source_datasets:\n- openai/gsm8k\n" in card  # Hub ids only; mawps has none
    for needle in ("| openai/gsm8k | test | 30 | 50 | MIT |", "| mawps |  |  | 20 | see the source |",
                   "| reader model | HuggingFaceTB/SmolLM2-135M-Instruct |", "| reader revision | abc123 |",
                   "| SAE | me/sae-l15 |", f"| SAE hash | {'f' * 64} |", "| layer / hook | 15 / blocks.15.hook_resid_pre |",
                   "| k (latents kept per row) | 8 |", "| reader dtype | bfloat16 |", "| n_clusters | 4 |",
                   "| quality_threshold | 0.5 |", "| quality: n_dropped | 40 |",
                   "| curriculum | saerl |"):  # an older summary (order: {mode}) reads the same
        assert needle in card, needle
    assert "/home/me/out" not in card  # settings that do not decide the rows stay off the card
    record = json.loads(hub.state.blobs[files["saerl/push.json"].key])
    assert record["dataset_description"] == "Grade-school math word problems."
    assert record["feature_provenance"] == feature_prov != {}
    got = _check(hub_run, ("saerl/card-fields", "v1", local))["v1"]
    assert got["provenance_equal"] and got["hash"] == got["local_hash"]


PUSH_OUTPUT = r"""
import logging, sys
from trl import GRPOConfig
from saerl_hf.grpo import push_output

logging.basicConfig(level=logging.INFO)
args = GRPOConfig(output_dir=sys.argv[1], hub_model_id="saerl/grpo-run", hub_token=sys.argv[2], report_to="none",
                  use_cpu=True, bf16=False)
print("URL", push_output(args))
"""


def test_push_output_uploads_no_pickle_and_uses_the_ambient_token(hub, hub_run, hub_env, tmp_path):
    """A GRPO output dir as Trainer leaves it: weights, tokenizer and card go up; training_args.bin, optimizer /
    scheduler / RNG states, other pickles, checkpoints and logs do not. A token passed as hub_token is not used
    and not logged: the push authenticates with HF_TOKEN."""
    from safetensors.numpy import save_file

    out = tmp_path / "grpo-run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "runs" / "x").mkdir(parents=True)
    import numpy as np

    save_file({"w": np.zeros(4, dtype=np.float32)}, str(out / "model.safetensors"))
    for name, text in {"config.json": "{}", "tokenizer.json": "{}", "README.md": "# card\n",
                       "train_results.json": "{}", "grpo_summary.json": "{}"}.items():
        (out / name).write_text(text)
    pickles = ["training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "pytorch_model.bin",
               "probe.pkl", "state.pickle", "checkpoint-2/model.safetensors", "runs/x/events.out"]
    for name in pickles:  # the names Trainer and torch.save use; the bytes need not be real pickles here
        (out / name).write_bytes(b"\x80\x04not-uploaded")
    argv_token = "hf_ARGVTOKEN" + uuid.uuid4().hex
    proc = hub_run(str(out), argv_token, code=PUSH_OUTPUT)
    repo = hub.state.repos[("model", "saerl/grpo-run")]
    files = set(repo.commits[repo.branches["main"]].files)
    assert files == {".gitattributes", "model.safetensors", "config.json", "tokenizer.json", "README.md",
                     "train_results.json", "grpo_summary.json"}
    assert not [b for b in hub.state.blobs.values() if b.startswith(b"\x80\x04")]
    assert "hub_token is ignored" in proc.stderr and argv_token not in proc.stdout + proc.stderr
    auth = {r.headers.get("authorization") for r in hub.received()} - {None}  # LFS uploads carry none
    assert auth == {f"Bearer {hub_env['HF_TOKEN']}"}


def test_one_redactor_masks_flag_values_and_token_shapes():
    from saerl_hf.redact import redact, redact_argv, redacted_command

    token = "hf_" + "a1B2" * 8
    argv = ["saerl-hf", "train", "--hub_token", token, f"--token={token}", "--hub-token", "x", "--hf_token=y",
            "--note", f"see {token}", "--lr", "1e-6"]
    out = redact_argv(argv)
    assert out == ["saerl-hf", "train", "--hub_token", "REDACTED", "--token=REDACTED", "--hub-token", "REDACTED",
                   "--hf_token=REDACTED", "--note", "see hf_REDACTED", "--lr", "1e-6"]
    assert token not in redacted_command(argv) and "--lr 1e-6" in redacted_command(argv)
    assert redact(f"401 for {token} and secret", "secret") == "401 for hf_REDACTED and REDACTED"
