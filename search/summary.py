"""The end-of-study summary: extract plain data from the study, then format it with pandas."""

from __future__ import annotations

from typing import Any, NamedTuple

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class BestTrial(NamedTuple):
    number: int
    values: tuple[float, ...]  # in the order of the study's objectives
    params: dict[str, Any]
    test_accuracy: float | None
    epochs_run: int
    seconds: float


class Summary(NamedTuple):
    study_name: str
    objectives: tuple[str, ...]
    counts: dict[str, int]  # trial state name -> number of trials, every state present
    best: list[BestTrial]  # the best trial, or the Pareto front of a two-objective study
    epochs_spent: int  # epochs actually trained, over finished trials
    epochs_without_pruning: int  # finished trials x max epochs


def summarize(study: optuna.Study) -> Summary:
    """Plain numbers about ``study`` (works on any storage, any number of objectives)."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: 0 for state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING)}
    for t in trials:
        counts[t.state.name] += 1
    finished = [t for t in trials if t.state in FINISHED]
    study_epochs = study.user_attrs.get("max_epochs", 0)
    spent = sum(_epochs_run(t) for t in finished)
    full = sum(int(t.user_attrs.get("max_epochs", study_epochs)) for t in finished)
    objectives = tuple(study.user_attrs.get("objectives", ["accuracy"]))
    return Summary(
        study_name=study.study_name,
        objectives=objectives,
        counts=counts,
        best=[_best(t) for t in _best_trials(study)],
        epochs_spent=spent,
        epochs_without_pruning=full,
    )


def format_summary(summary: Summary, *, run_lines: list[str] | None = None) -> str:
    """A few small tables as text; ``run_lines`` (this run's timing) are appended."""
    out = [f"study {summary.study_name!r}"]
    counts = pd.DataFrame([summary.counts], index=["trials"])
    counts = counts.loc[:, (counts != 0).any()] if counts.to_numpy().any() else counts
    out.append(counts.to_string())
    if summary.epochs_without_pruning:
        share = summary.epochs_spent / summary.epochs_without_pruning
        out.append(
            f"epochs trained: {summary.epochs_spent} of {summary.epochs_without_pruning} a "
            f"no-pruning run would have spent ({share:.0%})"
        )
    if not summary.best:
        out.append("no completed trial yet")
    elif len(summary.objectives) == 1:
        best = summary.best[0]
        table = pd.Series(
            {
                "trial": best.number,
                "val accuracy": _pct(best.values[0]),
                "test accuracy": _pct(best.test_accuracy),
                "epochs": best.epochs_run,
                "seconds": f"{best.seconds:.1f}",
                **{k: _fmt(v) for k, v in best.params.items()},
            },
            name="best trial",
        )
        out.append(table.to_frame().to_string())
    else:
        rows = [
            {
                "trial": b.number,
                **{f"{o}": _fmt(v) for o, v in zip(summary.objectives, b.values, strict=True)},
                "test accuracy": _pct(b.test_accuracy),
                **{k: _fmt(v) for k, v in b.params.items()},
            }
            for b in sorted(summary.best, key=lambda b: -b.values[0])
        ]
        out.append("Pareto front (val accuracy vs training img/s):")
        out.append(pd.DataFrame(rows).to_string(index=False))
    out.extend(run_lines or [])
    return "\n".join(out)


def _best_trials(study: optuna.Study) -> list[FrozenTrial]:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return list(study.best_trials)


def _best(t: FrozenTrial) -> BestTrial:
    return BestTrial(
        number=t.number,
        values=tuple(t.values or ()),
        params=dict(t.params),
        test_accuracy=t.user_attrs.get("test_accuracy"),
        epochs_run=_epochs_run(t),
        seconds=t.duration.total_seconds() if t.duration else 0.0,
    )


def _epochs_run(t: FrozenTrial) -> int:
    # trials written by older code may lack the attribute; their reports still count epochs
    return int(t.user_attrs.get("epochs_run", len(t.intermediate_values)))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
