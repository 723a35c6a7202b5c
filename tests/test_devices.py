"""`dtype: auto` and the default device are decided without initialising CUDA, so datasets can still fork map
workers that use it. Run in a fresh interpreter: nothing else in it may have touched CUDA first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from saerl_hf.devices import native_bf16, resolve_dtype, visible_gpu

CHECK = r"""
import json, multiprocessing as mp
import torch
from saerl_hf.devices import cuda_device_count, default_device, native_bf16, resolve_dtype

def child(queue):
    queue.put(bool(torch.cuda._is_in_bad_fork()))

answers = {"auto": resolve_dtype("auto"), "auto_cuda": resolve_dtype("auto", "cuda:0"),
           "auto_cpu": resolve_dtype("auto", "cpu"), "device": default_device(), "device_rank": default_device(3),
           "gpus": cuda_device_count(), "bf16_cuda": native_bf16("cuda")}
answers["initialized"] = torch.cuda.is_initialized()
queue = mp.get_context("fork").SimpleQueue()
worker = mp.get_context("fork").Process(target=child, args=(queue,))
worker.start(); worker.join()
answers["child_bad_fork"] = queue.get()
print(json.dumps(answers))
"""


def test_auto_dtype_and_device_leave_cuda_uninitialised_and_fork_safe():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["initialized"] is False and got["child_bad_fork"] is False
    assert got["auto_cpu"] == ("bfloat16" if native_bf16("cpu") else "float32")
    if got["gpus"] == 0:  # this machine: no GPU
        assert got["device"] == "cpu" and got["device_rank"] == "cpu" and got["auto"] == got["auto_cpu"]
    else:
        assert got["device"] == "cuda" and got["device_rank"] == f"cuda:{3 % got['gpus']}"
        assert got["auto_cuda"] == ("bfloat16" if got["bf16_cuda"] else "float32")


def test_visible_devices_map_to_nvml_indices_and_names_are_checked():
    assert visible_gpu(0, "") == 0 and visible_gpu(1, "3,1") == 1 and visible_gpu(0, "3,1") == 3
    assert visible_gpu(0, "GPU-8f1c, 2") == "GPU-8f1c"
    with pytest.raises(ValueError, match="not visible"):
        visible_gpu(2, "0,1")
    assert resolve_dtype("bfloat16") == "bfloat16" and resolve_dtype("float32", "cuda") == "float32"
    with pytest.raises(ValueError, match="not a torch dtype.*Fix"):
        resolve_dtype("float99")
