"""The HTML report: Optuna studies and pytest-benchmark runs, read from stored artifacts only.

`build_report(storage=...)` (also `python -m reports`) reads an Optuna storage and the JSON
files under `.benchmarks/`, and writes `index.html`, `benchmarks.html`, `studies/*.html` and
`plotly.min.js` into the output folder. It never trains and never imports torch.

The search imports three of its torch-free modules, so each job has one home: `storage` (the
one opener of an Optuna storage, for writing and for reading), `study_data` (the extract of a
study that the report draws and the search's terminal summary prints) and `trial_record` (the
names of the attributes stored on each trial). The package's names are imported on first use
(PEP 562): a search worker that only needs `trial_record` does not pay for plotly, and
`bench.summary` reads benchmark files through `bench_data` without optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> its module, imported on first use: `python -m bench.summary` reads benchmark
# JSON through reports.bench_data without optuna (absent on GPU images) or plotly
_MODULE_OF = {
    "DEFAULT_JOURNAL": "reports.storage",
    "StorageError": "reports.storage",
    "build_report": "reports.build",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'reports' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
