"""Hub retries and timeouts through public settings only.

Against the local Hub emulator (tests/hub_plugin.py): a transient error is retried exactly as configured and the
push lands; a 401/404 fails at once. In process: the request timeout bounds huggingface_hub's shared client (its
public ``get_session``) and gives it back. And no saerl_hf module reaches into huggingface_hub's private names, so
an upgrade of the library cannot silently break them.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _push(hub_run, curated: Path, repo: str, *extra: str):
    """``saerl-hf push`` to the default branch (fast backoff); returns the finished process."""
    return hub_run("push", str(curated), "--repo-id", repo, "--retry-base-wait", "0.01", *extra, check=False)


def test_transient_429s_are_retried_as_configured_then_the_push_lands(hub, hub_run, curated_dirs):
    hub.faults.fail("create", 429, times=3)
    proc = _push(hub_run, curated_dirs[1], "saerl/rate-limited", "--max-retries", "2")
    assert proc.returncode == 1 and "push step 'create repo' failed after 3 attempt(s)" in proc.stderr
    assert [r.status for r in hub.received("create")] == [429, 429, 429]
    assert ("dataset", "saerl/rate-limited") not in hub.state.repos

    hub.faults.clear()
    hub.reset_log()
    hub.faults.fail("create", 429, times=2)
    proc = _push(hub_run, curated_dirs[1], "saerl/rate-limited", "--max-retries", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r.status for r in hub.received("create")] == [429, 429, 200]
    assert re.findall(r"attempt (\d/\d) failed \(HfHubHTTPError", proc.stderr) == ["1/3", "2/3"]
    assert [float(w) for w in re.findall(r"retrying in ([0-9.e-]+)s", proc.stderr)] == [0.01, 0.02]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dataset_pushed"] and result["artefacts_pushed"]
    assert hub.state.repos[("dataset", "saerl/rate-limited")].branches["main"] == result["commit"]


@pytest.mark.parametrize("status", [401, 404])
def test_auth_and_not_found_fail_at_once(hub, hub_run, curated_dirs, status):
    hub.faults.fail("create", status, times=-1)
    proc = _push(hub_run, curated_dirs[1], f"saerl/refused-{status}", "--max-retries", "3")
    assert proc.returncode == 1 and "push step 'create repo' failed after a permanent error" in proc.stderr
    assert str(status) in proc.stderr and "rerun the same command" in proc.stderr
    assert len(hub.received("create")) == 1 and "retrying in" not in proc.stderr


def test_request_timeout_bounds_the_shared_client_and_gives_it_back():
    """Also after huggingface_hub replaced its client (it does after a connection error): each attempt re-applies
    the bound, and every client touched gets its own timeout back."""
    from huggingface_hub import close_session, get_session

    from saerl_hf.hub_push import _request_timeout

    first = get_session()
    before = first.timeout
    with _request_timeout(2.5) as bound:
        assert get_session() is first and first.timeout.read == 2.5
        close_session()
        bound()
        second = get_session()
        assert second is not first and second.timeout.read == 2.5
    assert first.timeout == before and second.timeout == before
    with _request_timeout(0) as bound:  # 0: no bound, nothing touched
        bound()
        assert get_session().timeout == before


def private_huggingface_hub_names(source: str) -> list[str]:
    """Every dotted huggingface_hub name in ``source`` (imports, attributes of imported names) with a segment
    that starts with an underscore (dunders such as ``__version__`` are public)."""
    aliases, found = {}, []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
                found.append(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                found.append(f"{node.module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                parts.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(".".join([aliases[base.id], *parts]))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):  # importlib.import_module("...")
            found += re.findall(r"huggingface_hub(?:\.\w+)+", node.value)

    def private(name: str) -> bool:
        return name.split(".")[0] == "huggingface_hub" and any(
            part.startswith("_") and not (part.startswith("__") and part.endswith("__")) for part in name.split("."))

    return sorted({name for name in found if private(name)})


def test_no_module_reaches_into_huggingface_hub_private_names():
    old = ("from huggingface_hub.utils import _http\nimport huggingface_hub as hf\n"
           "x = getattr(_http, 'y', _http.default_client_factory)\nhf.constants._as_int\nhf.__version__\n")
    assert private_huggingface_hub_names(old) == ["huggingface_hub.constants._as_int", "huggingface_hub.utils._http",
                                                  "huggingface_hub.utils._http.default_client_factory"]
    offenders = {path.relative_to(REPO_ROOT).as_posix(): names
                 for path in sorted((REPO_ROOT / "saerl_hf").rglob("*.py"))
                 if (names := private_huggingface_hub_names(path.read_text(encoding="utf-8")))}
    assert offenders == {}, f"use huggingface_hub's public API (or tenacity) instead: {offenders}"
