"""What pytest-benchmark times (a callable that waits for the device: CUDA work is asynchronous,
so the clock would otherwise see only kernel launches), how long, and the ``extra_info`` each
benchmark records."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from mnistcore import device_name, synchronize

KINDS = ("train_step", "inference", "data_batch", "data_epoch", "population_step")
# population_step cases: the fused K-member step, or the single-model baseline it is compared to
POPULATION_MODES = ("population", "single")

# Every benchmark's extra_info holds these keys with these types (the report reads them).
REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    # images per timed call / median seconds per call (member-images for a population_step)
    "images_per_second": (float,),
    "batch_size": (int,),
    "device": (str,),  # "cpu" | "cuda"
    "device_name": (str,),  # CPU or GPU model
    "precision": (str,),
    "channels_last": (bool,),
    "threads": (int,),  # torch CPU threads
    "n_params": (int, type(None)),  # None where no model is involved (data_batch)
    "model": (str, type(None)),  # preset: seed | w16 | w64 | bn | study; None for data_batch
    "pipeline": (str,),
    "dataset": (str,),  # "fixed-random-batch", "fashion-mnist", "synthetic-idx", ...
}
# ... whose values are one of these
CHOICES = {"kind": KINDS, "pipeline": ("seed", "mnistcore"), "precision": ("fp32", "bf16")}
# ... and a population_step's also these (speedup_vs_single comes at the end of the session)
POPULATION_FIELDS: dict[str, tuple[type, ...]] = {
    "population": (int,),  # K, members trained as one module; 1 for the single-model baseline
    "member_images_per_second": (float,),  # images one member trains per second
    "mode": (str,),  # one of POPULATION_MODES
}


class Timed:
    """The callable given to ``benchmark.pedantic``: runs ``work``, then waits for the device.
    It keeps its last call's seconds: the measurement under ``--benchmark-disable``."""

    def __init__(self, work: Callable[[], object], device: torch.device) -> None:
        self.work = work
        self.device = device
        self.last_seconds: float | None = None

    def __call__(self) -> None:
        start = time.perf_counter()
        self.work()
        synchronize(self.device)  # note: CPU-GPU sync point, on purpose
        self.last_seconds = time.perf_counter() - start


@dataclass(frozen=True)
class Budget:
    """How long each benchmark runs: the defaults are the full run."""

    cpu_rounds: int = 5  # timed calls per CPU benchmark; the median is taken over them
    cuda_rounds: int = 10
    warmup_rounds: int = 1  # untimed calls first: allocator, cuDNN autotuning, caches
    cpu_images: int = 2048  # images per timed call of a CPU train step (steps = images // bs)
    cuda_images: int = 16384  # same on CUDA: many steps per call, so one sync is a small share
    epoch_steps: int = 200  # batches of 64 in one "epoch" of the data-path benchmark
    epoch_rounds: int = 5  # timed epochs (the seed's CPU epoch takes seconds)
    # member-images per timed call of a population step (one step of K members at batch B
    # trains K*B), the single-model baseline (K=1) included
    cpu_member_images: int = 8192  # K=16 of the study net (batch 128): 4 steps per call
    cuda_member_images: int = 32768  # K=256 of the study net: 1 step per call
    # Rounds feed the regression gate's rank test (bench/compare.py): with m and n rounds its
    # smallest p-value is 1 / C(m+n, m), 1/252 at 5 vs 5, 1/20 at 3 vs 3, 1/6 at 2 vs 2 (never
    # below 0.05). So the full and quick budgets give every case at least 3 rounds.

    @classmethod
    def quick(cls) -> Budget:
        """Fewer rounds, the same work per call: it compares case by case with a full run."""
        return cls(cpu_rounds=3, cuda_rounds=5, epoch_rounds=3)

    @classmethod
    def smoke(cls) -> Budget:
        """For ``--benchmark-disable`` (one call per benchmark, nothing saved): less work."""
        return cls(
            cpu_rounds=1,
            cuda_rounds=1,
            warmup_rounds=0,
            cpu_images=512,
            cuda_images=4096,
            epoch_steps=20,
            epoch_rounds=1,
            cpu_member_images=1024,
            cuda_member_images=8192,
        )

    def rounds(self, device: torch.device) -> int:
        return self.cuda_rounds if device.type == "cuda" else self.cpu_rounds

    def steps(self, device: torch.device, batch_size: int) -> int:
        images = self.cuda_images if device.type == "cuda" else self.cpu_images
        return max(1, images // batch_size)

    def calls(self, device: torch.device) -> int:
        """Timed calls a case may make: warm-up, rounds, and a spare one."""
        return self.warmup_rounds + self.rounds(device) + 1

    def member_steps(self, device: torch.device, batch_size: int, population: int) -> int:
        """Steps per timed call of ``population`` members: the member-images, at least 1 step."""
        images = self.cuda_member_images if device.type == "cuda" else self.cpu_member_images
        return max(1, images // (batch_size * population))


def median_seconds(benchmark: Any, timed: Timed) -> tuple[float, str]:
    """Seconds per call: the benchmark's median, or (benchmark disabled: pedantic calls its
    target once, untimed) the one call timed by ``timed`` itself."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        return float(stats.stats.median), f"median of {stats.stats.rounds} rounds"
    assert timed.last_seconds is not None, "record() comes after benchmark.pedantic()"
    return timed.last_seconds, "one call (benchmark disabled)"


def record(benchmark: Any, timed: Timed, *, kind: str, images: int, **fields: object) -> float:
    """Fill ``benchmark.extra_info`` after ``pedantic`` returned; returns images per second.
    ``images``: per timed call (member-images, K per image, when ``fields`` has the population
    K); ``fields``: the REQUIRED_FIELDS not measured here (precision fp32 and pipeline mnistcore
    unless given) and any others, all checked by ``extra_info_problems``."""
    seconds, timing = median_seconds(benchmark, timed)
    info: dict[str, object] = {
        "kind": kind,
        "images_per_second": images / seconds,
        "device": timed.device.type,
        "device_name": device_name(timed.device),
        "precision": "fp32",
        "threads": torch.get_num_threads(),
        "pipeline": "mnistcore",
        "images_per_call": images,
        "seconds_per_call": seconds,
        "timing": timing,
        "torch": torch.__version__,
        "cpu_load_1min": os.getloadavg()[0],  # other work on the machine skews CPU figures
        **fields,
    }
    if "population" in fields:
        info["member_images_per_second"] = images / seconds
    problems = extra_info_problems(info)
    if problems:
        raise AssertionError(f"bad extra_info for {kind}: {'; '.join(problems)}")
    benchmark.extra_info.update(info)
    return images / seconds


def extra_info_problems(info: Mapping[str, object]) -> list[str]:
    """What is missing, mistyped or not one of CHOICES in ``info`` against REQUIRED_FIELDS (and
    POPULATION_FIELDS for a population_step); empty: all good."""
    fields, choices = REQUIRED_FIELDS, CHOICES
    population = info.get("kind") == "population_step"
    if population:
        fields, choices = {**fields, **POPULATION_FIELDS}, {**choices, "mode": POPULATION_MODES}
    problems = []
    for key, types in fields.items():
        value = info.get(key)
        if key not in info:
            problems.append(f"{key} missing")
        elif not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            problems.append(f"{key}={value!r} is not {' or '.join(t.__name__ for t in types)}")
    for key, allowed in choices.items():
        if info.get(key) not in allowed:
            problems.append(f"{key}={info.get(key)!r} is not one of {', '.join(allowed)}")
    k = info.get("population")
    if population and isinstance(k, int) and not isinstance(k, bool) and k < 1:
        problems.append(f"population={k!r} is not >= 1")
    ips = info.get("images_per_second")
    if isinstance(ips, float) and not ips > 0:
        problems.append(f"images_per_second={ips!r} is not > 0")
    return problems


def case(*values: object, quick: bool = False, name: Sequence[object] = ()) -> Any:
    """A ``pytest.param`` of ``values``, the device first: marked ``cuda`` on CUDA and
    ``quick`` when asked, its id ``case_id(*name)`` (default: the values)."""
    marks = [pytest.mark.cuda] if values[0] == "cuda" else []
    if quick:
        marks.append(pytest.mark.quick)
    return pytest.param(*values, marks=marks, id=case_id(*(name or values)))


def case_id(*parts: object) -> str:
    """``cpu-seed-bs64-fp32-cl``: the parametrize id; ``group_name`` drops the device."""
    return "-".join(str(p) for p in parts if p not in ("", None))


def group_name(kind: str, *parts: object) -> str:
    """``train_step[seed-bs64-fp32-cl]``: no device in it, so CPU and CUDA share the group."""
    return f"{kind}[{case_id(*parts)}]"
