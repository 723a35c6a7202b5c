"""The wheel works outside the repository: built from the sources, installed into a fresh venv, and run from a
directory that is not the checkout, it prints its help, curates a tiny pool, pushes it to the local Hub emulator
with a rendered card, and writes the SAE card (the card templates ship as package data).

The fresh venv gets the dependencies through a ``.pth`` line naming this venv's site-packages (no downloads);
saerl-hf itself comes only from the wheel (this venv's editable install is not visible there)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.hub_plugin import REPO_ROOT

# every page template (cards, calibration, signals and experiment reports) renders from the installed package
TEMPLATES = {f"saerl_hf/templates/{path.name}" for path in (REPO_ROOT / "saerl_hf" / "templates").glob("*.md")}


def _run(cmd, cwd, env, timeout=180) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[:3]} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (nothing is written into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(REPO_ROOT / "saerl_hf", src / "saerl_hf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src], src,
         dict(os.environ))
    (path,) = out.glob("saerl_hf-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the repository with only the wheel installed (dependencies via a .pth line)."""
    root = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", root], root.parent, dict(os.environ))
    python = root / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root.parent,
                     dict(os.environ)).stdout.strip())
    (site / "_deps_from_dev_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "--no-deps", "-q", wheel], root.parent, dict(os.environ))
    return root


def test_the_wheel_ships_the_card_templates_and_metric(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert TEMPLATES <= names
    assert "saerl_hf/metrics/math_accuracy/math_accuracy.py" in names
    assert not [n for n in names if n.startswith(("tests/", "model_cards/"))]


def test_installed_wheel_curates_pushes_and_writes_cards_outside_the_repo(venv, hub_env, hub, tmp_path,
                                                                         tiny_model_dir, tiny_sae_dir):
    started = time.perf_counter()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in hub_env.items() if k != "PYTHONPATH"}
    cli = venv / "bin" / "saerl-hf"

    where = _run([venv / "bin" / "python", "-c", "import saerl_hf, saerl_hf.cards as c; print(saerl_hf.__file__); "
                  "print(c.card_template('dataset_card.md'))"], work, env).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel's copy, not the checkout's
    help_text = _run([cli, "--help"], work, env).stdout
    assert "curate" in help_text and "push" in help_text

    recipe = {"output_dir": str(work / "curated"), "sources": ["mawps_singleop", "gsm8k:test"],
              "limit_per_source": 40, "model": tiny_model_dir, "sae": tiny_sae_dir, "top_k": 16,
              "featurize_batch_size": 8, "chunk_size": 40, "source_levels": ["mawps_singleop=0.5", "gsm8k=1.5"],
              "quality_train_size": 40, "n_clusters": 3, "prompts_per_batch": 4}
    (work / "curate.yaml").write_text(yaml.safe_dump(recipe))
    _run([cli, "curate", "--config", "curate.yaml"], work, env, timeout=300)
    summary = json.loads((work / "curated" / "summary.json").read_text())
    assert summary["rows"] > 0

    pushed = _run([cli, "push", "curated", "--repo-id", "saerl/from-wheel", "--hub_revision", "v1"], work, env)
    assert json.loads(pushed.stdout.strip().splitlines()[-1])["dataset_pushed"] is True
    repo = hub.state.repos[("dataset", "saerl/from-wheel")]
    card = hub.state.blobs[repo.commits[repo.branches["v1"]].files["README.md"].key].decode()
    (work / "README.card.md").write_text(card)  # for a reader of a failed run
    assert "source_datasets:\n- openai/gsm8k" in card and "| openai/gsm8k | test |" in card
    assert f"| {summary['counts']['kept_by_source']['gsm8k']} | 40 |" in card  # rows kept / in the pool
    assert "| n_clusters | 3 |" in card and "saerl/push.json" in card

    sae_card = _run([venv / "bin" / "python", "-c", "import json, sys; from saerl_hf.sae import render_sae_card; "
                     "print(render_sae_card(json.load(open(sys.argv[1]))))", Path(tiny_sae_dir) / "sae_training.json"],
                    work, env).stdout
    assert "library_name: saelens" in sae_card and "model.layers.2" in sae_card
    assert time.perf_counter() - started < 120
