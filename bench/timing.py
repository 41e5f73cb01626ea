"""What pytest-benchmark times, and the ``extra_info`` each benchmark records.

pytest-benchmark reads a wall clock around the callable. CUDA work is asynchronous, so the
callable must wait for the device before it returns, or the clock only sees kernel launches.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import torch

from mnistcore import device_name

KINDS = ("train_step", "inference", "data_batch", "data_epoch")
PIPELINES = ("seed", "mnistcore")

# Every benchmark's extra_info holds these keys with these types (the report reads them).
REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "kind": (str,),  # one of KINDS
    "images_per_second": (float,),  # images per timed call / median seconds per call
    "batch_size": (int,),
    "device": (str,),  # "cpu" | "cuda"
    "device_name": (str,),  # CPU or GPU model
    "precision": (str,),  # "fp32" | "bf16"
    "channels_last": (bool,),
    "threads": (int,),  # torch CPU threads
    "n_params": (int, type(None)),  # None where no model is involved (data_batch)
    "model": (str, type(None)),  # preset name: seed | w16 | w64 | bn; None for data_batch
    "pipeline": (str,),  # one of PIPELINES
    "dataset": (str,),  # "fixed-random-batch", "fashion-mnist", "synthetic-idx", ...
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # note: CPU-GPU sync point, on purpose


class Timed:
    """The callable given to ``benchmark.pedantic``: runs ``work``, then waits for the device.

    It also keeps the duration of its last call: under ``--benchmark-disable`` pytest-benchmark
    runs the callable once and keeps no statistics, so that one call is the measurement.
    """

    def __init__(self, work: Callable[[], object], device: torch.device) -> None:
        self.work = work
        self.device = device
        self.last_seconds: float | None = None

    def __call__(self) -> None:
        start = time.perf_counter()
        self.work()
        sync(self.device)
        self.last_seconds = time.perf_counter() - start


@dataclass(frozen=True)
class Budget:
    """How long each benchmark runs; see ``Budget.full`` and ``Budget.quick``."""

    cpu_rounds: int  # timed calls per CPU benchmark; the median is taken over them
    cuda_rounds: int
    warmup_rounds: int  # untimed calls first: allocator, cuDNN autotuning, caches
    cpu_images: int  # images per timed call of a CPU train step (steps = cpu_images // bs)
    cuda_images: int  # same on CUDA: many steps per call, so one sync is a small share
    epoch_steps: int  # batches of 64 in one "epoch" of the data-path benchmark
    epoch_rounds: int  # timed epochs (the seed's CPU epoch takes seconds)
    # Rounds feed the regression gate's rank test (bench/compare.py): with m and n rounds its
    # smallest p-value is 1 / C(m+n, m), 1/252 at 5 vs 5, 1/20 at 3 vs 3, 1/6 at 2 vs 2 (never
    # below 0.05). So the full and quick budgets give every case at least 3 rounds.

    @classmethod
    def full(cls) -> Budget:
        return cls(
            cpu_rounds=5,
            cuda_rounds=10,
            warmup_rounds=1,
            cpu_images=2048,
            cuda_images=16384,
            epoch_steps=200,
            epoch_rounds=5,
        )

    @classmethod
    def quick(cls) -> Budget:
        """Fewer rounds, the same work per call: its medians estimate the same seconds per call
        as a full run's (less precisely), so the two compare case by case."""
        return dataclasses.replace(cls.full(), cpu_rounds=3, cuda_rounds=5, epoch_rounds=3)

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
        )

    def rounds(self, device: torch.device) -> int:
        return self.cuda_rounds if device.type == "cuda" else self.cpu_rounds

    def steps(self, device: torch.device, batch_size: int) -> int:
        images = self.cuda_images if device.type == "cuda" else self.cpu_images
        return max(1, images // batch_size)


def median_seconds(benchmark: Any, timed: Timed) -> tuple[float, str]:
    """Seconds per call: the benchmark's median, or the one call timed by ``timed`` itself."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        return float(stats.stats.median), f"median of {stats.stats.rounds} rounds"
    if timed.last_seconds is None:  # pedantic did not call it: time one call here
        timed()
    assert timed.last_seconds is not None
    return timed.last_seconds, "one call (benchmark disabled)"


def record(
    benchmark: Any,
    timed: Timed,
    *,
    kind: str,
    images: int,
    batch_size: int,
    precision: str = "fp32",
    channels_last: bool,
    model: str | None,
    n_params: int | None,
    pipeline: str = "mnistcore",
    dataset: str,
    **extra: object,
) -> float:
    """Fill ``benchmark.extra_info`` after ``pedantic`` returned; returns images per second.

    ``images`` is the number of images one timed call processes.
    """
    seconds, timing = median_seconds(benchmark, timed)
    info: dict[str, object] = {
        "kind": kind,
        "images_per_second": images / seconds,
        "batch_size": batch_size,
        "device": timed.device.type,
        "device_name": device_name(timed.device),
        "precision": precision,
        "channels_last": channels_last,
        "threads": torch.get_num_threads(),
        "n_params": n_params,
        "model": model,
        "pipeline": pipeline,
        "dataset": dataset,
        "images_per_call": images,
        "seconds_per_call": seconds,
        "timing": timing,
        "torch": torch.__version__,
        "cpu_load_1min": os.getloadavg()[0],  # other work on the machine skews CPU figures
        **extra,
    }
    problems = extra_info_problems(info)
    if problems:
        raise AssertionError(f"bad extra_info for {kind}: {'; '.join(problems)}")
    benchmark.extra_info.update(info)
    return float(info["images_per_second"])  # type: ignore[arg-type]


def extra_info_problems(info: dict[str, object]) -> list[str]:
    """What is missing or mistyped in ``info`` against REQUIRED_FIELDS (empty: all good)."""
    problems = []
    for key, types in REQUIRED_FIELDS.items():
        if key not in info:
            problems.append(f"{key} missing")
        elif not isinstance(info[key], types) or (
            isinstance(info[key], bool) and bool not in types
        ):
            problems.append(f"{key}={info[key]!r} is not {' or '.join(t.__name__ for t in types)}")
    if info.get("kind") not in KINDS:
        problems.append(f"kind={info.get('kind')!r} is not one of {', '.join(KINDS)}")
    if info.get("pipeline") not in PIPELINES:
        problems.append(f"pipeline={info.get('pipeline')!r} is not one of {', '.join(PIPELINES)}")
    if info.get("precision") not in ("fp32", "bf16"):
        problems.append(f"precision={info.get('precision')!r} is not fp32 or bf16")
    ips = info.get("images_per_second")
    if isinstance(ips, float) and not ips > 0:
        problems.append(f"images_per_second={ips!r} is not > 0")
    return problems


def case_id(*parts: object) -> str:
    """``cpu-seed-bs64-fp32-cl``: the parametrize id; ``group_name`` drops the device."""
    return "-".join(str(p) for p in parts if p not in ("", None))


def group_name(kind: str, *parts: object) -> str:
    """``train_step[seed-bs64-fp32-cl]``: no device in it, so CPU and CUDA share the group."""
    return f"{kind}[{case_id(*parts)}]"


DATA_KINDS = ("data_batch", "data_epoch")  # the kinds measured for both PIPELINES


def data_path_speedups(infos: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """(kind, device) -> mnistcore img/s / seed img/s (= seed seconds per image / mnistcore's),
    from finished benchmarks' ``extra_info``, whatever order they ran in; a pair with one
    pipeline missing is left out."""
    speed = {
        (i["kind"], i["device"], i["pipeline"]): i["images_per_second"]
        for i in infos
        if i.get("kind") in DATA_KINDS and i.get("pipeline") in PIPELINES
    }
    return {
        (kind, device): ips / speed[kind, device, "seed"]
        for (kind, device, pipeline), ips in speed.items()
        if pipeline == "mnistcore" and (kind, device, "seed") in speed
    }


def speedup_lines(
    infos: Iterable[Mapping[str, Any]], targets: Mapping[str, float] | None = None
) -> list[str]:
    """The terminal summary's lines: each data-path ratio, and the images per call it compares.

    Both pipelines time the same images per call, so the ratio is per call (pytest-benchmark's
    table) and per image alike; were they to differ, the line says the ratio is per image only.
    """
    infos = list(infos)
    per_call = {
        (i["kind"], i["device"], i["pipeline"]): i.get("images_per_call")
        for i in infos
        if i.get("kind") in DATA_KINDS and i.get("pipeline") in PIPELINES
    }
    lines = []
    for (kind, device), ratio in sorted(data_path_speedups(infos).items()):
        seed, core = per_call[kind, device, "seed"], per_call[kind, device, "mnistcore"]
        if seed == core and seed is not None:
            basis = f"per call and per image ({seed:,} images per call each)"
        else:
            basis = f"per image (images per call: seed {seed}, mnistcore {core})"
        goal = (targets or {}).get(kind) if device == "cpu" else None
        aim = f"; goal on the 2-core CPU: >= {goal:g}x" if goal is not None else ""
        lines.append(f"{kind} on {device}: mnistcore is {ratio:.1f}x the seed, {basis}{aim}")
    return lines


def add_speedups(infos: list[MutableMapping[str, Any]]) -> None:
    """Set ``speedup_vs_seed`` (``data_path_speedups``) on each mnistcore data-path ``info``."""
    ratios = data_path_speedups(infos)
    for info in infos:
        ratio = ratios.get((info.get("kind"), info.get("device")))
        if info.get("pipeline") == "mnistcore" and ratio is not None:
            info["speedup_vs_seed"] = ratio
