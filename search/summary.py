"""The end-of-study summary: the extract of the study (studies/study_data.py), printed as a few
small text tables. The HTML report draws the same extract, so the two agree."""

from __future__ import annotations

from typing import Any

import pandas as pd

from studies.confirmation import BUDGET_SHARE, Confirmation, baseline_sentence
from studies.formatting import export_command, format_epochs, train_command
from studies.intervals import format_accuracy, format_spread
from studies.study_data import BestTrial, StudyReport


def format_summary(
    report: StudyReport, *, run_lines: list[str] | None = None, storage: str | None = None
) -> str:
    """A few small tables as text; ``run_lines`` (this run's timing) are appended, then the
    exact command that exports the result (``storage``: the study's, None for the default)."""
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
                "val accuracy": format_accuracy(best.values[0], report.split_size("val")),
                "test accuracy": format_accuracy(best.test_accuracy, report.split_size("test")),
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
                report.objective_names[0]: format_accuracy(b.values[0], report.split_size("val")),
                **{
                    n: _fmt(v)
                    for n, v in zip(report.objective_names[1:], b.values[1:], strict=True)
                },
                "test accuracy": format_accuracy(b.test_accuracy, report.split_size("test")),
                **_params(b),
            }
            for b in report.front
        ]
        out.append("Pareto front (val accuracy vs training img/s):")
        out.append(pd.DataFrame(rows).to_string(index=False))
    if report.confirmation is not None:
        out.extend(_confirmation(report.confirmation))
    out.extend(run_lines or [])
    if report.best is not None:
        out.append(f"export it: {export_command(storage=storage, study_name=report.name)}")
    return "\n".join(out)


def _confirmation(confirmation: Confirmation) -> list[str]:
    """The confirmed table (best mean val first), the winner, the winner's curse, the cost."""
    diverged = any(c.diverged for c in confirmation.configs)
    rows = [
        {
            "trial": c.trial,
            "val mean ± sd (95% interval)": format_spread(c.val) if c.val else "all diverged",
            "test mean ± sd (95% interval)": format_spread(c.test) if c.test else "n/a",
            "the search's single val": format_accuracy(c.search_val, c.n_val),
            **({"diverged": f"{len(c.diverged)} of {len(c.seeds)}"} if diverged else {}),
        }
        for c in confirmation.configs
    ]
    out = ["confirmed (the top configurations retrained with new seeds):"]
    out.append(pd.DataFrame(rows).to_string(index=False))
    winner = confirmation.winner
    if winner is None or winner.val is None:
        out.append("no confirmed winner: every seed of every configuration diverged")
    else:
        out.append(
            f"confirmed winner: trial {winner.trial}'s configuration, val "
            f"{format_spread(winner.val)}"
            + (f" ({len(winner.diverged)} seed(s) diverged)" if winner.diverged else "")
        )
    if confirmation.curse is not None:
        above = "above" if confirmation.curse >= 0 else "below"
        out.append(
            f"winner's curse: the search's best val is {abs(confirmation.curse) * 100:.2f} "
            f"points {above} its configuration's confirmed mean"
        )
    if confirmation.baseline is not None:
        out.append(f"baseline: {baseline_sentence(confirmation.baseline)}")
    share = confirmation.cost_share
    if share is not None:  # measured; the plan's estimate was logged once, before training
        settings = confirmation.settings
        auto = f" (auto's budget: {BUDGET_SHARE:.0%})" if settings.get("auto") else ""
        out.append(
            f"confirmation: {confirmation.seconds:.1f} s of training"
            + (" (baseline included)" if confirmation.baseline is not None else "")
            + f" = {share:.0%} of the search's {settings['search_seconds']:.1f} s{auto}"
        )
    if confirmation.settings.get("cut"):
        out.append(f"cut to end within --timeout: {confirmation.settings['cut']}")
    return out


def _whole_config(best: BestTrial) -> list[str]:
    """The pinned rest of the best trial's configuration, and the command that trains it."""
    if not best.config:
        return []  # a study from before the whole configuration was recorded
    pinned = [f"{k}={_fmt(v)}" for k, v in best.config.items() if k not in best.params]
    return [f"pinned: {' '.join(pinned)}", f"train it again: {train_command(best.config)}"]


def _params(best: BestTrial) -> dict[str, str]:
    return {k: _fmt(v) for k, v in best.params.items()}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
