"""Options, fixtures and hooks of the benchmark suites: the machine-info hook stamps torch,
CUDA and GPU facts into the saved JSON; the ratios within one run (bench/ratios.py) are taken
once every case has finished, into the saved JSON and the terminal summary."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
import torch
from pytest_benchmark.utils import parse_fraction

from bench.data_files import DataFiles, fashion_mnist, synthetic_idx
from bench.ratios import add_speedups, population_lines, speedup_lines, tta_lines
from bench.timing import Budget
from bench.workloads import epoch_subset
from mnistcore import Dataset, available_cores, configure_threads, device_name, load_dataset

NO_CUDA = (
    "CUDA not available here (torch.cuda.is_available() is False): CPU cases only; "
    "run bench/gpu_check.sh on a GPU machine for the CUDA cases"
)
# extra_info of every benchmark test that passed, in the order they ran (under
# --benchmark-disable pytest-benchmark keeps none, but record() still fills extra_info)
FINISHED = pytest.StashKey[list[dict]]()
TARGETS = {"data_batch": 20.0, "data_epoch": 3.5}  # the goals on the 2-core CPU
# (preset, K) -> the population's goal over K single-model steps on the 2-core CPU
POPULATION_TARGETS = {("study", 8): 1.3, ("seed", 16): 1.6}
# training images resident on the device for the train-step and population cases: 16 batches
# of 1024, so even the largest batch checks its loss at an epoch's end only every 16 steps
RESIDENT_TRAIN = 16384


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mnist bench")
    group.addoption(
        "--quick",
        action="store_true",
        help="run only the benchmarks marked 'quick', with fewer rounds (same work per round)",
    )
    group.addoption(
        "--bench-data",
        choices=("auto", "fashion-mnist", "synthetic"),
        default="auto",
        help="IDX files for the data-path suite: Fashion-MNIST when present (auto), "
        "or synthetic digits written to a temporary folder",
    )
    group.addoption(
        "--tta-target",
        type=parse_fraction,
        help="test accuracy the time-to-accuracy cases train to, for every dataset (default: "
        "89%% on fashion-mnist, 97%% on mnist-5k; 0.5 under --benchmark-disable)",
    )
    group.addoption(
        "--tta-seeds",
        type=_positive,
        help="seeds per time-to-accuracy case, the figure is their median (default 3; 1 under "
        "--benchmark-disable)",
    )
    group.addoption(
        "--tta-threads",
        type=_positive,
        help="torch CPU threads of the time-to-accuracy cases (default: one per core; 1 on a "
        "shared machine, where 2 threads on the 2 busy cores of a VM run 10-30x slower)",
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FINISHED] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not torch.cuda.is_available() and item.get_closest_marker("cuda") is not None:
            item.add_marker(pytest.mark.skip(reason=NO_CUDA))
    if config.getoption("--quick"):  # leave out the benchmarks not marked quick
        slow = [
            item
            for item in items
            if "benchmark" in getattr(item, "fixturenames", ())
            and item.get_closest_marker("quick") is None
        ]
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item not in slow]


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    machine_info.update(
        torch_version=torch.__version__,
        cuda_version=torch.version.cuda,  # the CUDA torch was built with
        cudnn_version=torch.backends.cudnn.version() if cuda else None,
        cuda_available=cuda,
        gpu_name=gpus[0] if gpus else None,
        gpu_count=len(gpus),
        gpu_names=gpus,
        cpu_model=device_name(torch.device("cpu")),
        cpu_cores=available_cores(),
        cpu_threads=torch.get_num_threads(),
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    benchmark = getattr(item, "funcargs", {}).get("benchmark")
    if call.when == "call" and report.passed and benchmark is not None:
        item.config.stash[FINISHED].append({**benchmark.extra_info, "nodeid": item.nodeid})
    return report


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session):  # type: ignore[no-untyped-def]
    # After a Ctrl-C (bench/gpu_check.sh's time limit sends SIGINT) pytest-benchmark still writes
    # its JSON, but fails on a benchmark cut off before its first round and keeps one cut off
    # later with too few rounds: leave out every benchmark whose test did not pass.
    passed = {info["nodeid"] for info in session.config.stash.get(FINISHED, [])}
    benchmarks = getattr(getattr(session.config, "_benchmarksession", None), "benchmarks", ())
    for bench in benchmarks:
        if bench.fullname not in passed:
            bench.fixture.has_error = True  # pytest-benchmark's JSON leaves these out
    yield


def pytest_benchmark_update_json(output_json: dict) -> None:
    # the JSON's own extra_info, so a saved run's ratios always match its saved img/s
    add_speedups([bench.setdefault("extra_info", {}) for bench in output_json["benchmarks"]])


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    finished = config.stash.get(FINISHED, [])
    sections = (
        ("seed -> mnistcore speed-ups, this run", speedup_lines(finished, TARGETS)),
        (
            "population -> single-model speed-ups (member-img/s / img/s), this run",
            population_lines(finished, POPULATION_TARGETS),
        ),
        ("time to accuracy (training seconds, test accuracy), this run", tta_lines(finished)),
    )
    for title, lines in sections:
        if not lines:
            continue
        if config.getoption("benchmark_disable"):
            lines.append("(--benchmark-disable: one short call each, no warm-up; indicative only)")
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _every_core() -> Iterator[None]:
    # One torch thread per available core, as fit() sets it (recorded in extra_info), again
    # after a case that changed it (--tta-threads)
    configure_threads(0)
    yield
    configure_threads(0)


@pytest.fixture(scope="session")
def budget(pytestconfig: pytest.Config) -> Budget:
    if pytestconfig.getoption("benchmark_disable"):
        return Budget.smoke()
    return Budget.quick() if pytestconfig.getoption("--quick") else Budget()


@pytest.fixture(scope="session")
def data_files(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> DataFiles:
    """Fashion-MNIST's IDX files when present, else synthetic IDX files: never skips."""
    choice = pytestconfig.getoption("--bench-data")
    if choice in ("auto", "fashion-mnist"):
        files = fashion_mnist()
        if files is not None:
            return files
        if choice == "fashion-mnist":
            pytest.fail(
                "--bench-data fashion-mnist: not found under data/FashionMNIST/raw nor in the "
                "Debian package; apt-get install dataset-fashion-mnist, or use --bench-data auto"
            )
    return synthetic_idx(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="session")
def resident_data() -> Dataset:
    """mnistcore's synthetic digits cut to RESIDENT_TRAIN training images (whole batches of
    64 to 1024, so every call trains exactly its images); moved to each device on first use."""
    data = load_dataset("synthetic", synthetic_size=RESIDENT_TRAIN * 10 // 9 + 64)
    return epoch_subset(data, RESIDENT_TRAIN)
