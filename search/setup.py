"""Setting up a study: where it lives (storage, name, lock), its sampler and pruner, its data.

``locate`` is the cheap part that both run paths need (the ``--workers`` parent stops there);
``prepare`` adds what a process that trains needs: the data, the study itself, the objective.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage

from mnistcore import (
    Dataset,
    TrainConfig,
    UserError,
    load_dataset,
    resolve_dataset,
    resolve_device,
)
from search.artifacts import Keeper, open_artifact_store, store_path
from search.locks import StudyLock, study_lock
from search.objective import REDUCTION, Objective, report_steps, run_stamps
from search.recovery import retry_stale
from search.space import (
    check_compatible,
    check_same_space,
    describe_space,
    searched_names,
    space_record,
    start_params,
)
from studies import trial_record as rec
from studies.storage import open_storage

if TYPE_CHECKING:
    from search.cli import StudySettings

log = logging.getLogger("search")

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("hyperband", "sha", "median", "percentile", "none")
# Max epochs per trial unless --epochs: 9 on small sets (the pruners' rungs are then epochs 1, 3
# and 9), 5 on the 54k-image sets, whose epoch is 15x longer. Measured on 2 cores, fashion-mnist
# with --timeout 360: 9 epochs left time for only 3 complete trials (best 91.0 % test), 3 epochs
# capped trials at ~90 %.
SMALL_SET_EPOCHS = 9
LARGE_SET_EPOCHS = 5
LARGE_SET = 10_000  # training images from which a set counts as large
# Successive halving by default: Hyperband splits trials into brackets and its sampler learns
# from each bracket's trials alone, so 30 trials in 3 brackets would leave TPE mostly random.
DEFAULT_PRUNER = "sha"
TPE_STARTUP_TRIALS = 10  # random trials before TPE (and GP) start modelling


class StudyError(UserError):
    """The study in storage does not match this run's settings."""


@dataclass(frozen=True, eq=False)
class Place:
    """Where a study lives."""

    storage: BaseStorage
    storage_name: str  # what optuna-dashboard, optuna --storage and the report take
    study_name: str
    dataset: str  # the dataset the study trains on (mnist may have fallen back to mnist-5k)
    lock: StudyLock  # see search/locks.py

    def load(self) -> optuna.Study:
        """The stored study (KeyError before it exists)."""
        return optuna.load_study(study_name=self.study_name, storage=self.storage)


@dataclass(frozen=True, eq=False)
class Prepared:
    """A study ready to run trials in this process."""

    place: Place
    study: optuna.Study
    objective: Objective
    store: FileSystemArtifactStore | None  # where trained weights are kept


def locate(settings: StudySettings) -> Place:
    """Check the device, open the storage and name the study, without loading data: every
    mistake here is a one-line error within a second."""
    s = settings
    resolve_device(s.device)  # fail fast on a missing GPU
    storage, storage_name = open_storage(
        s.storage, heartbeat=s.heartbeat, on_stale_trial=retry_stale
    )
    # mnist may fall back to mnist-5k: the study is named after the data actually used
    dataset = resolve_dataset(s.dataset, data_dir=s.data_dir)
    name = s.study_name or f"{dataset}-{'+'.join(s.objectives)}"
    return Place(storage, storage_name, name, dataset, study_lock(storage, storage_name, name))


def prepare(settings: StudySettings) -> Prepared:
    """Locate the study, load the data, create (or resume) the study and its objective."""
    s = settings
    place = locate(s)
    try:  # a resumed study must fit this run: checked before seconds of loading data
        stored: optuna.Study | None = place.load()
    except KeyError:
        stored = None
    if stored is not None:
        _check_resumable(stored, s, dataset=place.dataset, epochs=s.epochs)
    store = open_artifact_store(s.artifacts, place.storage_name)  # fails before the data loads
    data = load_data(s)
    epochs = s.epochs or default_epochs(data.sizes["train"])
    per_epoch, _ = report_steps(
        data.sizes["train"], epochs, rung_images=s.rung_images, reduction=s.reduction
    )
    steps = epochs * per_epoch  # a trial's report steps: pruners count in these
    if stored is not None and stored.get_trials(deepcopy=False):
        # studies from before steps existed reported once per epoch
        was = stored.user_attrs.get(rec.STEPS_PER_EPOCH, 1)
        if was != per_epoch:
            raise StudyError(
                f"study {place.study_name!r} reported {was} time(s) per epoch, this version "
                f"reports {per_epoch} times per epoch on {data.name}: their steps cannot be "
                "compared; resume it with the version that ran it, or use a new --study-name"
            )
    if stored is not None and s.epochs is None:
        _check_resumable(stored, s, dataset=place.dataset, epochs=epochs)
    n_existing = sum(t.state.is_finished() for t in stored.trials) if stored is not None else 0
    prunes = len(s.objectives) == 1
    pruner = (s.pruner or DEFAULT_PRUNER) if prunes else "none"
    study = optuna.create_study(
        storage=place.storage,
        study_name=place.study_name,
        # a resumed run draws fresh points instead of replaying the first run's random ones
        sampler=make_sampler(
            s.sampler,
            seed=s.seed + n_existing,
            brackets=_brackets(pruner, steps, s.reduction),
            startup=s.startup_trials,
            # K trials asked at once: each is proposed as if the others' results were in
            liar=population_size(s) > 1,
        ),
        pruner=make_pruner(pruner, steps=steps, reduction=s.reduction),
        directions=["maximize"] * len(s.objectives),
        load_if_exists=True,
    )
    with place.lock.hold():  # workers starting together: only the first queues the start point
        if not study.get_trials(deepcopy=False):
            study.enqueue_trial(start_params(s.space))
    stamps = run_stamps(data, device=s.device, precision=s.precision)
    for key, value in {
        rec.DATASET: data.name,
        rec.DATASET_SOURCE: data.source,
        rec.MAX_EPOCHS: epochs,
        rec.STEPS_PER_EPOCH: per_epoch,
        rec.OBJECTIVES: list(s.objectives),
        rec.SPACE: space_record(s.space),
        rec.DEVICE_NAME: stamps[rec.DEVICE_NAME],
        **({rec.ARTIFACT_STORE: str(store_path(store))} if store is not None else {}),
    }.items():
        study.set_user_attr(key, value)

    log.info("data: %s", data.describe())
    log.info(
        "storage: %s, study %r (%d finished trials so far)",
        place.storage_name, place.study_name, n_existing,
    )  # fmt: skip
    log.info("space: %s", describe_space(s.space))
    if not searched_names(s.space):
        log.warning("every parameter is pinned: each trial trains the same configuration")
    if prunes:
        log.info(
            "sampler %s, pruner %s, up to %d epochs per trial, judged first after %s",
            s.sampler, pruner, epochs,
            "1 epoch" if per_epoch == 1 else f"1/{per_epoch} epoch",
        )  # fmt: skip
    else:
        log.info(
            "sampler %s; pruning disabled: Optuna cannot prune multi-objective studies%s",
            s.sampler,
            f" (--pruner {s.pruner} ignored)" if s.pruner else "",
        )
    base = TrainConfig(
        epochs=epochs,
        seed=s.seed,
        device=s.device,
        threads=s.threads,
        dataset=data.name,
        synthetic_size=s.synthetic_size,
        precision=s.precision,
    )
    objective = Objective(
        data,
        s.space,
        base=base,
        objectives=s.objectives,
        stamps=stamps,
        keep=Keeper(store) if store is not None else None,
        rung_images=s.rung_images,
        reduction=s.reduction,
    )
    return Prepared(place, study, objective, store)


def load_data(settings: StudySettings) -> Dataset:
    """The study's data (its validation split is fixed by the dataset, never by --seed)."""
    s = settings
    return load_dataset(s.dataset, data_dir=s.data_dir, synthetic_size=s.synthetic_size)


def default_epochs(n_train: int) -> int:
    """Max epochs per trial when --epochs is not given, from the training set's size."""
    return LARGE_SET_EPOCHS if n_train >= LARGE_SET else SMALL_SET_EPOCHS


def population_size(settings: StudySettings) -> int:
    """Trials trained together: ``--population``, or 1 for a two-objective study, whose
    throughput objective measures each trial's own speed."""
    return 1 if len(settings.objectives) > 1 else settings.population


def make_sampler(
    kind: str,
    *,
    seed: int,
    brackets: int = 1,
    liar: bool = False,
    startup: int = TPE_STARTUP_TRIALS,
) -> optuna.samplers.BaseSampler:
    # under Hyperband each bracket's sampler starts on its own: share the random start-up
    startup = max(min(3, startup), math.ceil(startup / brackets))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "gp":
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=startup, warn_independent_sampling=False
        )
    if kind == "qmc":
        return optuna.samplers.QMCSampler(
            seed=seed, scramble=True, warn_independent_sampling=False
        )
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=liar)


def make_pruner(kind: str, *, steps: int, reduction: int = REDUCTION) -> optuna.pruners.BasePruner:
    """The pruner of ``kind`` for trials of ``steps`` report steps (search/objective.py)."""
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=steps, reduction_factor=reduction
        )
    if kind == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=reduction)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if kind == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _brackets(pruner: str, steps: int, reduction: int) -> int:
    """Hyperband's number of brackets, as Optuna computes it for min_resource=1; else 1."""
    if pruner != "hyperband":
        return 1
    return math.floor(math.log(steps, reduction) + 1e-9) + 1


def _check_resumable(
    study: optuna.Study, settings: StudySettings, *, dataset: str, epochs: int | None
) -> None:
    """The stored ``study`` was run with this dataset, objectives, epochs (when known) and a
    space searching the same parameters; else a one-line StudyError naming the difference."""
    stored = study.user_attrs
    wanted = {rec.DATASET: dataset, rec.OBJECTIVES: list(settings.objectives)}
    if epochs is not None:
        wanted[rec.MAX_EPOCHS] = epochs
    diff = {k: (stored[k], v) for k, v in wanted.items() if k in stored and stored[k] != v}
    if diff:
        was = ", ".join(f"{k}={old!r}" for k, (old, _) in diff.items())
        now = ", ".join(f"{k}={new!r}" for k, (_, new) in diff.items())
        raise StudyError(
            f"study {study.study_name!r} in storage was run with {was}, this run asks {now}; "
            "use the same settings to resume, or a new --study-name"
        )
    trials = study.get_trials(deepcopy=False)
    check_same_space(settings.space, stored.get(rec.SPACE), trials, study.study_name)
    check_compatible(settings.space, trials, study.study_name)
