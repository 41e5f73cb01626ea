"""Device choice, CPU threads and seeding: the one place that touches global torch state."""

from __future__ import annotations

import functools
import os
import random

import numpy as np
import torch

from mnistcore.errors import DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N`` into a device that exists here, or raise DeviceError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, got device={name!r}")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device={name!r} requested but no CUDA GPU is usable here "
            "(torch.cuda.is_available() is False); use --device cpu or --device auto"
        )
    device = torch.device(name)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"device={name!r} requested but only {count} CUDA device(s) exist; "
            f"use cuda:0..cuda:{count - 1}"
        )
    return device


# CPU flags (as /proc/cpuinfo spells them) of the instructions that make bf16 autocast fast:
# without them oneDNN emulates bf16 and it is far slower than fp32 (PyTorch #118499; measured
# 3.3x slower on an AMD EPYC VM without AVX-512, 2026-12-05).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def resolve_precision(
    precision: str, device: torch.device, cpu_flags: frozenset[str] | None = None
) -> str:
    """``fp32`` or ``bf16``: ``auto`` is bf16 where the device runs it fast (a CUDA GPU with
    bf16, a CPU with one of ``BF16_CPU_FLAGS``; ``cpu_flags`` defaults to this machine's),
    fp32 elsewhere; ``fp32`` and ``bf16`` are kept as they are."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    return "bf16" if flags & BF16_CPU_FLAGS else "fp32"


def device_name(device: torch.device) -> str:
    """Human name of a device, for stamping results: the GPU model or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model()


def available_cores() -> int:
    """Cores this process may run on (respects taskset / cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads (0 = one per available core); returns the count in use."""
    wanted = threads or available_cores()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op on the CPU): clocks start with it idle."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices).

    On the CPU the same seed already gives identical numbers. ``deterministic=True`` also asks
    cuDNN for deterministic kernels, which costs GPU speed, so training leaves it off and turns
    ``cudnn.benchmark`` on instead.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({available_cores()} cores)"
    except OSError:
        pass
    return f"cpu ({available_cores()} cores)"
