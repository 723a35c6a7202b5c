"""Data-parallel featurization under a launcher: 2 CPU processes (gloo) give what one process gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from datasets import load_from_disk

from saerl_hf import distributed

REPO = Path(__file__).resolve().parents[1]


def test_without_a_launcher_every_helper_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert all(distributed.owns(i) for i in range(5))
    distributed.barrier()  # returns at once: no process group needed
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    assert [i for i in range(7) if distributed.owns(i)] == [1, 4] and not distributed.is_main()


def test_featurize_on_two_cpu_processes_equals_one_process(tiny_model_dir, tiny_sae_dir, data_dir, tmp_path):
    """`torchrun --nproc_per_node 2 -m saerl_hf.cli featurize` (what `accelerate launch --multi_gpu` runs on GPUs;
    accelerate's own CPU multi-process launch needs MPI): rank 0 saves exactly the single-process result."""
    import torch

    from saerl_hf.data import load_math_dataset
    from saerl_hf.features import FeaturizeConfig, featurize
    from saerl_hf.sparse import feature_provenance

    settings = dict(model=tiny_model_dir, sae=tiny_sae_dir, top_k=16, batch_size=4, map_batch_size=9)
    args = ["--dataset", "gsm8k", "--split", "test", "--limit", "40", "--output_dir", str(tmp_path / "two"),
            "--cache_dir", str(tmp_path / "cache")]
    for key, value in settings.items():
        args += [f"--{key}", str(value)]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    port = str(29500 + (os.getpid() + 29) % 1000)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", port, "-m", "saerl_hf.cli",
                           "featurize", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = load_from_disk(str(tmp_path / "two"))
    one = featurize(load_math_dataset("gsm8k", "test", limit=40),
                    FeaturizeConfig(cache_dir=str(tmp_path / "cache1"), **settings))
    assert two["id"] == one["id"] and two["sae_idx"] == one["sae_idx"] and two["sae_l0"] == one["sae_l0"]
    np.testing.assert_array_equal(np.concatenate(two["sae_val"]), np.concatenate(one["sae_val"]))
    assert feature_provenance(two) == feature_provenance(one)
    shards = next((tmp_path / "cache").glob("shards-*"))
    ranks = [json.loads((d / "_SAERL_STAGE_DONE.json").read_text())["rank"] for d in sorted(shards.glob("chunk_*"))]
    assert ranks == [0, 1, 0, 1, 0]  # 40 rows in map batches of 9: five chunks dealt out over two ranks


class CountingHash:
    """The Hub's real content hash, counting how often it reads the rows."""

    def __init__(self):
        from saerl_hf.hub import dataset_content_hash

        self.fn, self.calls = dataset_content_hash, 0

    def __call__(self, dataset):
        self.calls += 1
        return self.fn(dataset)


def test_content_hash_is_verified_once_then_read_from_the_verdict(tmp_path, monkeypatch):
    from datasets import Dataset

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    Dataset.from_dict({"id": [f"q{i}" for i in range(50)], "x": list(range(50))}).save_to_disk(str(tmp_path / "ds"))
    ds = load_from_disk(str(tmp_path / "ds"))
    counting = CountingHash()
    expected = counting.fn(ds)
    assert distributed.verify_content_hash_once(ds, expected, counting) and counting.calls == 1
    again = load_from_disk(str(tmp_path / "ds"))  # another load (or rank) of the same files: no row is read
    assert distributed.verify_content_hash_once(again, expected, counting) and counting.calls == 1
    assert not distributed.verify_content_hash_once(again, "0" * 64, counting) and counting.calls == 2
    Dataset.from_dict({"id": ["z"], "x": [0]}).save_to_disk(str(tmp_path / "ds"))  # the files change
    changed = load_from_disk(str(tmp_path / "ds"))
    assert not distributed.verify_content_hash_once(changed, expected, counting) and counting.calls == 3
    in_memory = Dataset.from_dict({"id": ["q0"], "x": [0]})
    assert distributed.verify_content_hash_once(in_memory, counting.fn(in_memory), counting) and counting.calls == 4


_VERIFY_SCRIPT = '''
import json, sys
sys.path.insert(0, sys.argv[2])
from datasets import load_from_disk
from saerl_hf import distributed
from tests.test_distributed import CountingHash
counting = CountingHash()
ds = load_from_disk(sys.argv[1] + "/ds")
ok = distributed.verify_content_hash_once(ds, open(sys.argv[1] + "/expected").read(), counting)
json.dump({"ok": ok, "calls": counting.calls}, open(f"{sys.argv[1]}/rank{distributed.rank()}.json", "w"))
'''


def test_two_ranks_read_the_rows_once(tmp_path):
    import torch
    from datasets import Dataset

    from saerl_hf.hub import dataset_content_hash

    Dataset.from_dict({"id": [f"q{i}" for i in range(20)]}).save_to_disk(str(tmp_path / "ds"))
    (tmp_path / "expected").write_text(dataset_content_hash(load_from_disk(str(tmp_path / "ds"))))
    script = tmp_path / "verify.py"
    script.write_text(_VERIFY_SCRIPT)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    port = str(29500 + (os.getpid() + 41) % 1000)
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", port, str(script), str(tmp_path),
                           str(REPO)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results == [{"ok": True, "calls": 1}, {"ok": True, "calls": 0}]  # rank 0 hashed, rank 1 read the verdict
