"""Extract plain data from one Optuna study: counts, best trial, pruning ledger, tables.

The one extract of a study: the report draws it as HTML, the search's end-of-run summary
(search/summary.py) prints it as text, so the two cannot disagree. Everything here is pure over
`FrozenTrial`s and the study's attributes, so tests build trials by hand; nothing draws.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from reports import trial_record as rec

__all__ = [
    "BestTrial",
    "PruningLedger",
    "StudyReport",
    "TrialCounts",
    "extract_study",
    "learning_curves",
    "pareto_numbers",
    "pruning_ledger",
    "slugify",
    "study_report",
    "throughput_points",
    "trial_counts",
    "train_command",
    "trials_table",
]

# Names the search gives its objectives (study user attr `objectives`) -> labels on the page.
OBJECTIVE_LABELS = {"accuracy": "val accuracy", "throughput": "img/s"}

# Per-trial user attrs shown as columns of the trials table, in this order.
TABLE_ATTRS = (
    rec.TEST_ACCURACY,
    rec.IMAGES_PER_SECOND,
    rec.BEST_EPOCH,
    rec.EPOCHS_RUN,
    rec.MAX_EPOCHS,
    rec.N_PARAMS,
    rec.RETRY_OF,
    rec.FAIL_REASON,
)

# TrainConfig's defaults of the fields that describe the machine rather than the network
# (mnistcore/config.py; a test checks they agree): `train_command` leaves them out when
# default, so the command runs anywhere. Literals, as the report imports nothing of mnistcore
# but its error types.
MACHINE_DEFAULTS: dict[str, Any] = {
    "device": "auto",
    "threads": 0,
    "channels_last": True,
    "precision": "fp32",
}


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
    """Epochs the study trained vs the epochs it would have trained with no pruning."""

    trials: int = 0  # complete + pruned trials whose epoch counts are known
    pruned_trials: int = 0
    epochs_spent: int = 0
    epochs_without_pruning: int = 0  # sum over the same trials of max_epochs
    unknown: int = 0  # complete/pruned trials with no max_epochs or epoch count recorded

    @property
    def epochs_saved(self) -> int:
        return self.epochs_without_pruning - self.epochs_spent

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
    best_epoch: int | None
    images_per_second: float | None
    epochs_run: int | None
    seconds: float | None  # the trial's wall time
    # the whole TrainConfig as a dict, pinned values included (user attr `config`); {} for
    # trials that did not record it (studies from before it was recorded)
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
    counts: TrialCounts
    best: BestTrial | None
    front: tuple[BestTrial, ...]  # two-objective studies: the Pareto front, best first
    wall_seconds: float | None  # first trial start -> last trial end
    ledger: PruningLedger
    param_names: tuple[str, ...]
    stamps: dict[str, Any]
    fail_reasons: list[tuple[int, str]]
    trials: pd.DataFrame = field(repr=False)  # one row per trial, best first
    curves: pd.DataFrame = field(repr=False)  # trial, state, step, value
    throughput: pd.DataFrame = field(repr=False)  # trial, state, val_accuracy, images_per_second

    @property
    def is_multi_objective(self) -> bool:
        return len(self.directions) > 1

    @property
    def pareto_size(self) -> int:
        return len(self.front)


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
    direction_names = tuple(d.name.lower() for d in directions)
    study_max_epochs = _as_int(user_attrs.get(rec.MAX_EPOCHS))
    names = objective_names(user_attrs, len(directions), metric_names)
    best = best_trial(trials, directions)
    first_attrs = best_attrs_source(trials, best)
    multi = len(directions) > 1
    by_number = {t.number: t for t in trials}
    front = [_shown(by_number[n], multi) for n in pareto_numbers(trials, directions)]
    return StudyReport(
        name=name,
        slug=slug or slugify(name),
        directions=direction_names,
        objective_names=names,
        dataset=user_attrs.get(rec.DATASET) or first_attrs.get(rec.DATASET),
        dataset_source=user_attrs.get(rec.DATASET_SOURCE) or first_attrs.get(rec.DATASET_SOURCE),
        max_epochs=study_max_epochs,
        counts=trial_counts(trials),
        best=best,
        front=tuple(sorted(front, key=lambda b: (-b.values[0], b.number))) if multi else (),
        wall_seconds=wall_seconds(trials),
        ledger=pruning_ledger(trials, default_max_epochs=study_max_epochs),
        param_names=tuple(sorted({p for t in trials for p in t.params})),
        stamps={k: first_attrs[k] for k in rec.STAMP_KEYS if first_attrs.get(k) is not None},
        fail_reasons=[(t.number, fail_reason(t)) for t in trials if t.state == TrialState.FAIL],
        trials=trials_table(trials, directions, names),
        curves=learning_curves(trials),
        throughput=throughput_points(trials, multi_objective=multi),
    )


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
    def count(state: TrialState) -> int:
        return sum(1 for t in trials if t.state == state)

    return TrialCounts(
        complete=count(TrialState.COMPLETE),
        pruned=count(TrialState.PRUNED),
        failed=count(TrialState.FAIL),
        running=count(TrialState.RUNNING),
        waiting=count(TrialState.WAITING),
    )


def best_trial(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> BestTrial | None:
    """Best complete trial on the first objective (val accuracy), whatever the others say."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        return None
    sign = 1.0 if directions[0] == StudyDirection.MAXIMIZE else -1.0
    best = max(complete, key=lambda t: (sign * t.values[0], -t.number))
    return _shown(best, multi_objective=len(directions) > 1)


def _shown(trial: FrozenTrial, multi_objective: bool) -> BestTrial:
    return BestTrial(
        number=trial.number,
        values=tuple(trial.values),
        params=dict(trial.params),
        test_accuracy=_as_float(trial.user_attrs.get(rec.TEST_ACCURACY)),
        best_epoch=_as_int(trial.user_attrs.get(rec.BEST_EPOCH)),
        images_per_second=_images_per_second(trial, multi_objective=multi_objective),
        epochs_run=epochs_run(trial),
        seconds=trial.duration.total_seconds() if trial.duration is not None else None,
        config=_config(trial),
    )


def train_command(config: dict[str, Any]) -> str:
    """The `python -m mnistcore ...` line that trains ``config`` (a TrainConfig as a dict, as a
    trial's `config` attribute holds it) again: every field in its order, booleans as
    `--batch-norm` / `--no-batch-norm`, machine fields (MACHINE_DEFAULTS) only when not default.
    """
    if not config:
        raise ValueError(f"train_command needs a recorded configuration, got {config=}")
    words = ["python", "-m", "mnistcore"]
    for name, value in config.items():
        if value is None or (name in MACHINE_DEFAULTS and value == MACHINE_DEFAULTS[name]):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag.removeprefix("--"))
        else:  # repr: the shortest text that reads back as the same float
            words += [flag, repr(value) if isinstance(value, float) else str(value)]
    return shlex.join(words)


def best_attrs_source(
    trials: Sequence[FrozenTrial], best: BestTrial | None
) -> dict[str, Any]:
    """User attrs of the best trial, else of the latest trial that has any (for stamps)."""
    by_number = {t.number: t for t in trials}
    if best is not None:
        return dict(by_number[best.number].user_attrs)
    for trial in sorted(trials, key=lambda t: -t.number):
        if trial.user_attrs:
            return dict(trial.user_attrs)
    return {}


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


def epochs_run(trial: FrozenTrial) -> int | None:
    recorded = _as_int(trial.user_attrs.get(rec.EPOCHS_RUN))
    if recorded is not None:
        return recorded
    if trial.intermediate_values:
        return max(trial.intermediate_values)  # steps are 1-based epochs
    return None


def pruning_ledger(
    trials: Sequence[FrozenTrial], *, default_max_epochs: int | None = None
) -> PruningLedger:
    counted = pruned = spent = budget = unknown = 0
    for trial in trials:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        ran = epochs_run(trial)
        cap = _as_int(trial.user_attrs.get(rec.MAX_EPOCHS))
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
        epochs_spent=spent,
        epochs_without_pruning=budget,
        unknown=unknown,
    )


def trials_table(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    value_names: Sequence[str],
) -> pd.DataFrame:
    """One row per trial: values, params, user attrs; best first on the first objective."""
    rows = []
    for trial in trials:
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name.lower()}
        for i, value_name in enumerate(value_names):
            values = trial.values or []
            row[value_name] = values[i] if i < len(values) else None
        for key in TABLE_ATTRS:
            if key == rec.IMAGES_PER_SECOND and "img/s" in value_names:
                continue  # the second objective already is the img/s
            row[key] = trial.user_attrs.get(key)
        row["duration_s"] = (
            trial.duration.total_seconds() if trial.duration is not None else None
        )
        for param, value in trial.params.items():
            row[f"param {param}"] = value
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["trial", "state", *value_names])
    frame = pd.DataFrame(rows)
    # Keep only columns something was recorded in; the page stays narrow.
    frame = frame.loc[:, [c for c in frame.columns if frame[c].notna().any()
                          or c in ("trial", "state", *value_names)]]
    first = value_names[0]
    ascending = directions[0] != StudyDirection.MAXIMIZE
    return frame.sort_values(
        [first, "trial"], ascending=[ascending, True], na_position="last", kind="stable"
    ).reset_index(drop=True)


def learning_curves(trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    rows = [
        {"trial": t.number, "state": t.state.name.lower(), "step": step, "value": value}
        for t in trials
        for step, value in sorted(t.intermediate_values.items())
    ]
    return pd.DataFrame(rows, columns=["trial", "state", "step", "value"])


def throughput_points(
    trials: Sequence[FrozenTrial], *, multi_objective: bool
) -> pd.DataFrame:
    """Accuracy and img/s per trial: final value for complete trials, last epoch for pruned."""
    rows = []
    for trial in trials:
        speed = _images_per_second(trial, multi_objective=multi_objective)
        if speed is None:
            continue
        if trial.state == TrialState.COMPLETE and trial.values:
            accuracy = trial.values[0]
        elif trial.state == TrialState.PRUNED and trial.intermediate_values:
            accuracy = trial.intermediate_values[max(trial.intermediate_values)]
        else:
            continue
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "val_accuracy": accuracy,
                "images_per_second": speed,
                "params": ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items()),
            }
        )
    return pd.DataFrame(
        rows, columns=["trial", "state", "val_accuracy", "images_per_second", "params"]
    )


def _images_per_second(trial: FrozenTrial, *, multi_objective: bool) -> float | None:
    recorded = _as_float(trial.user_attrs.get(rec.IMAGES_PER_SECOND))
    if recorded is not None:
        return recorded
    if multi_objective and trial.values and len(trial.values) > 1:
        return float(trial.values[1])
    return None


def _config(trial: FrozenTrial) -> dict[str, Any]:
    recorded = trial.user_attrs.get(rec.CONFIG)
    return dict(recorded) if isinstance(recorded, dict) else {}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return int(value)
