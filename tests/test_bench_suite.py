"""The benchmark suite's own plumbing: the timed callable waits for CUDA, every case's
``extra_info`` is complete, the seed -> mnistcore ratios (in a real run as pytest runs it too),
and ``python -m bench.summary``. The cases run here on tiny data with a stand-in for
pytest-benchmark's fixture."""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import bench.test_data_path as data_path
import bench.test_train_step as train_step
from bench import summary
from bench.data_files import synthetic_idx
from bench.ratios import add_speedups, data_path_speedups, speedup_lines
from bench.timing import REQUIRED_FIELDS, Budget, Timed, extra_info_problems, record
from bench.workloads import (
    bench_config,
    epoch_subset,
    evaluation,
    mnistcore_batches,
    population_steps,
)
from mnistcore import build_model, load_dataset, seed_everything

ROOT = Path(__file__).resolve().parents[1]
# mnistcore's case first: the ratio must not need the seed to have run before it
CASES = [
    "bench/test_data_path.py::test_data_batch[cpu-mnistcore]",
    "bench/test_data_path.py::test_data_batch[cpu-seed]",
]
TINY = dataclasses.replace(Budget.smoke(), cpu_rounds=2, cpu_images=256, epoch_steps=5)
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


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Synthetic digits as IDX files, as ``pytest bench/ --bench-data=synthetic`` reads them."""
    return synthetic_idx(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="module")
def reordered_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Output and saved JSON of a short real benchmark run of the two data_batch cases."""
    out = tmp_path_factory.mktemp("bench") / "run.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *CASES,
        "-v",
        "--quick",  # 3 seed rounds, ~1 s in all
        "--bench-data=synthetic",
        f"--benchmark-json={out}",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, out


def test_speedup_does_not_depend_on_test_order(reordered_run):
    stdout, saved = reordered_run
    # The cases ran in the order given: mnistcore before the seed.
    assert stdout.index("[cpu-mnistcore] PASSED") < stdout.index("[cpu-seed] PASSED")
    # The terminal summary still has the ratio ...
    assert "data_batch on cpu: mnistcore is" in stdout
    # ... and so has the mnistcore case in the saved JSON, equal to the two img/s measured.
    infos = {
        b["extra_info"]["pipeline"]: b["extra_info"]
        for b in json.loads(saved.read_text())["benchmarks"]
    }
    ratio = infos["mnistcore"]["images_per_second"] / infos["seed"]["images_per_second"]
    assert infos["mnistcore"]["speedup_vs_seed"] == pytest.approx(ratio)
    assert "speedup_vs_seed" not in infos["seed"]


def test_speedups_need_both_pipelines():
    seed = {"kind": "data_epoch", "device": "cpu", "pipeline": "seed", "images_per_second": 2.0}
    fast = {**seed, "pipeline": "mnistcore", "images_per_second": 8.0}
    # Either order gives the same ratio; one side alone gives none.
    assert data_path_speedups([fast, seed]) == data_path_speedups([seed, fast])
    assert data_path_speedups([seed, fast]) == {("data_epoch", "cpu"): 4.0}
    assert data_path_speedups([fast]) == {}
    # Other kinds (a train step has no seed pipeline to compare with) are left out.
    assert data_path_speedups([{**fast, "kind": "train_step"}, seed]) == {}


def test_both_pipelines_time_the_same_images_per_call(reordered_run):
    stdout, saved = reordered_run
    stats = {b["extra_info"]["pipeline"]: b for b in json.loads(saved.read_text())["benchmarks"]}
    seed, core = stats["seed"], stats["mnistcore"]
    assert seed["extra_info"]["batches_per_call"] == core["extra_info"]["batches_per_call"]
    images = seed["extra_info"]["batches_per_call"] * seed["extra_info"]["batch_size"]
    assert seed["extra_info"]["images_per_call"] == core["extra_info"]["images_per_call"] == images
    # So pytest-benchmark's per-call ratio (its table) is the summary's per-image speed-up.
    per_call = seed["stats"]["median"] / core["stats"]["median"]
    assert core["extra_info"]["speedup_vs_seed"] == pytest.approx(per_call)
    assert f"the seed, per call and per image ({images:,} images per call each)" in stdout
    printed = stdout.split("data_batch on cpu: mnistcore is ", 1)[1].split("x", 1)[0]
    assert float(printed) == pytest.approx(per_call, abs=0.05)


def test_speedup_lines_label_what_they_compare():
    seed = {
        "kind": "data_batch",
        "device": "cpu",
        "pipeline": "seed",
        "images_per_second": 2.0,
        "images_per_call": 3200,
    }
    fast = {**seed, "pipeline": "mnistcore", "images_per_second": 40.0}
    # The same images per call: one figure, per call and per image alike, with the goal.
    assert speedup_lines([fast, seed], {"data_batch": 20.0}) == [
        "data_batch on cpu: mnistcore is 20.0x the seed, per call and per image "
        "(3,200 images per call each); goal on the 2-core CPU: >= 20x"
    ]
    # Different images per call: the line says its ratio is per image only.
    (line,) = speedup_lines([{**fast, "images_per_call": 32000}, seed])
    assert line.endswith("20.0x the seed, per image (images per call: seed 3200, mnistcore 32000)")


def test_summary_prints_the_saved_run(reordered_run, capsys):
    _, saved = reordered_run
    assert summary.main([str(saved), str(saved)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["group", "device", "pipeline", "img/s", "vs", "base"]
    # One line per benchmark, each 1.0x its own baseline.
    assert [line.split()[2] for line in table[1:]] == ["mnistcore", "seed"]
    assert all(line.endswith("1.0x") for line in table[1:])


def test_summary_help_and_errors(tmp_path, capsys):
    assert summary.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m bench.summary RUN.json")
    assert summary.main([]) == 2
    assert summary.main([str(tmp_path / "absent.json")]) == 2
    assert "no such benchmark JSON" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    assert summary.main([str(broken)]) == 2
    # One line naming the file, no traceback.
    err = capsys.readouterr().err
    assert str(broken) in err and err.count("\n") == 1


# --- CUDA: the timed function leaves no pending work -------------------------------------------


def _cuda_work(what: str, device: torch.device):  # type: ignore[no-untyped-def]
    config = bench_config("seed", device=device.type, precision="bf16", batch_size=256)
    data = load_dataset("synthetic").to(device)
    if what == "train_step":
        return population_steps([config], data, images=1024, calls=3)[1]
    if what == "inference":
        seed_everything(0)
        return evaluation(build_model(config, device), data.train, batch_size=512)
    return mnistcore_batches(data, 64, count=20)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("what", ["train_step", "inference", "data_batch"])
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


# --- timing and extra_info, on tiny data -------------------------------------------------------


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
        dataset="synthetic-digits",
    )
    # From the benchmark's median when it has stats; else from the one call it made.
    expected = 1000 / (0.5 if with_stats else timed.last_seconds)  # type: ignore[operator]
    assert ips == pytest.approx(expected)
    assert bench.extra_info["images_per_second"] == ips
    assert extra_info_problems(bench.extra_info) == []
    # A bool is not an int.
    bad = {**bench.extra_info, "batch_size": True}
    assert extra_info_problems(bad) == ["batch_size=True is not int"]


def test_extra_info_problems_names_the_bad_field() -> None:
    problems = " ".join(extra_info_problems({key: None for key in REQUIRED_FIELDS}))
    assert "kind=None" in problems and "batch_size=None" in problems
    # n_params and model may be None (data_batch has no model).
    assert "n_params" not in problems and "model=None is" not in problems


def _check(bench: StubBenchmark, kind: str) -> None:
    # Exactly one pedantic call per test, a group without the device, every field present.
    assert bench.pedantic_calls == 1
    assert bench.group and "cpu" not in bench.group and "cuda" not in bench.group
    assert extra_info_problems(bench.extra_info) == []
    assert bench.extra_info["kind"] == kind and bench.extra_info["device"] == "cpu"


@pytest.mark.parametrize("with_stats", [True, False], ids=["median", "disabled"])
def test_train_step_and_inference_fill_extra_info(with_stats: bool, synthetic) -> None:
    bench = StubBenchmark(with_stats=with_stats)
    resident = epoch_subset(synthetic, 1024)
    train_step.test_train_step(bench, TINY, resident, "cpu", "bn", 64, "fp32", True)
    _check(bench, "train_step")
    assert bench.extra_info["model"] == "bn" and bench.extra_info["batch_size"] == 64

    bench = StubBenchmark(with_stats=with_stats)
    train_step.test_inference(bench, TINY, "cpu", "seed", 2048, "fp32", True)
    _check(bench, "inference")


@pytest.mark.parametrize("kind", ["data_batch", "data_epoch"])
def test_data_path_fills_extra_info_and_the_ratio(
    kind: str, data_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_path, "BATCHES_PER_CALL", 4)
    run = getattr(data_path, f"test_{kind}")
    infos = {}
    for pipeline in ("mnistcore", "seed"):  # the ratio must not depend on this order
        bench = StubBenchmark(with_stats=True)
        run(bench, TINY, data_files, "cpu", pipeline)
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
