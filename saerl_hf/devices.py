"""Device and dtype choices made without initialising CUDA in this process.

``datasets.map(num_proc=...)`` forks its workers, and CUDA cannot be used in a child forked from a parent that
initialised it: ``torch.cuda.is_available()`` already runs ``cuInit`` and ``torch.cuda.is_bf16_supported()``
creates a context. So the parent asks NVML (the driver's management library, no CUDA context), as
``torch.cuda.device_count()`` itself does before CUDA is initialised; once CUDA is initialised anyway, torch's
own answers are used.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path


def cuda_device_count() -> int:
    """GPUs this process may use (``CUDA_VISIBLE_DEVICES`` applied), without creating a CUDA context."""
    import torch

    return torch.cuda.device_count()  # NVML-based until CUDA is initialised; 0 on CPU builds


def default_device(rank: int | None = None) -> str:
    """``cuda`` (``cuda:<rank mod GPUs>`` with a rank) when a GPU is visible, else ``cpu``; fork-safe."""
    count = cuda_device_count()
    if count:
        return f"cuda:{rank % count}" if rank is not None else "cuda"
    return "cpu"


def visible_gpu(index: int, visible: str | None = None) -> int | str:
    """The physical NVML index (or UUID) of CUDA device ``index`` under ``CUDA_VISIBLE_DEVICES``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if not visible:
        return index
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if index >= len(entries):
        raise ValueError(f"cuda:{index} is not visible (CUDA_VISIBLE_DEVICES={visible!r}).")
    entry = entries[index]
    return int(entry) if entry.isdigit() else entry


def nvml_compute_capability(index: int = 0) -> tuple[int, int] | None:
    """(major, minor) of CUDA device ``index`` from NVML, or None where NVML is missing or fails."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        handle, major, minor = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_int()
        gpu = visible_gpu(index)
        found = (nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(gpu), ctypes.byref(handle)) if isinstance(gpu, int)
                 else nvml.nvmlDeviceGetHandleByUUID(gpu.encode(), ctypes.byref(handle)))
        if found != 0 or nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)):
            return None
        return major.value, minor.value
    except (AttributeError, ValueError):
        return None
    finally:
        nvml.nvmlShutdown()


def native_bf16(device: str | None = None) -> bool:
    """Whether bfloat16 matmuls run natively: a GPU of compute capability >= 8 (Ampere on), ROCm, or a CPU with
    AVX512-BF16 / AMX-BF16 (there oneDNN's bf16 kernels beat float32 by ~2.5x; elsewhere bf16 is emulated and
    slower). Never initialises CUDA."""
    import torch

    device = device or default_device()
    if device.startswith("cuda"):
        if torch.version.hip:
            return True
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if torch.cuda.is_initialized():  # nothing left to protect
            return torch.cuda.get_device_capability(index)[0] >= 8
        capability = nvml_compute_capability(index)
        return capability is not None and capability[0] >= 8
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def resolve_dtype(dtype: str, device: str | None = None) -> str:
    """``auto`` -> ``bfloat16`` where it is native (:func:`native_bf16`), else ``float32``; other names pass
    through after a check that torch has them. The resolved name is what provenance and fingerprints record."""
    import torch

    if dtype == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
        raise ValueError(f"dtype '{dtype}' is not a torch dtype. Fix: use float32, bfloat16 or auto.")
    return str(dtype)
