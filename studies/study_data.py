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
from datetime import datetime
from typing import Any, NamedTuple

import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from studies import trial_record as rec
from studies.confirmation import Confirmation, extract_confirmation
from studies.intervals import wilson_text

__all__ = [
    "BestTrial",
    "Population",
    "PruningLedger",
    "StudyReport",
    "TrialCounts",
    "extract_study",
    "format_epochs",
    "learning_curves",
    "pareto_numbers",
    "pruning_ledger",
    "shared_populations",
    "slugify",
    "steps_per_epoch",
    "study_report",
    "throughput_points",
    "timeline_rows",
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
    rec.POPULATION_ID,
    rec.POPULATION_MEMBER,
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
    """Epochs the study trained vs the epochs it would have trained with no pruning.

    Epochs are fractional where trials were pruned within an epoch (int when whole): images
    seen over the training set's size."""

    trials: int = 0  # complete + pruned trials whose epoch counts are known
    pruned_trials: int = 0
    epochs_spent: float = 0
    epochs_without_pruning: float = 0  # sum over the same trials of max_epochs
    unknown: int = 0  # complete/pruned trials with no max_epochs or epoch count recorded

    @property
    def epochs_saved(self) -> float:
        return _as_epochs(self.epochs_without_pruning - self.epochs_spent) or 0

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
    images_per_second: float | None
    epochs_run: float | None  # int when whole
    seconds: float | None  # the trial's wall time
    # the whole TrainConfig as a dict, pinned values included (user attr `config`); {} for
    # trials that did not record it (studies from before it was recorded)
    config: dict[str, Any] = field(default_factory=dict)


class Population(NamedTuple):
    """Trials trained together as one fused population (``--population K``)."""

    id: str  # user attr population_id
    size: int | None  # members at its start (user attr population_size)
    trials: tuple[int, ...]  # trial numbers, in member order
    start: datetime | None  # first member's start
    end: datetime | None  # last member's end (None while one runs)


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
    param_names: tuple[str, ...]
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
    per_epoch = steps_per_epoch(user_attrs)
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
        steps_per_epoch=per_epoch,
        counts=trial_counts(trials),
        best=best,
        front=tuple(sorted(front, key=lambda b: (-b.values[0], b.number))) if multi else (),
        wall_seconds=wall_seconds(trials),
        ledger=pruning_ledger(
            trials, default_max_epochs=study_max_epochs, steps_per_epoch=per_epoch
        ),
        param_names=tuple(sorted({p for t in trials for p in t.params})),
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
    """Report steps per epoch of a study (user attr `steps_per_epoch`); 1 when not recorded,
    as in studies from before trials reported within an epoch."""
    recorded = _as_int(user_attrs.get(rec.STEPS_PER_EPOCH))
    return recorded if recorded is not None and recorded >= 1 else 1


def format_epochs(epochs: float | None) -> str:
    """Epochs as the summary and the report print them: "13" when whole (at 2 decimals),
    else "0.33"; None (or NaN) is "–"."""
    if epochs is None or (isinstance(epochs, float) and math.isnan(epochs)):
        return "–"
    text = f"{float(epochs):.2f}"
    return text.removesuffix(".00")


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
        best_epoch=_as_epochs(trial.user_attrs.get(rec.BEST_EPOCH)),
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


def epochs_run(trial: FrozenTrial, *, steps_per_epoch: int = 1) -> float | None:
    """Epochs the trial trained (fractional when pruned within an epoch; int when whole)."""
    recorded = _as_epochs(trial.user_attrs.get(rec.EPOCHS_RUN))
    if recorded is not None:
        return recorded
    if trial.intermediate_values:  # steps are 1-based, steps_per_epoch to an epoch
        return _as_epochs(max(trial.intermediate_values) / steps_per_epoch)
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
        epochs_spent=_as_epochs(spent) or 0,
        epochs_without_pruning=_as_epochs(budget) or 0,
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
        sizes = trial.user_attrs.get(rec.SPLIT_SIZES)
        sizes = sizes if isinstance(sizes, dict) else {}
        for i, value_name in enumerate(value_names):
            values = trial.values or []
            row[value_name] = values[i] if i < len(values) else None
            if value_name == "val accuracy":
                row["val 95% CI"] = wilson_text(row[value_name], sizes.get("val"))
        for key in TABLE_ATTRS:
            if key == rec.IMAGES_PER_SECOND and "img/s" in value_names:
                continue  # the second objective already is the img/s
            row[key] = trial.user_attrs.get(key)
            if key == rec.TEST_ACCURACY:
                row["test 95% CI"] = wilson_text(row[key], sizes.get("test"))
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


def learning_curves(trials: Sequence[FrozenTrial], *, steps_per_epoch: int = 1) -> pd.DataFrame:
    """One row per reported value; `epoch` is the step in (fractional) epochs trained."""
    rows = [
        {
            "trial": t.number,
            "state": t.state.name.lower(),
            "step": step,
            "epoch": step / steps_per_epoch,
            "value": value,
        }
        for t in trials
        for step, value in sorted(t.intermediate_values.items())
    ]
    return pd.DataFrame(rows, columns=["trial", "state", "step", "epoch", "value"])


def shared_populations(trials: Sequence[FrozenTrial]) -> tuple[Population, ...]:
    """The populations of 2 or more of ``trials`` (by user attr population_id), in order of
    start; a lone trial (a population of one) shares nothing and is left out."""
    members: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        key = trial.user_attrs.get(rec.POPULATION_ID)
        if key is not None:
            members.setdefault(str(key), []).append(trial)
    found = []
    for key, group in members.items():
        if len(group) < 2:
            continue
        group.sort(key=lambda t: (_member(t), t.number))
        starts = [t.datetime_start for t in group if t.datetime_start is not None]
        ends = [t.datetime_complete for t in group]
        sizes = [_as_int(t.user_attrs.get(rec.POPULATION_SIZE)) for t in group]
        found.append(
            Population(
                id=key,
                size=max((s for s in sizes if s is not None), default=None),
                trials=tuple(t.number for t in group),
                start=min(starts, default=None),
                end=None if None in ends else max(ends),
            )
        )
    return tuple(sorted(found, key=lambda p: (p.start or datetime.max, p.trials[0])))


def timeline_rows(trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    """One row per started trial (end None while it runs), in drawing order: by start, but a
    shared population's trials together, in member order, where its first trial starts."""
    shared = {n: p for p in shared_populations(trials) for n in p.trials}

    def order(trial: FrozenTrial) -> tuple:
        population = shared.get(trial.number)
        if population is None:
            return (trial.datetime_start, trial.number, 0)
        return (population.start, population.trials[0], population.trials.index(trial.number))

    rows = []
    for trial in sorted((t for t in trials if t.datetime_start is not None), key=order):
        population = shared.get(trial.number)
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "start": trial.datetime_start,
                "end": trial.datetime_complete,
                "population_id": population.id if population else None,
                "population_member": _member(trial) if population else None,
                "population_size": population.size if population else None,
            }
        )
    columns = ["trial", "state", "start", "end", "population_id", "population_member",
               "population_size"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


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


def _member(trial: FrozenTrial) -> int:
    member = _as_int(trial.user_attrs.get(rec.POPULATION_MEMBER))
    return member if member is not None else trial.number


def _as_epochs(value: Any) -> float | None:
    """A count of epochs, to 4 decimals (as the objective records it); int when whole."""
    number = _as_float(value)
    if number is None:
        return None
    number = round(number, 4)
    return int(number) if number.is_integer() else number


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return int(value)
