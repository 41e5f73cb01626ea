"""`build_report`: stored artifacts -> extract -> figures -> pages -> the report folder."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
from sqlalchemy.engine import make_url

from reports.bench_data import (
    BenchData,
    BenchRun,
    data_path_table,
    headline,
    load_benchmarks,
    machine_rows,
    machine_summary,
    speedup_table,
)
from reports.bench_figures import bench_panels, trend_panel
from reports.page import render, study_href, write_site
from reports.panel import Panel
from reports.storage import DEFAULT_JOURNAL, read_storage
from reports.study_data import StudyReport, slugify, study_report
from reports.study_figures import study_panels

__all__ = ["build_report"]

AUTOSAVE = "pytest bench/ --benchmark-autosave"


@dataclass(frozen=True, eq=False)
class StudyPage:
    report: StudyReport
    panels: list[Panel]
    href: str


@dataclass(frozen=True, eq=False)
class RunSection:
    """The latest run of one machine on the benchmark page."""

    run: BenchRun
    summary: str
    panels: list[Panel]
    speedups: pd.DataFrame  # case, kind, cpu, cuda, speedup
    data_paths: pd.DataFrame  # group, kind, dataset, device, seed, mnistcore, speedup
    machine: list[tuple[str, str]]
    has_cuda: bool


def build_report(
    *,
    storage: str | None,
    study_names: list[str] | None = None,
    benchmarks_dir: Path = Path(".benchmarks"),
    out_dir: Path = Path("reports"),
) -> Path:
    """Build the HTML report from an Optuna storage and pytest-benchmark JSON files.

    Returns the path of index.html. Raises `reports.StorageError` when a storage the caller
    named cannot be read; every other gap (no study, no benchmarks, a damaged JSON file) ends
    up on the page as a note saying how to fill it, with a warning for each skipped file.
    """
    backend = read_storage(storage)
    notices: list[str] = []
    studies = _study_pages(backend, study_names, notices)
    bench = load_benchmarks(Path(benchmarks_dir))
    built = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    common = {
        "built": built,
        "storage_label": _storage_label(storage, backend),
        "benchmarks_dir": str(benchmarks_dir),
        "autosave": AUTOSAVE,
    }
    sections = [_run_section(bench, run) for run in _latest_per_machine(bench)]
    latest = bench.latest
    pages = [
        render(
            "index.html.j2", "index.html", studies=studies, notices=notices, bench=bench,
            latest=latest,
            latest_summary=machine_summary(latest) if latest else None,
            headline=headline(bench.rows_of(latest)) if latest else None,
            **common,
        ),
        render(
            "benchmarks.html.j2", "benchmarks.html", bench=bench, sections=sections,
            trend=trend_panel(bench), **common,
        ),
    ]
    pages += [
        render("study.html.j2", page.href, study=page.report, panels=page.panels, **common)
        for page in studies
    ]
    return write_site(Path(out_dir), pages)


def _study_pages(
    backend: optuna.storages.BaseStorage | None,
    wanted: list[str] | None,
    notices: list[str],
) -> list[StudyPage]:
    if backend is None:
        return []
    available = optuna.get_all_study_names(backend)
    pages: list[StudyPage] = []
    slugs: set[str] = set()
    for name in wanted or available:
        if name not in available:
            message = (
                f"study {name!r} is not in the storage (it holds: "
                f"{', '.join(map(repr, available)) or 'no study'})"
            )
            warnings.warn(message, stacklevel=3)
            notices.append(message)
            continue
        study = optuna.load_study(study_name=name, storage=backend)
        report = study_report(study, slug=_unique(slugify(name), slugs))
        pages.append(StudyPage(report, study_panels(study, report), study_href(report.slug)))
    return pages


def _latest_per_machine(bench: BenchData) -> list[BenchRun]:
    latest: dict[str, BenchRun] = {}
    for run in bench.runs:  # oldest first, so the last one seen wins
        latest[run.machine_id] = run
    return sorted(latest.values(), key=lambda r: bench.runs.index(r), reverse=True)


def _run_section(bench: BenchData, run: BenchRun) -> RunSection:
    rows = bench.rows_of(run)
    return RunSection(
        run=run,
        summary=machine_summary(run),
        panels=bench_panels(bench, run),
        speedups=speedup_table(rows),
        data_paths=data_path_table(rows),
        machine=machine_rows(run),
        has_cuda=bool((rows["device"] == "cuda").any()),
    )


def _unique(slug: str, taken: set[str]) -> str:
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _storage_label(storage: str | None, backend: object) -> str:
    if storage is None:
        return str(DEFAULT_JOURNAL) if backend is not None else "none"
    if "://" in storage:
        try:
            return make_url(storage).render_as_string(hide_password=True)
        except Exception:  # an unusual URL that still opened: show it without credentials
            return storage.split("://", 1)[0] + "://…"
    return storage
