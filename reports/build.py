"""`build_report`: stored artifacts -> extract -> figures -> pages -> the report folder."""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import optuna

from reports.bench_figures import bench_panels, trend_panel
from reports.compare_figures import compare_panels
from reports.page import render, study_href, write_site
from reports.panel import Panel
from reports.study_figures import study_panels
from studies.bench_data import BenchData, BenchRun, load_benchmarks, machine_rows, machine_summary
from studies.bench_tables import data_path_table, headline, speedup_table
from studies.compare_data import comparison_names, read_runs, summary_table
from studies.formatting import export_command, hide_password, storage_option
from studies.storage import DEFAULT_JOURNAL, StorageError, read_storage
from studies.study_data import StudyReport, slugify, study_report

AUTOSAVE = "pytest bench/ --benchmark-autosave"
DEFAULT_BENCHMARKS = Path(".benchmarks")  # pytest-benchmark's autosave folder
DEFAULT_OUT = Path("reports")


class StudyPage(NamedTuple):
    report: StudyReport
    panels: list[Panel]


def build_report(
    *,
    storage: str | None,
    study_names: list[str] | None = None,
    benchmarks_dir: Path = DEFAULT_BENCHMARKS,
    out_dir: Path = DEFAULT_OUT,
) -> Path:
    """Build the HTML report from an Optuna storage and pytest-benchmark JSON files; returns
    the path of index.html. Raises StorageError, before writing, when a storage named cannot be
    read or lacks a study named; every other gap (no study, no benchmarks, a damaged JSON file)
    is a note on the page saying how to fill it, and a warning for each skipped file."""
    backend = read_storage(storage)
    # backend is None only when no storage was named and the default journal is absent
    label = "none" if backend is None else hide_password(storage or str(DEFAULT_JOURNAL))
    studies = _study_pages(backend, study_names, label)
    bench = load_benchmarks(Path(benchmarks_dir))
    common = {
        "built": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "storage_label": label,
        "benchmarks_dir": str(benchmarks_dir),
        "autosave": AUTOSAVE,
        "rebuild": rebuild_command(
            storage=storage,
            study_names=study_names,
            benchmarks_dir=benchmarks_dir,
            out_dir=out_dir,
        ),
    }
    sections = [_run_section(bench, run) for run in _latest_per_machine(bench)]
    latest = bench.latest
    pages = [
        render(
            "index.html.j2", "index.html", studies=studies, bench=bench,
            latest=latest,
            latest_summary=machine_summary(latest) if latest else None,
            headline=headline(bench.rows_of(latest)) if latest else None,
            **common,
        ),
        render(
            "benchmarks.html.j2", "benchmarks.html", bench=bench, sections=sections,
            trend=trend_panel(bench), **common,
        ),
    ]  # fmt: skip
    if backend is not None and (names := comparison_names(backend)):
        pages.append(
            render(
                "compare.html.j2",
                "compare.html",
                comparisons=[_comparison(backend, n) for n in names],
                **common,
            )
        )
    pages += [
        render("study.html.j2", study_href(entry.report.slug), study=entry.report,
               panels=entry.panels, **common,
               export=export_command(storage=storage, study_name=entry.report.name))
        for entry in studies
    ]  # fmt: skip
    return write_site(Path(out_dir), pages)


def _comparison(backend: optuna.storages.BaseStorage, name: str) -> dict[str, Any]:
    runs = read_runs(backend, name)
    budgets = {b for r in runs if (b := r.budget) is not None}
    return {"name": name, "runs": len(runs), "budget": max(budgets, default=None),
            "done": all(r.done for r in runs), "table": summary_table(runs).drop(
                columns=["flags"]), "panels": compare_panels(runs)}  # fmt: skip


def rebuild_command(
    *, storage: str | None, study_names: list[str] | None, benchmarks_dir: Path, out_dir: Path
) -> str:
    """The `python -m reports` line that builds this report again: only the options that
    differ from the defaults, a database URL with its password hidden."""
    words = ["python", "-m", "reports", *storage_option(storage)]
    for name in dict.fromkeys(study_names or []):
        words += ["--study", name]
    if Path(benchmarks_dir) != DEFAULT_BENCHMARKS:
        words += ["--benchmarks", str(benchmarks_dir)]
    if Path(out_dir) != DEFAULT_OUT:
        words += ["--out", str(out_dir)]
    return shlex.join(words)


def _study_pages(
    backend: optuna.storages.BaseStorage | None, wanted: list[str] | None, storage_label: str
) -> list[StudyPage]:
    """A page per study; a named study the storage does not hold is the user's mistake."""
    wanted = list(dict.fromkeys(wanted or []))  # --study a --study a: one page
    if backend is None:
        if wanted:
            raise StorageError(
                f"study {wanted[0]!r} cannot be read: there is no journal file at "
                f"{DEFAULT_JOURNAL}; pass --storage with the storage that holds it, or run "
                "`python -m search.study` first"
            )
        return []
    available = optuna.get_all_study_names(backend)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise StorageError(_not_stored(unknown, storage_label, available))
    pages: list[StudyPage] = []
    slugs: set[str] = set()
    for name in wanted or available:
        study = optuna.load_study(study_name=name, storage=backend)
        report = study_report(study, slug=_unique(slugify(name), slugs))
        pages.append(StudyPage(report, study_panels(study, report)))
    return pages


def _latest_per_machine(bench: BenchData) -> list[BenchRun]:
    latest = {run.machine_id: run for run in bench.runs}  # oldest first: the last one wins
    return sorted(latest.values(), key=bench.runs.index, reverse=True)


def _run_section(bench: BenchData, run: BenchRun) -> dict[str, Any]:
    """The latest run of one machine on the benchmark page."""
    rows = bench.rows_of(run)
    return {
        "run": run,
        "summary": machine_summary(run),
        "panels": bench_panels(bench, run),
        "speedups": speedup_table(rows),  # case, kind, cpu, cuda, speedup
        "data_paths": data_path_table(rows),  # group, kind, dataset, device, seed, mnistcore, ...
        "machine": machine_rows(run),
        "has_cuda": bool((rows["device"] == "cuda").any()),
    }


def _unique(slug: str, taken: set[str]) -> str:
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _not_stored(unknown: list[str], storage_label: str, available: list[str]) -> str:
    names = ", ".join(map(repr, unknown))
    which = f"study {names} is" if len(unknown) == 1 else f"studies {names} are"
    if not available:
        return (
            f"{which} not in {storage_label}; it holds no study (run `python -m search.study` "
            "first, or pass --storage with the storage that holds it)"
        )
    held = ", ".join(map(repr, available))
    return f"{which} not in {storage_label}; it holds: {held} (use --study with one of them)"
