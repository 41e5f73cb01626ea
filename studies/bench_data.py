"""Read pytest-benchmark JSON files (`.benchmarks/<machine>/NNNN_*.json`) into plain data: the
runs, one row per benchmark (tables of them in ``bench_tables``), and the machine each ran on.
A file that cannot be read is skipped with a warning naming it; the rest still counts.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from studies.trial_record import as_int, as_number

# extra_info keys copied into the rows frame (missing ones stay empty); what each means is said
# where bench/ writes it: timing.py (REQUIRED_FIELDS, POPULATION_FIELDS), ratios.py (speedup_vs_*)
# and time_to_accuracy.py (result_info)
EXTRA_KEYS = (
    "cpu_load_1min", "kind", "images_per_second", "batch_size", "device", "device_name",
    "precision", "channels_last", "threads", "n_params", "model", "pipeline", "dataset",
    "mode", "population", "member_images_per_second", "speedup_vs_single",  # population_step
    "recipe", "target", "seconds_to_target", "epochs_to_target", "epoch_cap", "seeds",
    "seconds_per_seed", "reached_per_seed", "epochs_per_seed", "speedup_vs_seed",
    "speedup_vs_seed_at_least",  # time_to_accuracy
)  # fmt: skip
# extra_info read as numbers (None when missing or not one, e.g. a target not reached) ...
NUMBER_KEYS = {"cpu_load_1min", "images_per_second", "member_images_per_second",
               "speedup_vs_single", "target", "seconds_to_target", "epochs_to_target",
               "speedup_vs_seed", "speedup_vs_seed_at_least"}  # fmt: skip
# ... and as tuples (one entry per seed)
LIST_KEYS = {"seeds", "seconds_per_seed", "reached_per_seed", "epochs_per_seed"}

# Params that name the device; dropped from the case label so CPU and CUDA pair up.
DEVICE_VALUES = {"cpu", "cuda", "mps"}

# machine_info keys shown first (bench/conftest.py's hook adds most of them).
MACHINE_FIRST = ("node", "cpu_model", "cpu_cores", "cpu_threads", "gpu_name", "gpu_count",
                 "torch_version", "cuda_version", "cudnn_version", "cuda_available",
                 "python_version", "system", "release")  # fmt: skip

ROW_COLUMNS = ["run", "machine_id", "started", "name", "group", "case", "median_s", "mean_s",
               "stddev_s", "rounds", "round_seconds", "fullname", *EXTRA_KEYS]  # fmt: skip


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


def load_benchmarks(directory: Path) -> BenchData:
    runs: list[BenchRun] = []
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[Path, str]] = []
    files = sorted(directory.rglob("*.json")) if directory.is_dir() else []
    for path in files:
        try:
            run, run_rows = read_run(path, directory)
        except (OSError, ValueError) as error:  # ValueError: UnicodeDecodeError too
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            warnings.warn(f"skipped benchmark file {path}: {reason}", stacklevel=2)
            skipped.append((path, reason))
            continue
        runs.append(run)
        rows.extend(run_rows)
    runs.sort(key=lambda run: (run.started.isoformat() if run.started else "", run.label))
    return BenchData(runs=runs, rows=pd.DataFrame(rows, columns=ROW_COLUMNS), skipped=skipped)


def read_run(path: Path, root: Path | None = None) -> tuple[BenchRun, list[dict[str, Any]]]:
    """One pytest-benchmark JSON file: the run and one row per benchmark (``ROW_COLUMNS`` keys);
    the machine is its folder under ``root`` (default: the folder's parent). Raises OSError or
    ValueError when it is not such a file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise ValueError("not a pytest-benchmark file (no 'benchmarks' list)")
    relative = path.relative_to(root or path.parent.parent)
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
        "median_s": as_number(stats.get("median")),
        "mean_s": as_number(stats.get("mean")),
        "stddev_s": as_number(stats.get("stddev")),
        "rounds": stats.get("rounds"),
        # every round's seconds when saved with --benchmark-save-data (bench.compare tests them)
        "round_seconds": tuple(as_number(t) for t in stats.get("data") or ()),
        "fullname": bench.get("fullname", bench.get("name", "?")),
    }
    # Only the bench knows how many images one timed call processes, so no fallback here.
    for key in EXTRA_KEYS:
        value = extra.get(key)
        if key in NUMBER_KEYS:
            value = as_number(value)
        elif key in LIST_KEYS:
            value = tuple(value) if isinstance(value, list) else None
        row[key] = value
    row["population"] = as_int(row["population"])
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


def _parse_datetime(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):  # TypeError: not a string
        return None
