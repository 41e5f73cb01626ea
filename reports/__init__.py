"""The HTML report: Optuna studies and pytest-benchmark runs, read from stored artifacts only.

`build_report(storage=...)` (also `python -m reports`) reads an Optuna storage and the JSON
files under `.benchmarks/`, and writes `index.html`, `benchmarks.html`, `studies/*.html` and
`plotly.min.js` into the output folder. It never trains and never imports torch.
"""

from reports.build import build_report
from reports.storage import DEFAULT_JOURNAL, StorageError

__all__ = ["DEFAULT_JOURNAL", "StorageError", "build_report"]
