"""The one extract of an Optuna study (counts, best trial, pruning ledger, tables): the report
draws it as HTML, the search's summary (search/summary.py) prints it as text, so the two cannot
disagree. Pure over `FrozenTrial`s and the study's attributes, so tests build trials by hand.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from studies import trial_record as rec
from studies.confirmation import Confirmation, extract_confirmation

# re-exported: search/summary.py reads them from here
from studies.study_tables import (
    Population,
    images_per_second,
    learning_curves,
    shared_populations,
    throughput_points,
    timeline_rows,
    trials_table,
)

# Names the search gives its objectives (study user attr `objectives`) -> labels on the page.
OBJECTIVE_LABELS = {"accuracy": "val accuracy", "throughput": "img/s"}


@dataclass(frozen=True)
class TrialCounts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def total(self) -> int:
        return self.complete + self.pruned + self.failed + self.running + self.waiting


@dataclass(frozen=True)
class PruningLedger:
    """Epochs the study trained vs those it would have trained with no pruning (fractional
    where trials were pruned within an epoch, int when whole)."""

    trials: int = 0  # complete + pruned trials whose epoch counts are known
    pruned_trials: int = 0
    epochs_spent: float = 0
    epochs_without_pruning: float = 0  # sum over the same trials of max_epochs
    unknown: int = 0  # complete/pruned trials with no max_epochs or epoch count recorded

    @property
    def epochs_saved(self) -> float:
        return rec.as_epochs(self.epochs_without_pruning - self.epochs_spent) or 0

    @property
    def saved_fraction(self) -> float | None:
        if self.epochs_without_pruning == 0:
            return None
        return self.epochs_saved / self.epochs_without_pruning


@dataclass(frozen=True)
class BestTrial:
    """A complete trial worth showing: the best one, or one of a Pareto front."""

    number: int
    values: tuple[float, ...]  # in the order of the study's objectives
    params: dict[str, Any]
    test_accuracy: float | None
    best_epoch: float | None  # 1-based; fractional where trials report within an epoch
    best_epoch_value: float | None  # the val accuracy it reported then (values[0]: the last)
    images_per_second: float | None
    epochs_run: float | None  # int when whole
    seconds: float | None  # the trial's wall time
    # the whole TrainConfig (user attr `config`); {} in studies from before it was recorded
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class StudyReport:
    name: str
    slug: str
    directions: tuple[str, ...]  # "maximize" / "minimize", one per objective
    objective_names: tuple[str, ...]  # e.g. ("val accuracy", "img/s")
    dataset: str | None
    dataset_source: str | None
    max_epochs: int | None
    steps_per_epoch: int  # report steps per epoch (study user attr; 1 in older studies)
    counts: TrialCounts
    best: BestTrial | None
    front: tuple[BestTrial, ...]  # two-objective studies: the Pareto front, best first
    wall_seconds: float | None  # first trial start -> last trial end
    ledger: PruningLedger
    stamps: dict[str, Any]
    fail_reasons: list[tuple[int, str]]
    populations: tuple[Population, ...]  # those of 2 or more trials, in order of start
    confirmation: Confirmation | None  # the top configurations retrained with new seeds
    trials: pd.DataFrame = field(repr=False)  # one row per trial, best first
    curves: pd.DataFrame = field(repr=False)  # trial, state, step, epoch, value
    throughput: pd.DataFrame = field(repr=False)  # trial, state, val_accuracy, images_per_second
    timeline: pd.DataFrame = field(repr=False)  # trial bars, populations together (timeline_rows)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.directions) > 1

    def split_size(self, split: str) -> int | None:
        """Images in ``split`` ("val", "test") as the trials recorded it (for intervals)."""
        sizes = self.stamps.get(rec.SPLIT_SIZES)
        size = sizes.get(split) if isinstance(sizes, dict) else None
        return size if isinstance(size, int) and size > 0 else None


def slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug or "study"


def study_report(study: optuna.Study, *, slug: str | None = None) -> StudyReport:
    """The extract of a live (or loaded) study."""
    return extract_study(
        name=study.study_name,
        directions=study.directions,
        user_attrs=study.user_attrs,
        trials=study.get_trials(deepcopy=False),
        metric_names=study.metric_names,
        slug=slug,
    )


def extract_study(
    *,
    name: str,
    directions: Sequence[StudyDirection],
    user_attrs: dict[str, Any],
    trials: Sequence[FrozenTrial],
    metric_names: Sequence[str] | None = None,
    slug: str | None = None,
) -> StudyReport:
    study_max_epochs = rec.as_int(user_attrs.get(rec.MAX_EPOCHS))
    per_epoch = steps_per_epoch(user_attrs)
    names = objective_names(user_attrs, len(directions), metric_names)
    best = best_trial(trials, directions, steps_per_epoch=per_epoch)
    first_attrs = best_attrs_source(trials, best)
    multi = len(directions) > 1
    by_number = {t.number: t for t in trials}
    front = [_shown(by_number[n], multi, per_epoch) for n in pareto_numbers(trials, directions)]
    return StudyReport(
        name=name,
        slug=slug or slugify(name),
        directions=tuple(d.name.lower() for d in directions),
        objective_names=names,
        dataset=user_attrs.get(rec.DATASET) or first_attrs.get(rec.DATASET),
        dataset_source=user_attrs.get(rec.DATASET_SOURCE) or first_attrs.get(rec.DATASET_SOURCE),
        max_epochs=study_max_epochs,
        steps_per_epoch=per_epoch,
        counts=trial_counts(trials),
        best=best,
        front=tuple(sorted(front, key=lambda b: (-b.values[0], b.number))) if multi else (),
        wall_seconds=wall_seconds(trials),
        ledger=pruning_ledger(
            trials, default_max_epochs=study_max_epochs, steps_per_epoch=per_epoch
        ),
        stamps={k: first_attrs[k] for k in rec.STAMP_KEYS if first_attrs.get(k) is not None},
        fail_reasons=[(t.number, fail_reason(t)) for t in trials if t.state == TrialState.FAIL],
        populations=shared_populations(trials),
        confirmation=extract_confirmation(user_attrs, trials),
        trials=trials_table(trials, directions, names),
        curves=learning_curves(trials, steps_per_epoch=per_epoch),
        throughput=throughput_points(trials, multi_objective=multi),
        timeline=timeline_rows(trials),
    )


def steps_per_epoch(user_attrs: dict[str, Any]) -> int:
    """Report steps per epoch of a study; 1 when not recorded (older studies)."""
    return max(rec.as_int(user_attrs.get(rec.STEPS_PER_EPOCH)) or 1, 1)


def objective_names(
    user_attrs: dict[str, Any], n_objectives: int, metric_names: Sequence[str] | None = None
) -> tuple[str, ...]:
    declared = user_attrs.get(rec.OBJECTIVES)
    if isinstance(declared, list) and len(declared) == n_objectives:
        return tuple(OBJECTIVE_LABELS.get(str(n), str(n)) for n in declared)
    if metric_names and len(metric_names) == n_objectives:
        return tuple(metric_names)
    if n_objectives == 1:
        return ("val accuracy",)
    return tuple(f"objective {i}" for i in range(n_objectives))


def trial_counts(trials: Sequence[FrozenTrial]) -> TrialCounts:
    n = Counter(t.state for t in trials)
    return TrialCounts(n[TrialState.COMPLETE], n[TrialState.PRUNED], n[TrialState.FAIL],
                       n[TrialState.RUNNING], n[TrialState.WAITING])  # fmt: skip


def best_trial(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    *,
    steps_per_epoch: int = 1,
) -> BestTrial | None:
    """Best complete trial on the first objective (val accuracy), whatever the others say."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        return None
    sign = 1.0 if directions[0] == StudyDirection.MAXIMIZE else -1.0
    best = max(complete, key=lambda t: (sign * t.values[0], -t.number))
    return _shown(best, len(directions) > 1, steps_per_epoch)


def _shown(trial: FrozenTrial, multi_objective: bool, steps_per_epoch: int) -> BestTrial:
    best_epoch = rec.as_epochs(trial.user_attrs.get(rec.BEST_EPOCH))
    at_best = None if best_epoch is None else round(best_epoch * steps_per_epoch)
    config = trial.user_attrs.get(rec.CONFIG)
    return BestTrial(
        number=trial.number,
        values=tuple(trial.values),
        params=dict(trial.params),
        test_accuracy=rec.as_number(trial.user_attrs.get(rec.TEST_ACCURACY)),
        best_epoch=best_epoch,
        best_epoch_value=trial.intermediate_values.get(at_best),
        images_per_second=images_per_second(trial, multi_objective=multi_objective),
        epochs_run=epochs_run(trial, steps_per_epoch=steps_per_epoch),
        seconds=rec.trial_seconds(trial),  # from its own group's start (mixed populations)
        config=dict(config) if isinstance(config, dict) else {},
    )


def best_attrs_source(trials: Sequence[FrozenTrial], best: BestTrial | None) -> dict[str, Any]:
    """User attrs of the best trial, else of the latest trial that has any (for stamps)."""
    number = best.number if best else max((t.number for t in trials if t.user_attrs), default=-1)
    return dict(next((t.user_attrs for t in trials if t.number == number), {}))


def pareto_numbers(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> list[int]:
    """Numbers of the complete trials no other complete trial dominates."""
    signs = [1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in directions]
    points = [
        (t.number, [s * v for s, v in zip(signs, t.values, strict=True)])
        for t in trials
        if t.state == TrialState.COMPLETE and t.values and len(t.values) == len(signs)
    ]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and a != b

    return [n for n, p in points if not any(dominates(q, p) for _, q in points)]


def wall_seconds(trials: Sequence[FrozenTrial]) -> float | None:
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    if not starts or not ends:
        return None
    return max((max(ends) - min(starts)).total_seconds(), 0.0)


def fail_reason(trial: FrozenTrial) -> str:
    reason = trial.user_attrs.get(rec.FAIL_REASON) or trial.system_attrs.get(rec.FAIL_REASON)
    return str(reason) if reason else "no reason recorded"


def epochs_run(trial: FrozenTrial, *, steps_per_epoch: int = 1) -> float | None:
    """Epochs the trial trained (fractional when pruned within an epoch; int when whole)."""
    recorded = rec.as_epochs(trial.user_attrs.get(rec.EPOCHS_RUN))
    if recorded is not None:
        return recorded
    if trial.intermediate_values:  # steps are 1-based, steps_per_epoch to an epoch
        return rec.as_epochs(max(trial.intermediate_values) / steps_per_epoch)
    return None


def pruning_ledger(
    trials: Sequence[FrozenTrial],
    *,
    default_max_epochs: int | None = None,
    steps_per_epoch: int = 1,
) -> PruningLedger:
    counted = pruned = spent = budget = unknown = 0
    for trial in trials:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        ran = epochs_run(trial, steps_per_epoch=steps_per_epoch)
        cap = rec.as_int(trial.user_attrs.get(rec.MAX_EPOCHS))
        cap = default_max_epochs if cap is None else cap
        if ran is None or cap is None:
            unknown += 1
            continue
        counted += 1
        pruned += trial.state == TrialState.PRUNED
        spent += ran
        budget += max(cap, ran)
    return PruningLedger(
        trials=counted,
        pruned_trials=pruned,
        epochs_spent=rec.as_epochs(spent) or 0,
        epochs_without_pruning=rec.as_epochs(budget) or 0,
        unknown=unknown,
    )
