"""Pytest fixtures for tests against the local Hub emulator (loaded from tests/conftest.py as a plugin).

``huggingface_hub`` and ``datasets`` read ``HF_ENDPOINT``, ``HF_HUB_DISABLE_XET`` and the cache paths at import
time, and other tests in the same pytest process import them with the defaults. So client code runs in a
subprocess with :func:`hub_env` (a fresh ``HF_HOME`` / ``HF_DATASETS_CACHE`` per test, which also avoids
datasets' stale-cache fallback to another revision); the emulator itself runs in a thread of this process so
tests can inject faults and inspect what it received.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hub_emulator import HubServer

REPO_ROOT = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "hf_fakeEmulatorToken0000000000000000"
_DROP = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH", "HUGGINGFACE_HUB_CACHE",
         "HF_HUB_CACHE", "HF_XET_CACHE")


@pytest.fixture(scope="session")
def hub_server():
    """One emulator per session on a free loopback port; tests use distinct repo ids."""
    server = HubServer.start()
    yield server
    server.close()


@pytest.fixture()
def hub(hub_server):
    """The session emulator with faults and the request log cleared before the test."""
    hub_server.faults.clear()
    hub_server.resume()
    hub_server.reset_log()
    yield hub_server
    hub_server.faults.clear()
    hub_server.resume()


@pytest.fixture()
def hub_env(hub, tmp_path) -> dict[str, str]:
    """Environment for a client subprocess pointed at the emulator, with fresh caches."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    data_dir = os.environ.get("SAERL_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data")
    env.update({
        "HF_ENDPOINT": hub.url, "HF_TOKEN": FAKE_TOKEN, "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hf_home"), "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets"),
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0", "SAERL_DATA_DIR": data_dir, "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    return env


@pytest.fixture()
def hub_run(hub_env):
    """``hub_run(*args, code=None, env=None)``: run ``python -c code args`` or ``python -m saerl_hf.cli args``."""

    def run(*args: str, code: str | None = None, env: dict | None = None, check: bool = True):
        cmd = [sys.executable, "-c", code, *args] if code is not None else [sys.executable, "-m", "saerl_hf.cli", *args]
        proc = subprocess.run(cmd, env=env or hub_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd[:4]} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                                 f"--- stderr\n{proc.stderr[-6000:]}")
        return proc

    return run


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove a dir was not modified)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build_curated_dir(out: Path, limit: int = 50, variant: int = 0) -> Path:
    """A small curated dir in the curate-pipeline format, from real GSM8K rows plus fake-but-valid columns."""
    import numpy as np
    from safetensors.numpy import save_file

    from saerl_hf.data import load_math_dataset
    from saerl_hf.sparse import write_provenance

    rng = np.random.default_rng(1234 + variant)
    ds = load_math_dataset("gsm8k", "test", limit=limit)
    n, k, width = len(ds), 8, 512
    idx = [sorted(rng.choice(width, size=k, replace=False).tolist()) for _ in range(n)]
    val = [rng.random(k, dtype=np.float32).round(4).tolist() for _ in range(n)]
    from datasets import Features, List, Value

    features = Features({**ds.features, "sae_idx": List(Value("int32")), "sae_val": List(Value("float32")),
                         "sae_l0": Value("int32"), "difficulty": Value("float32"), "quality": Value("float32"),
                         "cluster": Value("int32"), "curriculum_rank": Value("int64")})
    ranks = rng.permutation(n).tolist()
    ds = ds.map(lambda row, i: {"sae_idx": idx[i], "sae_val": val[i], "sae_l0": int(20 + i % 7),
                                "difficulty": float(rng.random()), "quality": float(rng.random()),
                                "cluster": int(i % 4), "curriculum_rank": ranks[i]},
                with_indices=True, features=features)
    provenance = {"reader_model": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "main"},
                  "sae": {"id": f"test-sae-v{variant}", "hash": "0" * 63 + str(variant), "d_sae": width},
                  "layer": 12, "hook": "blocks.12.hook_resid_post", "pooling": "mean", "k": k}
    write_provenance(ds, provenance)
    ds.save_to_disk(str(out / "dataset"))
    for name, shape in (("difficulty", (width,)), ("quality", (width,)), ("clusters", (4, width))):
        (out / "probes" / name).mkdir(parents=True, exist_ok=True)
        save_file({"weight": rng.standard_normal(shape).astype(np.float32)}, str(out / "probes" / name / "probe.safetensors"))
        (out / "probes" / name / "config.json").write_text(json.dumps({"kind": name, "d_sae": width, "variant": variant}))
    (out / "provenance.json").write_text(json.dumps({**provenance, "versions": {"sae-lens": "6.54.0"}}, indent=2))
    (out / "summary.json").write_text(json.dumps({
        "sources": [{"name": "gsm8k", "hub": "openai/gsm8k", "split": "test", "rows": limit, "license": "MIT"}],
        "counts": {"loaded": limit, "dropped_quality": 0, "kept": n},
        "metrics": {"difficulty": {"spearman": 0.41}, "quality": {"auroc": 0.77}},
        "curriculum": {"curriculum": "saerl", "curriculum_mixing": 0.25, "prompts_per_batch": 8,
                       "seed": variant},
        "timings": {"featurize_s": 1.0}, "command": f"saerl-hf curate --config recipes/test.yaml --seed {variant}",
    }, indent=2))
    return out


@pytest.fixture(scope="session")
def curated_dirs(tmp_path_factory, data_dir) -> tuple[Path, Path]:
    """Two different curated dirs (v1: 50 rows, v2: 30 rows of other fake signals), built once per session."""
    base = tmp_path_factory.mktemp("curated")
    return build_curated_dir(base / "v1", 50, 0), build_curated_dir(base / "v2", 30, 1)
