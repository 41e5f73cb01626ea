"""reports: builds the HTML site from stored studies and benchmark runs (never trains).

``build_report(storage=...)`` (also ``python -m reports``) reads them through ``studies`` and
writes ``index.html``, ``benchmarks.html``, ``studies/*.html`` and ``plotly.min.js``; imported
on first use, so ``import reports`` does not pay for plotly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name != "build_report":
        raise AttributeError(f"module 'reports' has no attribute {name!r}")
    from reports.build import build_report

    return build_report
