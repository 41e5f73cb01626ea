"""What ``--timeout`` keeps free for the confirmation: no trial starts unless the longest so far
and the least confirmation still fit (``reserve``), and a running population stops once its
rest and its own confirmation, were it the best, would end after the deadline (``too_late``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnistcore import Dataset, Population, TrainConfig
from search.confirm import MIN_SEEDS, Baseline, ConfirmSpec, plan
from studies import trial_record as rec

LATE = "stopped by --timeout"  # a trial's fail reason when finishing it would overrun
PROBE_IMAGES = 2048  # images the baseline is timed on before a --timeout run
PROBE_MARGIN = 1.2  # evaluation after each epoch, and noise
log = logging.getLogger("search")


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
        per_seed = full  # and the baseline trains on the same seeds
        if self.baseline is not None:
            per_seed += full if self.baseline.seed_seconds is None else self.baseline.seed_seconds
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


def timed_baseline(
    baseline: Baseline, study: optuna.Study, data: Dataset, base: TrainConfig
) -> Baseline:
    """``baseline`` with its ``seed_seconds`` for the study's data and epochs (``base``): from
    its record when it trained on this study, else timed on PROBE_IMAGES images after a warm-up
    (measured ~1 s; an overestimate rather than under)."""
    config = baseline.config.replace(
        dataset=data.name, epochs=base.epochs, precision=base.precision, device=base.device,
        threads=base.threads, synthetic_size=base.synthetic_size,
    )  # fmt: skip
    old = study.user_attrs.get(rec.BASELINE)
    if isinstance(old, dict) and old.get("seeds") and old.get("config") == config.to_dict():
        return replace(baseline, seed_seconds=float(old["seconds"]) / len(old["seeds"]))
    population, total = Population([config], data), len(data.train.labels) * config.epochs
    population.train(min(config.batch_size * 4, total // 4))  # warm-up: allocator, threads
    clock, before = time.perf_counter(), population.images_seen
    population.train(max(min(PROBE_IMAGES, total - before - config.batch_size), 1))
    per_image = (time.perf_counter() - clock) / (population.images_seen - before)
    seconds = per_image * len(data.train.labels) * config.epochs * PROBE_MARGIN
    log.info("baseline: %.0f s a seed here, estimated from %d images", seconds, PROBE_IMAGES)
    return replace(baseline, seed_seconds=seconds)


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
