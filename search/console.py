"""What the study prints while it runs: log lines, the progress bar, one line per trial."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from studies import trial_record as rec


def setup_logging(*, quiet: bool) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("search", "mnistcore", "studies"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
        logger.propagate = False
    # our own line per trial replaces Optuna's; its warnings still show
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def progress_bar(total: int, *, quiet: bool) -> tqdm:
    return tqdm(
        total=total,
        desc="trials",
        unit="trial",
        file=sys.stderr,
        # TQDM_DISABLE: set by --workers N for its children, whose bars would collide
        disable=quiet or bool(os.environ.get("TQDM_DISABLE")),
        dynamic_ncols=True,
    )


def trial_line(trial: FrozenTrial, names: list[str]) -> str:
    """``trial 3 PRUNED val 0.9125, 1/9 epochs, 2.1 s: lr=0.1 width=8 [reason]``."""
    attrs = trial.user_attrs
    epochs = (
        f"{attrs.get(rec.EPOCHS_RUN, len(trial.intermediate_values))}/"
        f"{attrs.get(rec.MAX_EPOCHS, '?')} epochs"
    )
    if trial.state == TrialState.COMPLETE and trial.values:
        value = f"val {trial.values[0]:.4f}"
        if len(trial.values) > 1:
            value += f" {trial.values[1]:,.0f} img/s"
        if rec.TEST_ACCURACY in attrs:
            value += f" (test {attrs[rec.TEST_ACCURACY]:.4f})"
    elif trial.intermediate_values:
        last = max(trial.intermediate_values)
        value = f"val {trial.intermediate_values[last]:.4f}"
    else:
        value = "no value"
    reason = f" [{attrs[rec.FAIL_REASON]}]" if rec.FAIL_REASON in attrs else ""
    params = " ".join(f"{n}={_short(trial.params[n])}" for n in names if n in trial.params)
    seconds = f"{rec.trial_seconds(trial) or 0.0:.1f} s"
    return (
        f"trial {trial.number} {trial.state.name} {value}, {epochs}, {seconds}: {params}{reason}"
    )


class _TqdmHandler(logging.Handler):
    """Writes log lines above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
