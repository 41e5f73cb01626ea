"""What ``--timeout`` keeps free for the confirmation: no trial starts unless the longest so far
and the least confirmation still fit (``reserve``), and a running population stops once its
rest and its own confirmation, were it the best, would end after the deadline (``too_late``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.confirm import MIN_SEEDS, Baseline, ConfirmSpec, plan
from studies import trial_record as rec

LATE = "stopped by --timeout"  # a trial's fail reason when finishing it would overrun


@dataclass(frozen=True)
class Deadline:
    study: optuna.Study
    confirmation: ConfirmSpec  # what the run (or a --workers parent) confirms afterwards
    baseline: Baseline | None
    at: float | None  # time.monotonic() when --timeout ends (None: no limit)

    def reserve(self) -> float:
        """Seconds of what plan() may cut the confirmation to (2 seeds of the best)."""
        if not self.confirmation.top:
            return 0.0
        return plan(self.study, self.confirmation, seconds=0.0, baseline=self.baseline).estimate

    def too_late(self, left: float, full: float) -> str | None:
        """Why a population ``left`` seconds from its end (``full`` in all) must stop now, once
        the study has a complete trial to confirm instead; None while it fits."""
        per_seed = full * (2 if self.baseline else 1)  # the baseline trains on the same seeds
        need = left + (MIN_SEEDS * per_seed if self.confirmation.top else 0)
        if (
            self.at is None
            or time.monotonic() + need < self.at
            or not self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ):
            return None
        return (
            f"{LATE}: its last {left:.0f} s and its confirmation ({need - left:.0f} s) would "
            "end after the deadline"
        )


def stopped_line(ended: Sequence[FrozenTrial]) -> str | None:
    """The summary's line naming the trials ``too_late`` stopped, if any."""
    stopped = [t.number for t in ended if str(t.user_attrs.get(rec.FAIL_REASON)).startswith(LATE)]
    if not stopped:
        return None
    many = len(stopped) > 1
    return (
        f"--timeout stopped trial{'s' if many else ''} {', '.join(map(str, stopped))} early: "
        f"finishing and confirming {'them' if many else 'it'} would have ended after the deadline"
    )
