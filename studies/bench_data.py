"""Extract plain data from pytest-benchmark JSON files (`.benchmarks/<machine>/NNNN_*.json`).

A file that cannot be read is skipped with a warning naming it; the rest still counts.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "BenchData",
    "BenchRun",
    "Headline",
    "case_label",
    "data_path_table",
    "headline",
    "load_benchmarks",
    "machine_rows",
    "machine_summary",
    "population_table",
    "read_run",
    "speedup_table",
    "time_to_accuracy_table",
]

# extra_info keys copied into the rows frame (missing ones stay empty).
EXTRA_KEYS = (
    "kind",
    "images_per_second",
    "batch_size",
    "device",
    "device_name",
    "precision",
    "channels_last",
    "threads",
    "n_params",
    "model",
    "pipeline",
    "dataset",
    "mode",  # train_step: eager | graph; population_step: population | single (the baseline)
    "population",  # population_step: K, members trained as one module (1 for the baseline)
    "member_images_per_second",  # population_step: images one member trains per second
    "speedup_vs_single",  # population_step: member img/s / the single model's, same run
    # time_to_accuracy (bench/test_time_to_accuracy.py): training seconds to a test accuracy
    "recipe",  # tutorial | tuned | tutorial-dataloader
    "target",  # test accuracy to reach, a fraction
    "seconds_to_target",  # median over seeds of the training seconds; None: not reached
    "epochs_to_target",  # median epochs needed; None: not reached
    "epoch_cap",  # epochs a recipe may train before it counts as not reached
    "seeds",  # the seeds trained, one per round
    "seconds_per_seed",  # each seed's training seconds (to the target, or all it trained)
    "reached_per_seed",
    "epochs_per_seed",
    "speedup_vs_seed",  # the tutorial recipe's median seconds / this one's, same run
    "speedup_vs_seed_at_least",  # the same, a lower bound: the tutorial recipe did not reach it
)

# time_to_accuracy numbers read as floats (None when missing, e.g. not reached)
TTA_NUMBERS = (
    "target",
    "seconds_to_target",
    "epochs_to_target",
    "speedup_vs_seed",
    "speedup_vs_seed_at_least",
)

# Params that name the device; dropped from the case label so CPU and CUDA pair up.
DEVICE_VALUES = {"cpu", "cuda", "mps"}

# machine_info keys shown first (bench/conftest.py's hook adds most of them).
MACHINE_FIRST = (
    "node",
    "cpu_model",
    "cpu_cores",
    "cpu_threads",
    "gpu_name",
    "gpu_count",
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "cuda_available",
    "python_version",
    "system",
    "release",
)

ROW_COLUMNS = [
    "run",
    "machine_id",
    "started",
    "name",
    "group",
    "case",
    "median_s",
    "mean_s",
    "stddev_s",
    "rounds",
    "round_seconds",
    "fullname",
    "cpu_load_1min",
    *EXTRA_KEYS,
]


@dataclass(frozen=True)
class BenchRun:
    label: str  # "<machine>/<NNNN>", unique per file
    path: Path
    machine_id: str  # the folder pytest-benchmark names after the machine
    started: datetime | None
    commit: str | None
    dirty: bool
    machine_info: dict[str, Any] = field(repr=False)
    n_benchmarks: int = 0


@dataclass(frozen=True, eq=False)
class BenchData:
    runs: list[BenchRun]  # oldest first
    rows: pd.DataFrame = field(repr=False)  # one row per benchmark per run, ROW_COLUMNS
    skipped: list[tuple[Path, str]]  # files not read, and why

    @property
    def latest(self) -> BenchRun | None:
        return self.runs[-1] if self.runs else None

    def rows_of(self, run: BenchRun) -> pd.DataFrame:
        return self.rows[self.rows["run"] == run.label].reset_index(drop=True)


@dataclass(frozen=True)
class Headline:
    """CPU vs CUDA in one line: the fastest train step on each device of one run."""

    cpu_case: str | None
    cpu_images_per_second: float | None
    cuda_case: str | None
    cuda_images_per_second: float | None
    speedup_min: float | None  # over train-step cases measured on both devices (else all)
    speedup_max: float | None
    paired_cases: int


def load_benchmarks(directory: Path) -> BenchData:
    runs: list[BenchRun] = []
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[Path, str]] = []
    files = sorted(directory.rglob("*.json")) if directory.is_dir() else []
    for path in files:
        try:
            run, run_rows = _read_run(path, directory)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            warnings.warn(f"skipped benchmark file {path}: {reason}", stacklevel=2)
            skipped.append((path, reason))
            continue
        runs.append(run)
        rows.extend(run_rows)
    order = sorted(range(len(runs)), key=lambda i: _run_sort_key(runs[i]))
    runs = [runs[i] for i in order]
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
    return BenchData(runs=runs, rows=frame, skipped=skipped)


def read_run(path: Path) -> tuple[BenchRun, list[dict[str, Any]]]:
    """One pytest-benchmark JSON file, read as ``load_benchmarks`` reads each file of its folder:
    the run and one row per benchmark (``ROW_COLUMNS`` keys). The machine is the file's folder.

    Raises OSError, UnicodeDecodeError or ValueError when it is not such a file.
    """
    return _read_run(path, path.parent.parent)


def _read_run(path: Path, root: Path) -> tuple[BenchRun, list[dict[str, Any]]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise ValueError("not a pytest-benchmark file (no 'benchmarks' list)")
    relative = path.relative_to(root)
    machine_id = relative.parts[0] if len(relative.parts) > 1 else "unknown machine"
    commit_info = document.get("commit_info") or {}
    run = BenchRun(
        label=f"{machine_id}/{path.stem.split('_', 1)[0]}",
        path=path,
        machine_id=machine_id,
        started=_parse_datetime(document.get("datetime")),
        commit=commit_info.get("id"),
        dirty=bool(commit_info.get("dirty")),
        machine_info=document.get("machine_info") or {},
        n_benchmarks=len(document["benchmarks"]),
    )
    rows = [_row(run, bench) for bench in document["benchmarks"] if isinstance(bench, dict)]
    return run, rows


def _row(run: BenchRun, bench: dict[str, Any]) -> dict[str, Any]:
    stats = bench.get("stats") or {}
    extra = bench.get("extra_info") or {}
    row: dict[str, Any] = {
        "run": run.label,
        "machine_id": run.machine_id,
        "started": run.started,
        "name": bench.get("name", "?"),
        "group": bench.get("group"),
        "case": case_label(bench),
        "median_s": _number(stats.get("median")),
        "mean_s": _number(stats.get("mean")),
        "stddev_s": _number(stats.get("stddev")),
        "rounds": stats.get("rounds"),
        # every round's seconds when saved with --benchmark-save-data (bench.compare tests them)
        "round_seconds": tuple(_number(t) for t in stats.get("data") or ()),
        "fullname": bench.get("fullname", bench.get("name", "?")),
        "cpu_load_1min": _number(extra.get("cpu_load_1min")),
    }
    for key in EXTRA_KEYS:
        row[key] = extra.get(key)
    # Only the bench knows how many images one timed call processes, so no fallback here.
    row["images_per_second"] = _number(extra.get("images_per_second"))
    row["member_images_per_second"] = _number(extra.get("member_images_per_second"))
    row["speedup_vs_single"] = _number(extra.get("speedup_vs_single"))
    for key in TTA_NUMBERS:
        row[key] = _number(extra.get(key))
    for key in ("seeds", "seconds_per_seed", "reached_per_seed", "epochs_per_seed"):
        value = extra.get(key)
        row[key] = tuple(value) if isinstance(value, list) else None
    k = extra.get("population")
    row["population"] = k if isinstance(k, int) and not isinstance(k, bool) else None
    if row["device"] is None:
        params = bench.get("params") or {}
        row["device"] = next((v for v in params.values() if v in DEVICE_VALUES), None)
    return row


def case_label(bench: dict[str, Any]) -> str:
    """The benchmark's group (which leaves the device out, so CPU and CUDA of a case pair up);
    data-path cases add their pipeline, which their group does not name."""
    extra = bench.get("extra_info") or {}
    label = bench.get("group") or _name_without_device(str(bench.get("name", "?")))
    if str(extra.get("kind", "")).startswith("data_") and extra.get("pipeline"):
        label = f"{label} · {extra['pipeline']}"
    return str(label)


def _name_without_device(name: str) -> str:
    function, _, inside = name.partition("[")
    parts = [p for p in inside.rstrip("]").split("-") if p and p not in DEVICE_VALUES]
    return f"{function}[{'-'.join(parts)}]" if parts else function


def speedup_table(rows: pd.DataFrame) -> pd.DataFrame:
    """img/s on CPU and CUDA per case (median over runs given), and CUDA / CPU."""
    columns = ["case", "kind", "cpu", "cuda", "speedup"]
    measured = rows.dropna(subset=["images_per_second"])
    measured = measured[measured["device"].isin(["cpu", "cuda"])]
    if measured.empty:
        return pd.DataFrame(columns=columns)
    table = measured.pivot_table(
        index=["case", "kind"],
        columns="device",
        values="images_per_second",
        aggfunc="median",
        dropna=False,
    ).reset_index()
    for device in ("cpu", "cuda"):
        if device not in table:
            table[device] = float("nan")
    table = table.dropna(subset=["cpu", "cuda"])
    table["speedup"] = table["cuda"] / table["cpu"]
    table.columns.name = None
    return table[columns].sort_values("speedup", ascending=False).reset_index(drop=True)


def data_path_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Data cases: the seed's DataLoader pipeline vs mnistcore's in-memory tensors."""
    columns = ["group", "kind", "dataset", "device", "seed", "mnistcore", "speedup"]
    data = rows[rows["kind"].isin(["data_batch", "data_epoch"])]
    data = data.dropna(subset=["pipeline", "images_per_second"])
    if data.empty:
        return pd.DataFrame(columns=columns)
    data = data.assign(
        group=data["group"].fillna(data["kind"]),
        dataset=data["dataset"].fillna("?"),
        device=data["device"].fillna("?"),
    )
    table = data.pivot_table(
        index=["group", "kind", "dataset", "device"],
        columns="pipeline",
        values="images_per_second",
        aggfunc="median",
    ).reset_index()
    for pipeline in ("seed", "mnistcore"):
        if pipeline not in table:
            table[pipeline] = float("nan")
    table["speedup"] = table["mnistcore"] / table["seed"]
    table.columns.name = None
    return table[columns].reset_index(drop=True)


POPULATION_COLUMNS = [
    "device",
    "model",
    "batch_size",
    "population",
    "member_images_per_second",
    "single_images_per_second",
    "speedup_vs_single",
]


def population_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Population cases, one row per device, preset and K (median over the runs given): the
    population's member img/s, its single-model baseline's img/s (the same net and batch,
    trained one step at a time) and ``speedup_vs_single``, the ratio bench/timing.py saved."""
    cases = rows[rows["kind"] == "population_step"].dropna(
        subset=["device", "model", "population", "member_images_per_second"]
    )
    if cases.empty:
        return pd.DataFrame(columns=POPULATION_COLUMNS)
    net = ["device", "model", "batch_size"]
    single = (
        cases[cases["mode"] == "single"]
        .groupby(net, dropna=False)["member_images_per_second"]
        .median()
        .rename("single_images_per_second")
    )
    fused = cases[cases["mode"] == "population"]
    table = (
        fused.groupby([*net, "population"], dropna=False)[
            ["member_images_per_second", "speedup_vs_single"]
        ]
        .median()
        .reset_index()
        .join(single, on=net)
    )
    table["population"] = table["population"].astype(int)
    return (
        table[POPULATION_COLUMNS]
        .sort_values(["device", "model", "population"])
        .reset_index(drop=True)
    )


TIME_TO_ACCURACY_COLUMNS = [
    "dataset",
    "device",
    "recipe",
    "target",
    "reached",
    "seconds_to_target",
    "seconds_per_seed",
    "reached_per_seed",
    "epochs_to_target",
    "epochs_per_seed",
    "epoch_cap",
    "speedup_vs_seed",
    "speedup_vs_seed_at_least",
]
# bench/time_to_accuracy.py's rows, in its order: the baseline first
RECIPE_ORDER = ("tutorial", "tuned", "tutorial-dataloader")


def time_to_accuracy_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Time-to-accuracy cases, one row per dataset, device and recipe (the tutorial's recipe,
    the tuned one, the tutorial's DataLoader loop, then any other): the target, the median
    training seconds to it (NaN: not reached by the median seed), each seed's seconds and
    whether it reached the target, the epochs, and the ratios bench/conftest.py saved
    (``speedup_vs_seed``, or the lower bound ``speedup_vs_seed_at_least`` where the tutorial
    recipe did not reach the target). Meant for one run's rows; a case found twice keeps its
    last row."""
    cases = rows[rows["kind"] == "time_to_accuracy"].dropna(subset=["recipe", "target"])
    if cases.empty:
        return pd.DataFrame(columns=TIME_TO_ACCURACY_COLUMNS)
    cases = cases.assign(
        dataset=cases["dataset"].fillna("?"),
        device=cases["device"].fillna("?"),
        reached=cases["seconds_to_target"].notna(),
        order=[_recipe_rank(r) for r in cases["recipe"]],
    )
    cases = cases.drop_duplicates(["dataset", "device", "recipe", "target"], keep="last")
    table = cases.sort_values(["dataset", "device", "target", "order", "recipe"])
    return table[TIME_TO_ACCURACY_COLUMNS].reset_index(drop=True)


def _recipe_rank(recipe: str) -> int:
    return RECIPE_ORDER.index(recipe) if recipe in RECIPE_ORDER else len(RECIPE_ORDER)


def headline(rows: pd.DataFrame) -> Headline:
    measured = rows.dropna(subset=["images_per_second"])
    train = measured[measured["kind"] == "train_step"]
    if train.empty:
        train = measured

    def fastest(device: str) -> tuple[str | None, float | None]:
        on_device = train[train["device"] == device]
        if on_device.empty:
            return None, None
        top = on_device.loc[on_device["images_per_second"].idxmax()]
        return str(top["case"]), float(top["images_per_second"])

    cpu_case, cpu_speed = fastest("cpu")
    cuda_case, cuda_speed = fastest("cuda")
    speedups = speedup_table(rows)
    if (speedups["kind"] == "train_step").any():
        speedups = speedups[speedups["kind"] == "train_step"]
    ratios = speedups["speedup"]
    return Headline(
        cpu_case=cpu_case,
        cpu_images_per_second=cpu_speed,
        cuda_case=cuda_case,
        cuda_images_per_second=cuda_speed,
        speedup_min=float(ratios.min()) if len(ratios) else None,
        speedup_max=float(ratios.max()) if len(ratios) else None,
        paired_cases=len(ratios),
    )


def machine_rows(run: BenchRun) -> list[tuple[str, str]]:
    """machine_info flattened to (key, value) rows; long lists such as CPU flags left out."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            if len(value) <= 4 and all(not isinstance(v, dict | list) for v in value):
                rows.append((prefix, ", ".join(str(v) for v in value)))
        elif value not in (None, ""):
            rows.append((prefix, str(value)))

    walk("", run.machine_info)
    first = {key: i for i, key in enumerate(MACHINE_FIRST)}
    rows.sort(key=lambda row: first.get(row[0], len(first)))  # stable: the rest keep order
    rows.append(("commit", f"{run.commit or '?'}{' (dirty)' if run.dirty else ''}"))
    rows.append(("file", str(run.path)))
    return rows


def machine_summary(run: BenchRun) -> str:
    """One line: host, CPU, GPU (torch facts come from bench/conftest.py's machine-info hook)."""
    info = run.machine_info
    cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
    parts = [str(info.get("node") or run.machine_id)]
    cpu_name = info.get("cpu_model") or cpu.get("brand_raw")
    if cpu_name:
        cores = info.get("cpu_cores") or cpu.get("count")
        named = cores and "core" not in str(cpu_name)  # mnistcore's name already says it
        parts.append(f"{cpu_name} ({cores} cores)" if named else str(cpu_name))
    if info.get("gpu_name"):
        count = info.get("gpu_count")
        parts.append(f"{count}× {info['gpu_name']}" if count and count > 1 else info["gpu_name"])
    else:
        parts.append("no GPU")
    if info.get("torch_version"):
        parts.append(f"torch {info['torch_version']}")
    return " · ".join(parts)


def _run_sort_key(run: BenchRun) -> tuple[str, str]:
    stamp = run.started.isoformat() if run.started else ""
    return (stamp, run.label)


def _parse_datetime(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)
