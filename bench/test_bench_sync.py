"""The harness itself: the timed callable waits for CUDA, and extra_info is complete.

These are plain tests (no ``benchmark`` fixture), so ``--quick`` keeps them and a saved run
holds only real measurements.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from types import SimpleNamespace

import pytest
import torch

import bench.test_data_path as data_path
import bench.test_train_step as train_step
from bench.timing import (
    REQUIRED_FIELDS,
    Budget,
    Timed,
    add_speedups,
    data_path_speedups,
    extra_info_problems,
    record,
)
from bench.workloads import (
    capture_train_step,
    evaluation,
    fixed_batch,
    graph_steps,
    mnistcore_batches,
    preset_config,
    train_steps,
)
from mnistcore import Split, build_model, build_optimizer, load_dataset, seed_everything

TINY = Budget(
    cpu_rounds=2,
    cuda_rounds=2,
    warmup_rounds=0,
    cpu_images=256,
    cuda_images=1024,
    epoch_steps=5,
    epoch_rounds=2,
)
SPIN_CYCLES = 200_000_000  # torch.cuda._sleep cycles: ~0.1 s of GPU time at ~2 GHz


class StubBenchmark:
    """Stands in for pytest-benchmark's fixture: warm-up and timed rounds, a median.

    ``with_stats=False`` behaves as under ``--benchmark-disable``: one untimed call, no stats.
    """

    def __init__(self, *, with_stats: bool) -> None:
        self.with_stats = with_stats
        self.extra_info: dict[str, object] = {}
        self.group: str | None = None
        self.stats: SimpleNamespace | None = None
        self.pedantic_calls = 0

    def pedantic(self, target, rounds=1, warmup_rounds=0, iterations=1):  # type: ignore[no-untyped-def]
        self.pedantic_calls += 1
        if not self.with_stats:
            return target()
        for _ in range(warmup_rounds):
            target()
        seconds = []
        for _ in range(rounds):
            start = time.perf_counter()
            target()
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        self.stats = SimpleNamespace(stats=SimpleNamespace(median=median, rounds=rounds))


# --- CUDA: the timed function leaves no pending work -------------------------------------------


def _cuda_work(what: str, device: torch.device):  # type: ignore[no-untyped-def]
    config = preset_config("seed", device=device.type, precision="bf16")
    seed_everything(0)
    model = build_model(config, device)
    optimizer = build_optimizer(model, config)
    x, y = fixed_batch(1024, device)
    if what == "train_step":
        return train_steps(model, optimizer, x, y, steps=4)
    if what == "graph":
        return graph_steps(capture_train_step(model, optimizer, x, y), steps=4)
    if what == "inference":
        return evaluation(model, Split(x, y), batch_size=512)
    data = load_dataset("synthetic", synthetic_size=2000).to(device)
    return mnistcore_batches(data, 64, count=20)


@pytest.mark.cuda
@pytest.mark.parametrize("what", ["train_step", "graph", "inference", "data_batch"])
def test_cuda_timed_function_synchronizes(what: str) -> None:
    device = torch.device("cuda")
    timed = Timed(_cuda_work(what, device), device)
    timed()  # warm-up: cuDNN autotuning, allocations
    stream = torch.cuda.current_stream(device)

    spin_start, spin_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
    spin_start.record()
    torch.cuda._sleep(SPIN_CYCLES)
    spin_end.record()
    # The spin is queued and still running: the checks below can fail.
    assert not stream.query()
    timed()
    # When the timed function returns, the device has no pending work ...
    assert stream.query() and spin_end.query()
    done = torch.cuda.Event()
    done.record()
    assert done.query()
    # ... and its wall time covers the queued GPU work, not just the kernel launches.
    spin_seconds = spin_start.elapsed_time(spin_end) / 1000
    assert timed.last_seconds is not None and timed.last_seconds >= 0.5 * spin_seconds


def _captured_step(device: torch.device):  # type: ignore[no-untyped-def]
    config = preset_config("seed", device=device.type)
    seed_everything(0)
    model = build_model(config, device)
    # Only the returned step refers to the model, optimizer and batch once this returns.
    return capture_train_step(model, build_optimizer(model, config), *fixed_batch(256, device))


@pytest.mark.cuda
def test_captured_step_owns_what_its_graph_uses() -> None:
    device = torch.device("cuda")
    step = _captured_step(device)
    gc.collect()
    # Were the step's tensors freed, the allocator could hand their memory out again: fill some.
    junk = [torch.full((1 << 20,), float("nan"), device=device) for _ in range(16)]
    losses = []
    for _ in range(100):
        step.replay()
        losses.append(step.loss.item())
    del junk
    # Replays train the held model on the held batch: the loss stays finite and falls
    # (100 eager steps of this setup take it from 2.29 to 0.02 on the CPU).
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0]
    assert next(step.model.parameters()).is_cuda and step.x.shape == (256, 1, 28, 28)


# --- CPU: timing and extra_info, everywhere ----------------------------------------------------


def test_timed_keeps_the_duration_of_its_last_call() -> None:
    timed = Timed(lambda: time.sleep(0.02), torch.device("cpu"))
    assert timed.last_seconds is None
    timed()
    assert timed.last_seconds is not None and timed.last_seconds >= 0.02


@pytest.mark.parametrize("with_stats", [True, False], ids=["median", "disabled"])
def test_record_computes_images_per_second(with_stats: bool) -> None:
    bench = StubBenchmark(with_stats=with_stats)
    timed = Timed(lambda: time.sleep(0.01), torch.device("cpu"))
    bench.pedantic(timed, rounds=3)
    if with_stats:
        bench.stats.stats.median = 0.5  # type: ignore[union-attr]
    ips = record(
        bench,
        timed,
        kind="train_step",
        images=1000,
        batch_size=100,
        channels_last=True,
        model="seed",
        n_params=10,
        dataset="fixed-random-batch",
    )
    # From the benchmark's median when it has stats; else from the one call it made.
    expected = 1000 / (0.5 if with_stats else timed.last_seconds)  # type: ignore[operator]
    assert ips == pytest.approx(expected)
    assert bench.extra_info["images_per_second"] == ips
    assert extra_info_problems(bench.extra_info) == []


def test_extra_info_problems_names_the_bad_field() -> None:
    info = {key: None for key in REQUIRED_FIELDS}
    problems = " ".join(extra_info_problems(info))
    assert "kind=None" in problems and "batch_size=None" in problems
    # n_params and model may be None (data_batch has no model).
    assert "n_params" not in problems and "model=None is" not in problems
    # A bool is not an int.
    good = {
        "kind": "train_step",
        "images_per_second": 1.0,
        "batch_size": True,
        "device": "cpu",
        "device_name": "x",
        "precision": "fp32",
        "channels_last": True,
        "threads": 2,
        "n_params": 1,
        "model": "seed",
        "pipeline": "mnistcore",
        "dataset": "d",
    }
    assert extra_info_problems(good) == ["batch_size=True is not int"]


def _check(bench: StubBenchmark, kind: str) -> None:
    # Exactly one pedantic call per test, a group without the device, every field present.
    assert bench.pedantic_calls == 1
    assert bench.group and "cpu" not in bench.group and "cuda" not in bench.group
    assert extra_info_problems(bench.extra_info) == []
    assert bench.extra_info["kind"] == kind and bench.extra_info["device"] == "cpu"


@pytest.mark.parametrize("with_stats", [True, False], ids=["median", "disabled"])
def test_train_step_and_inference_fill_extra_info(with_stats: bool) -> None:
    bench = StubBenchmark(with_stats=with_stats)
    train_step.test_train_step(bench, TINY, "cpu", "bn", 64, "fp32", True, "eager")
    _check(bench, "train_step")
    assert bench.extra_info["model"] == "bn" and bench.extra_info["batch_size"] == 64

    bench = StubBenchmark(with_stats=with_stats)
    train_step.test_inference(bench, TINY, "cpu", "seed", 2048, "fp32", True, "eager")
    _check(bench, "inference")


@pytest.mark.parametrize("kind", ["data_batch", "data_epoch"])
def test_data_path_fills_extra_info_and_the_ratio(
    kind: str, seed_dataset, mnistcore_dataset, data_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_path, "BATCHES_PER_CALL", 4)
    run = getattr(data_path, f"test_{kind}")
    infos = {}
    for pipeline in ("mnistcore", "seed"):  # the ratio must not depend on this order
        bench = StubBenchmark(with_stats=True)
        run(bench, TINY, seed_dataset, mnistcore_dataset, data_files, "cpu", pipeline)
        _check(bench, kind)
        infos[pipeline] = bench.extra_info
    assert infos["seed"]["pipeline"] == "seed" and infos["mnistcore"]["pipeline"] == "mnistcore"
    assert infos["seed"]["dataset"] == data_files.name
    # Both pipelines time the same images per call: pytest-benchmark's per-call ratio and the
    # per-image speed-up below are one figure.
    assert infos["seed"]["images_per_call"] == infos["mnistcore"]["images_per_call"]
    per_call = infos["seed"]["seconds_per_call"] / infos["mnistcore"]["seconds_per_call"]
    # Computed from the finished cases (as the JSON hook does): the mnistcore case carries its
    # speed-up over the seed measured in the same run, even though it ran first.
    add_speedups(list(infos.values()))
    ratio = infos["mnistcore"]["images_per_second"] / infos["seed"]["images_per_second"]
    assert infos["mnistcore"]["speedup_vs_seed"] == pytest.approx(ratio) == per_call
    assert "speedup_vs_seed" not in infos["seed"]
    assert data_path_speedups(infos.values()) == {(kind, "cpu"): pytest.approx(ratio)}


def test_cpu_and_cuda_cases_share_groups() -> None:
    groups: dict[str, set[str]] = {}
    for case in train_step.train_cases() + train_step.inference_cases():
        device, *rest = case.values
        kind = "inference" if rest[1] == train_step.EVAL_BATCH else "train_step"
        groups.setdefault(train_step.case_group(kind, *rest), set()).add(device)
    # Every CPU case has its CUDA twin in the same group, so --benchmark-group-by=group
    # shows them side by side.
    assert all(devices == {"cpu", "cuda"} for devices in groups.values() if "cpu" in devices)
    assert not any("cpu" in g or "cuda" in g for g in groups)
