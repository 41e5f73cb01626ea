"""The tables of one study's trials that the report draws or lists (the trials, learning curves,
accuracy against throughput, the timeline, the populations), pure over `FrozenTrial`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from studies import trial_record as rec
from studies.intervals import wilson_text

# Per-trial user attrs shown as columns of the trials table, in this order, with their headers.
TABLE_COLUMNS = {
    rec.TEST_ACCURACY: "test accuracy",
    rec.IMAGES_PER_SECOND: "img/s",
    rec.BEST_EPOCH: "best epoch",
    rec.EPOCHS_RUN: "epochs run",
    rec.MAX_EPOCHS: "max epochs",
    rec.N_PARAMS: "weights",
    rec.POPULATION_ID: "population",
    rec.POPULATION_MEMBER: "member",
    rec.RETRY_OF: "retry of",
    rec.FAIL_REASON: "fail reason",
}


class Population(NamedTuple):
    """Trials trained together as one fused population (``--population K``)."""

    id: str  # user attr population_id
    size: int | None  # members at its start (user attr population_size)
    trials: tuple[int, ...]  # trial numbers, in member order
    start: datetime | None  # first member's start
    end: datetime | None  # last member's end (None while one runs)


def trials_table(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], value_names: Sequence[str]
) -> pd.DataFrame:
    """One row per trial, best first: values, TABLE_COLUMNS, seconds, params ("param lr")."""
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
        for key, label in TABLE_COLUMNS.items():
            if label in value_names:
                continue  # the second objective already is the img/s
            row[label] = trial.user_attrs.get(key)
            if key == rec.TEST_ACCURACY:
                row["test 95% CI"] = wilson_text(row[label], sizes.get("test"))
        row["seconds"] = rec.trial_seconds(trial)  # from its own group's start
        row.update({f"param {param}": value for param, value in trial.params.items()})
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["trial", "state", *value_names])
    frame = pd.DataFrame(rows)
    # Keep only columns something was recorded in; the page stays narrow.
    kept = ("trial", "state", *value_names)
    frame = frame.loc[:, [c for c in frame.columns if c in kept or frame[c].notna().any()]]
    ascending = directions[0] != StudyDirection.MAXIMIZE
    return frame.sort_values(
        [value_names[0], "trial"], ascending=[ascending, True], na_position="last", kind="stable"
    ).reset_index(drop=True)


def learning_curves(trials: Sequence[FrozenTrial], *, steps_per_epoch: int = 1) -> pd.DataFrame:
    """One row per reported value; `epoch` is the step in (fractional) epochs trained."""
    rows = [
        (t.number, t.state.name.lower(), step, step / steps_per_epoch, value)
        for t in trials
        for step, value in sorted(t.intermediate_values.items())
    ]
    return pd.DataFrame(rows, columns=["trial", "state", "step", "epoch", "value"])


def shared_populations(trials: Sequence[FrozenTrial]) -> tuple[Population, ...]:
    """The populations of 2 or more of ``trials``, in order of start (a population of one shares
    nothing)."""
    members: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        key = trial.user_attrs.get(rec.POPULATION_ID)
        if key is not None:
            members.setdefault(str(key), []).append(trial)
    found = []
    for key, group in members.items():
        if len(group) < 2:
            continue
        group.sort(key=lambda t: (member(t), t.number))
        starts = [t.datetime_start for t in group if t.datetime_start is not None]
        ends = [t.datetime_complete for t in group]
        sizes = [rec.as_int(t.user_attrs.get(rec.POPULATION_SIZE)) for t in group]
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
            (trial.number, trial.state.name.lower(), trial.datetime_start, trial.datetime_complete)
            + ((population.id, member(trial), population.size) if population else (None,) * 3)
        )
    columns = ["trial", "state", "start", "end", "population_id", "population_member",
               "population_size"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def throughput_points(trials: Sequence[FrozenTrial], *, multi_objective: bool) -> pd.DataFrame:
    """Accuracy and img/s per trial: final value for complete trials, last epoch for pruned."""
    rows = []
    for trial in trials:
        speed = images_per_second(trial, multi_objective=multi_objective)
        if speed is None:
            continue
        if trial.state == TrialState.COMPLETE and trial.values:
            accuracy = trial.values[0]
        elif trial.state == TrialState.PRUNED and trial.intermediate_values:
            accuracy = trial.intermediate_values[max(trial.intermediate_values)]
        else:
            continue
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
        )
        rows.append((trial.number, trial.state.name.lower(), accuracy, speed, params))
    columns = ["trial", "state", "val_accuracy", "images_per_second", "params"]
    return pd.DataFrame(rows, columns=columns)


def images_per_second(trial: FrozenTrial, *, multi_objective: bool) -> float | None:
    """The trial's recorded img/s; else its second objective in a two-objective study."""
    recorded = rec.as_number(trial.user_attrs.get(rec.IMAGES_PER_SECOND))
    if recorded is not None:
        return recorded
    if multi_objective and trial.values and len(trial.values) > 1:
        return float(trial.values[1])
    return None


def member(trial: FrozenTrial) -> int:
    """The trial's index in its population (its number when not recorded)."""
    index = rec.as_int(trial.user_attrs.get(rec.POPULATION_MEMBER))
    return index if index is not None else trial.number
