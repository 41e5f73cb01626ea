"""The HTML report: Optuna studies and pytest-benchmark runs, read from stored artifacts only.

`build_report(storage=...)` (also `python -m reports`) reads an Optuna storage and the JSON
files under `.benchmarks/`, and writes `index.html`, `benchmarks.html`, `studies/*.html` and
`plotly.min.js` into the output folder. It never trains and never imports torch.

The search imports three of its torch-free modules, so each job has one home: `storage` (the
one opener of an Optuna storage, for writing and for reading), `study_data` (the extract of a
study that the report draws and the search's terminal summary prints) and `trial_record` (the
names of the attributes stored on each trial). `build_report` is imported on first use (PEP
562): a search worker that only needs `trial_record` does not pay for plotly.
"""

from __future__ import annotations

from typing import Any

from reports.storage import DEFAULT_JOURNAL, StorageError

__all__ = ["DEFAULT_JOURNAL", "StorageError", "build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from reports.build import build_report

        globals()[name] = build_report
        return build_report
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
