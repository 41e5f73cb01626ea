"""The objective: train suggested configurations, report at each rung, stamp the results.

``Objective.run(trials, tell)`` trains trials whose configurations share the architecture and
batch size as one ``mnistcore.Population`` (``--population K``; a lone trial is a population of
one); each member reports to its own trial and is pruned on its own. The value is the
**validation** accuracy after the last epoch (``throughput`` adds the median training img/s);
the test split only reports finished trials. Members are evaluated where a pruner can decide
(``report_steps``) and at epoch ends.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from mnistcore import (
    Dataset,
    Population,
    TrainConfig,
    build_model,
    count_parameters,
    device_name,
    evaluate,
    group_configs,
    resolve_device,
    resolve_precision,
)
from search.space import DEFAULT_SPACE, SearchSpace, suggest
from studies import trial_record as rec

log = logging.getLogger("search")

OBJECTIVES = ("accuracy", "throughput")  # what each returned value means, in order
# A report step is at most this many training images: on the 54k-image sets an epoch is 9
# steps, so successive halving judges a trial first after 6,000 images (on 2 cores: ~2 s of
# the default net instead of ~15 s); mnist-5k's 3,600-image epoch stays one step.
RUNG_IMAGES = 6000
REDUCTION = 3  # the pruners judge at steps 1, 3, 9, ...: on past a rung in the top third

# tell(trial, state, values): end a trial (the trial loop tells Optuna)
Tell = Callable[[optuna.trial.Trial, TrialState, Any], None]


def report_steps(
    n_train: int, epochs: int, *, rung_images: int = RUNG_IMAGES, reduction: int = REDUCTION
) -> tuple[int, list[int]]:
    """(steps per epoch, the steps at which members are evaluated and reported): the pruners'
    rungs 1, R, R^2, ... and every epoch's end, up to the last step."""
    per_epoch = max(1, math.ceil(n_train / rung_images))
    last = epochs * per_epoch
    rungs = {reduction**k for k in range(int(math.log(last, reduction)) + 2)}
    epoch_ends = set(range(per_epoch, last + 1, per_epoch))
    return per_epoch, sorted(s for s in rungs | epoch_ends if s <= last)


@dataclass
class Objective:
    """Trains ``suggest(trial, space)`` of each trial on ``data`` (loaded once per process);
    ``Objective(...)(trial)`` trains one (Optuna's objective form). ``base`` holds the fields not
    searched (epochs, seed, device...); ``stamps``: user attributes of every trial."""

    data: Dataset
    space: SearchSpace = field(default_factory=lambda: dict(DEFAULT_SPACE))
    base: TrainConfig = field(default_factory=TrainConfig)
    objectives: Sequence[str] = ("accuracy",)
    stamps: Mapping[str, Any] = field(default_factory=dict)
    # keep(trial, value, model) after a trial completes: stores its weights when worth it
    # (search.artifacts.Keeper); None keeps nothing
    keep: Callable[[optuna.trial.Trial, float, torch.nn.Module], None] | None = None
    # too_late(seconds_left, full_seconds) after each report: why a population must stop now
    # (--timeout: finishing and confirming it would end after the deadline), or None
    too_late: Callable[[float, float], str | None] | None = None
    rung_images: int = RUNG_IMAGES  # --rung-images, --reduction: where members are reported
    reduction: int = REDUCTION
    # this process's time, which the study splits into training and Optuna's own work
    compute_seconds: float = 0.0  # model building, training, evaluation
    optuna_seconds: float = 0.0  # Optuna calls inside the objective (the rest is outside it)

    def __post_init__(self) -> None:
        if tuple(self.objectives) not in (OBJECTIVES[:1], OBJECTIVES):
            raise ValueError(
                f"objectives must be {OBJECTIVES[:1]} or {OBJECTIVES}, got {self.objectives}"
            )

    @property
    def prunes(self) -> bool:
        # Optuna's trial.report/should_prune work for single-objective studies only
        return len(self.objectives) == 1

    def __call__(self, trial: optuna.trial.BaseTrial) -> float | tuple[float, float]:
        """One trial alone: its value, or optuna.TrialPruned."""
        ended: list[tuple[TrialState, Any]] = []
        self.run([trial], lambda t, state, values: ended.append((state, values)))
        ((state, values),) = ended
        if state == TrialState.PRUNED:
            raise optuna.TrialPruned(trial.user_attrs.get(rec.FAIL_REASON, "pruned"))
        return values

    def run(self, trials: Sequence[optuna.trial.BaseTrial], tell: Tell) -> None:
        """Train ``trials``, one population per group of fusible configurations, calling
        ``tell`` for each as soon as it ends (pruned, diverged or complete)."""
        start, optuna_before = time.perf_counter(), self.optuna_seconds
        try:
            with self._optuna():
                configs = [suggest(t, self.space, base=self.base) for t in trials]
            for group in group_configs(configs):
                self._train([trials[i] for i in group], [configs[i] for i in group], tell)
        finally:
            # everything but Optuna's calls, so a diverged or interrupted trial counts too
            spent = time.perf_counter() - start
            self.compute_seconds += spent - (self.optuna_seconds - optuna_before)

    def _train(
        self, trials: list[optuna.trial.BaseTrial], configs: list[TrainConfig], tell: Tell
    ) -> None:
        n_params = count_parameters(build_model(configs[0]))  # one architecture
        group = f"{socket.gethostname()}-{os.getpid()}-{trials[0].number}"
        with self._optuna():
            for member, (trial, config) in enumerate(zip(trials, configs, strict=True)):
                for key, value in {
                    **self.stamps,
                    rec.MAX_EPOCHS: config.epochs,
                    rec.N_PARAMS: n_params,
                    rec.SEED: config.seed,
                    # the whole configuration, pinned values included: TrainConfig(**config)
                    rec.CONFIG: config.to_dict(),
                    rec.POPULATION_ID: group,
                    rec.POPULATION_SIZE: len(trials),
                    rec.POPULATION_MEMBER: member,
                    rec.TRAINING_STARTED: rec.now_stamp(),  # this group's clock, not the ask's
                }.items():
                    trial.set_user_attr(key, value)
        n_train = len(self.data.train.labels)
        per_epoch, steps = report_steps(
            n_train, configs[0].epochs, rung_images=self.rung_images, reduction=self.reduction
        )
        live = dict(enumerate(trials))
        ledgers = {m: _Ledger() for m in live}
        try:  # the first stretch needs all the memory the population will need
            population: Population | None = Population(configs, self.data)
            _advance(population, round(steps[0] * n_train / per_epoch), ledgers, n_train)
        except torch.OutOfMemoryError:
            if len(trials) == 1:
                raise
            population = None
        if population is None:
            # out of the except block: its traceback no longer holds the population's tensors
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(trials) // 2
            log.warning(
                "a population of %d does not fit in GPU memory: training it as %d and %d",
                len(trials), half, len(trials) - half,
            )  # fmt: skip
            self._train(trials[:half], configs[:half], tell)
            self._train(trials[half:], configs[half:], tell)
            return
        try:
            self._fit(population, steps, per_epoch, live, ledgers, tell)
        except BaseException:  # a Ctrl-C too: the running members still say how far they got
            with self._optuna(), contextlib.suppress(Exception):
                for member, trial in live.items():
                    ledgers[member].record(trial)
            raise

    def _fit(
        self,
        population: Population,
        steps: list[int],
        per_epoch: int,
        live: dict[int, optuna.trial.BaseTrial],
        ledgers: dict[int, _Ledger],
        tell: Tell,
    ) -> None:
        """Train ``population`` step by step: report each live member, prune, complete."""
        n_train = len(self.data.train.labels)
        began = time.perf_counter()
        for step in steps:
            target = round(step * n_train / per_epoch)
            if target > population.images_seen:
                _advance(population, target, ledgers, n_train)
            for member, reason in population.diverged.items():
                if member in live:
                    # an outcome of the configuration, not a bug: recorded, the others go on
                    live[member].set_user_attr(rec.FAIL_REASON, reason)
                    self._end(live.pop(member), ledgers[member], tell, TrialState.PRUNED)
            if not live:
                return
            val, reported_at = population.evaluate("val"), rec.now_stamp()
            pruned = []
            for member, trial in live.items():
                ledgers[member].reported(val[member].accuracy)
                with self._optuna():
                    trial.set_user_attr(rec.LAST_REPORT, reported_at)  # a dead worker's end
                    if not self.prunes:
                        continue
                    trial.report(val[member].accuracy, step)
                    # after the last step there is nothing left to save: let it complete
                    if step < steps[-1] and trial.should_prune():
                        pruned.append(member)
            for member in pruned:
                self._end(live.pop(member), ledgers[member], tell, TrialState.PRUNED)
            if pruned:
                population.drop(pruned)  # repacks every tensor: only when someone left
            if live and step < steps[-1] and self.too_late is not None:
                spent = time.perf_counter() - began
                reason = self.too_late(spent * (steps[-1] / step - 1), spent * steps[-1] / step)
                for member in list(live) if reason else ():
                    with self._optuna():
                        live[member].set_user_attr(rec.FAIL_REASON, reason)
                    self._end(live.pop(member), ledgers[member], tell, TrialState.PRUNED)
            if not live:
                return
        test_split = self.data.to(population.device).test
        for member, trial in live.items():
            model = population.member_model(member)
            ledger, value = ledgers[member], ledgers[member].reports[-1][1]
            with self._optuna():
                trial.set_user_attr(rec.TEST_ACCURACY, evaluate(model, test_split).accuracy)
            if self.keep is not None:  # our own work, not Optuna's: outside its timer
                self.keep(trial, value, model)
            values = value if self.prunes else (value, ledger.median_speed)
            self._end(trial, ledger, tell, TrialState.COMPLETE, values)

    def _end(
        self,
        trial: optuna.trial.BaseTrial,
        ledger: _Ledger,
        tell: Tell,
        state: TrialState,
        values: Any = None,
    ) -> None:
        with self._optuna():
            ledger.record(trial)
            tell(trial, state, values)

    @contextlib.contextmanager
    def _optuna(self) -> Iterator[None]:
        """Times a block of Optuna calls (sampling, pruning, storage writes)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.optuna_seconds += time.perf_counter() - start


def _advance(
    population: Population, target: int, ledgers: dict[int, _Ledger], n_train: int
) -> None:
    """Train ``population`` until each member has seen ``target`` images; log the stretch."""
    before, clock = population.images_seen, time.perf_counter()
    population.train(target - population.images_seen)  # ends with a sync
    seconds = time.perf_counter() - clock
    for ledger in ledgers.values():
        ledger.trained(population.images_seen - before, seconds, n_train)


@dataclass
class _Ledger:
    """One member's progress: what a trial records of its training (epochs_run, seconds...)."""

    epochs: float = 0.0  # epochs trained
    epoch_seconds: list[float] = field(default_factory=list)  # per completed epoch
    seconds: float = 0.0  # since the last completed epoch
    speeds: list[float] = field(default_factory=list)  # member-img/s of each stretch
    reports: list[tuple[float, float]] = field(default_factory=list)  # (epochs, val accuracy)

    def trained(self, images: int, seconds: float, n_train: int) -> None:
        before, self.epochs = self.epochs, self.epochs + images / n_train
        self.seconds += seconds
        self.speeds.append(images / seconds if seconds > 0 else 0.0)
        if math.floor(self.epochs + 1e-9) > math.floor(before + 1e-9):  # an epoch ended
            self.epoch_seconds.append(round(self.seconds, 4))
            self.seconds = 0.0

    def reported(self, accuracy: float) -> None:
        self.reports.append((self.epochs, accuracy))  # epochs as epochs_run counts them

    @property
    def median_speed(self) -> float:
        # the median ignores the first stretch's warm-up (allocator, thread pool)
        return float(statistics.median(self.speeds))

    def record(self, trial: optuna.trial.BaseTrial) -> None:
        trial.set_user_attr(rec.EPOCHS_RUN, rec.as_epochs(self.epochs))
        trial.set_user_attr(rec.EPOCH_SECONDS, self.epoch_seconds)
        if self.reports:
            epochs, _ = max(self.reports, key=lambda r: r[1])  # the earliest wins a tie
            trial.set_user_attr(rec.BEST_EPOCH, rec.as_epochs(epochs))
        if self.speeds:
            trial.set_user_attr(rec.IMAGES_PER_SECOND, self.median_speed)


def run_stamps(data: Dataset, *, device: str = "auto", precision: str = "auto") -> dict[str, Any]:
    """Conditions every trial records: device, torch, code version, data actually used."""
    stamps: dict[str, Any] = {
        rec.DEVICE_NAME: device_name(resolve_device(device)),
        rec.PRECISION: resolve_precision(precision, resolve_device(device)),  # auto resolved
        rec.TORCH_VERSION: torch.__version__,
        rec.DATASET: data.name,
        rec.DATASET_SOURCE: data.source,
        rec.SPLIT_SIZES: data.sizes,
    }
    commit = git_commit()
    if commit:
        stamps[rec.GIT_COMMIT] = commit
    return stamps


def git_commit(folder: Path | None = None) -> str | None:
    """HEAD of the repository holding this code, ``-dirty`` with uncommitted changes; None
    outside git (an installed copy, say)."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        cwd = folder or Path(__file__).resolve().parent
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
