"""The trial record, defined once: the names of the attributes the search writes on each trial
(``trial.user_attrs[NAME]``) and study, which the report, the summary and the tests read back,
and how a stored number reads back.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from optuna.trial import FrozenTrial, TrialState

# -- what the objective records about training
CONFIG = "config"  # the whole TrainConfig as a dict, pinned values included
MAX_EPOCHS = "max_epochs"  # the epoch budget of the trial (also a study attribute)
EPOCHS_RUN = "epochs_run"  # epochs trained before the trial ended (pruned trials: fewer)
EPOCH_SECONDS = "epoch_seconds"  # training seconds of each epoch
BEST_EPOCH = "best_epoch"  # 1-based epoch of the best val accuracy
IMAGES_PER_SECOND = "images_per_second"  # median training img/s over the epochs
TEST_ACCURACY = "test_accuracy"  # of the last epoch's model, finished trials only
N_PARAMS = "n_params"
SEED = "seed"
FAIL_REASON = "fail_reason"  # why a trial failed or diverged, one line
WEIGHTS = "weights"  # artifact id of the trained state_dict (kept for the best few trials)
# -- populations (``--population K``): trials trained together as one fused module
POPULATION_ID = "population_id"  # the same for every trial of one population
POPULATION_SIZE = "population_size"  # members at its start
POPULATION_MEMBER = "population_member"  # this trial's index in it

# -- crash recovery: who runs the trial, and which failed trial it repeats
WORKER_PID = "worker_pid"
WORKER_HOST = "worker_host"
WORKER_STARTED = "worker_started"  # process start time (clock ticks since boot; Linux)
RETRY_OF = "retry_of"  # number of the failed trial this one runs again (the one retry marker)

# -- stamps: the conditions of a result, shown once per study
DEVICE_NAME = "device_name"
PRECISION = "precision"  # fp32 | bf16: what precision auto resolved to on the device
TORCH_VERSION = "torch_version"
GIT_COMMIT = "git_commit"
DATASET = "dataset"  # the dataset actually used (also a study attribute)
DATASET_SOURCE = "dataset_source"  # (also a study attribute)
SPLIT_SIZES = "split_sizes"
STAMP_KEYS = (DEVICE_NAME, PRECISION, TORCH_VERSION, GIT_COMMIT, DATASET, DATASET_SOURCE)
STAMP_KEYS += (SPLIT_SIZES, SEED)

# -- study user attributes (besides DATASET, DATASET_SOURCE, MAX_EPOCHS, DEVICE_NAME)
OBJECTIVES = "objectives"  # e.g. ["accuracy"] or ["accuracy", "throughput"]
SPACE = "space"  # {"searched": [names], "pinned": {name: value}}
STEPS_PER_EPOCH = "steps_per_epoch"  # report steps per epoch (1: a step is an epoch)
ARTIFACT_STORE = "artifact_store"  # the folder of the artifact store (absolute path)
# -- confirmation (search/confirm.py): one attribute per confirmed configuration, named
# CONFIRMED_PREFIX + the number of the search trial that proposed it, and the settings
CONFIRMED_PREFIX = "confirmed:"
CONFIRM_SETTINGS = "confirm"  # {"top", "asked", "seeds", "auto", "search_seconds"}
# the baseline recipe (the tutorial's, or --baseline FILE.toml) retrained on the winner's seeds:
# {"name", "config", "seeds", "val", "test" (None: that seed diverged), "seconds", "n_val",
# "n_test", "curves" (optional)}
BASELINE = "baseline"
# -- the trial's clock (ISO times in UTC). Optuna starts a trial when it is asked: K trials
# asked together start at once, though groups of other architectures train one after the
# other; and a dead worker's trial ends when a later run notices it.
TRAINING_STARTED = "training_started"  # when the trial's population started training
LAST_REPORT = "last_report"  # when the trial last reported a validation accuracy


def now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def trial_span(trial: FrozenTrial) -> tuple[datetime, datetime] | None:
    """When a finished trial trained (naive local times, as Optuna's), from its population's
    start; a failed trial ends at its last report (its worker may have died days before a rerun
    failed it). None for an unfinished trial."""
    start, end = trial.datetime_start, trial.datetime_complete
    if start is None or end is None:
        return None
    start = _local(trial.user_attrs.get(TRAINING_STARTED)) or start
    if trial.state == TrialState.FAIL:
        end = min(end, _local(trial.user_attrs.get(LAST_REPORT)) or start)
    return start, max(start, end)


def trial_seconds(trial: FrozenTrial) -> float | None:
    """Seconds of ``trial_span`` (None for an unfinished trial)."""
    span = trial_span(trial)
    return (span[1] - span[0]).total_seconds() if span else None


def search_seconds(trials: list[FrozenTrial]) -> float:
    """Seconds during which the finished trials trained: the union of their spans, so trials
    trained together (a population, parallel workers) count once."""
    spans = sorted(span for t in trials if (span := trial_span(t)) is not None)
    total, end = 0.0, None
    for start, stop in spans:
        if end is not None and start < end:  # overlaps the previous span: count the rest
            start = end
        if stop > start:
            total += (stop - start).total_seconds()
            end = stop
    return total


def _local(stamp: Any) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    return datetime.fromisoformat(stamp).astimezone().replace(tzinfo=None)


def as_number(value: Any) -> float | None:
    """A stored number as a float; None for anything else (text, bools, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def as_int(value: Any) -> int | None:
    number = as_number(value)
    return None if number is None else int(number)


def as_epochs(value: Any) -> float | None:
    """A count of epochs, to 4 decimals (as the objective records it); int when whole."""
    number = as_number(value)
    if number is None:
        return None
    number = round(number, 4)
    return int(number) if number.is_integer() else number
