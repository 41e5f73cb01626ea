"""The end-of-study summary: the report's extract of the study (reports/study_data.py), printed
as a few small text tables. The HTML report draws the same extract, so the two agree."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports.study_data import BestTrial, StudyReport, format_epochs, train_command


def format_summary(report: StudyReport, *, run_lines: list[str] | None = None) -> str:
    """A few small tables as text; ``run_lines`` (this run's timing) are appended."""
    out = [f"study {report.name!r}"]
    c = report.counts
    counts = {
        "COMPLETE": c.complete,
        "PRUNED": c.pruned,
        "FAIL": c.failed,
        "RUNNING": c.running,
        "WAITING": c.waiting,
    }
    shown = {state: n for state, n in counts.items() if n} or counts
    out.append(pd.DataFrame([shown], index=["trials"]).to_string())
    ledger = report.ledger
    if ledger.epochs_without_pruning:
        out.append(
            f"epochs trained: {format_epochs(ledger.epochs_spent)} of "
            f"{format_epochs(ledger.epochs_without_pruning)} a "
            f"no-pruning run would have spent ({1 - ledger.saved_fraction:.0%}) over "
            f"{ledger.trials} complete or pruned trials"
        )
    if report.best is None:
        out.append("no completed trial yet")
    elif not report.is_multi_objective:
        best = report.best
        table = pd.Series(
            {
                "trial": best.number,
                "val accuracy": _pct(best.values[0]),
                "test accuracy": _pct(best.test_accuracy),
                "epochs": best.epochs_run,
                "seconds": f"{best.seconds or 0.0:.1f}",
                **_params(best),
            },
            name="best trial",
        )
        out.append(table.to_frame().to_string())
        out.extend(_whole_config(best))
    else:
        rows = [
            {
                "trial": b.number,
                **{n: _fmt(v) for n, v in zip(report.objective_names, b.values, strict=True)},
                "test accuracy": _pct(b.test_accuracy),
                **_params(b),
            }
            for b in report.front
        ]
        out.append("Pareto front (val accuracy vs training img/s):")
        out.append(pd.DataFrame(rows).to_string(index=False))
    out.extend(run_lines or [])
    return "\n".join(out)


def _whole_config(best: BestTrial) -> list[str]:
    """The pinned rest of the best trial's configuration, and the command that trains it."""
    if not best.config:
        return []  # a study from before the whole configuration was recorded
    pinned = [f"{k}={_fmt(v)}" for k, v in best.config.items() if k not in best.params]
    return [f"pinned: {' '.join(pinned)}", f"train it again: {train_command(best.config)}"]


def _params(best: BestTrial) -> dict[str, str]:
    return {k: _fmt(v) for k, v in best.params.items()}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
