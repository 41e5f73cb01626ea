"""The objective: train one suggested configuration, report each epoch, stamp the result.

The value is the **validation** accuracy after the last epoch (the model whose test accuracy is
recorded); the test split is evaluated only for finished trials, only to report. With the
``throughput`` objective the trial also returns its median training img/s.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from mnistcore import (
    Dataset,
    EpochResult,
    NonFiniteLossError,
    TrainConfig,
    build_model,
    count_parameters,
    device_name,
    evaluate,
    fit,
    resolve_device,
)
from reports import trial_record as rec
from search.space import DEFAULT_SPACE, SearchSpace, suggest

OBJECTIVES = ("accuracy", "throughput")  # what each returned value means, in order


@dataclass
class Objective:
    """``Objective(data, space, base=...)(trial)`` trains ``suggest(trial, space)`` on ``data``.

    ``data`` is loaded once per process by the caller and reused by every trial. ``base``
    holds the fields that are not searched (epochs, seed, device, dataset, threads).
    ``stamps`` are user attributes written on every trial (see ``run_stamps``).
    """

    data: Dataset
    space: SearchSpace = field(default_factory=lambda: dict(DEFAULT_SPACE))
    base: TrainConfig = field(default_factory=TrainConfig)
    objectives: Sequence[str] = ("accuracy",)
    stamps: Mapping[str, Any] = field(default_factory=dict)
    # Accounting for this process, read by the study to split wall time into training and
    # Optuna's own work (sampler, pruner, storage).
    compute_seconds: float = 0.0  # model building, training, evaluation
    optuna_seconds: float = 0.0  # Optuna calls inside the objective (the rest is outside it)

    def __post_init__(self) -> None:
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives or self.objectives[0] != "accuracy":
            raise ValueError(
                f"objectives must start with 'accuracy' and be among {OBJECTIVES}, "
                f"got {tuple(self.objectives)}"
            )

    @property
    def prunes(self) -> bool:
        # Optuna's trial.report/should_prune work for single-objective studies only
        return len(self.objectives) == 1

    def __call__(self, trial: optuna.trial.BaseTrial) -> float | tuple[float, float]:
        start, optuna_before = time.perf_counter(), self.optuna_seconds
        try:
            return self._run(trial)
        finally:
            # everything but Optuna's calls, so a diverged or interrupted trial counts too
            spent = time.perf_counter() - start
            self.compute_seconds += spent - (self.optuna_seconds - optuna_before)

    def _run(self, trial: optuna.trial.BaseTrial) -> float | tuple[float, float]:
        with self._optuna():
            config = suggest(trial, self.space, base=self.base)
        n_params = count_parameters(build_model(config))
        with self._optuna():
            for key, value in {
                **self.stamps,
                rec.MAX_EPOCHS: config.epochs,
                rec.N_PARAMS: n_params,
                rec.SEED: config.seed,
                # the whole configuration, pinned values included: TrainConfig(**config) reruns it
                rec.CONFIG: config.to_dict(),
            }.items():
                trial.set_user_attr(key, value)

        epochs: list[EpochResult] = []
        try:
            for result in fit(config, self.data):
                epochs.append(result)
                if not self.prunes:
                    continue
                with self._optuna():
                    trial.report(result.val_accuracy, result.epoch)
                    # after the last epoch there is nothing left to save: let the trial complete
                    prune = result.epoch < config.epochs and trial.should_prune()
                if prune:
                    raise optuna.TrialPruned(
                        f"pruned after epoch {result.epoch}: val accuracy "
                        f"{result.val_accuracy:.4f}"
                    )
        except NonFiniteLossError as e:
            # an outcome of the configuration, not a bug: record it and let the study go on
            trial.set_user_attr(rec.FAIL_REASON, str(e))
            raise optuna.TrialPruned(f"diverged: {e}") from None
        finally:  # a Ctrl-C too: the trial loop (search/run.py) fails the trial with its reason
            with self._optuna():
                _record_epochs(trial, epochs)

        last = epochs[-1]
        test = evaluate(last.model, self.data.to(resolve_device(config.device)).test)
        with self._optuna():
            trial.set_user_attr(rec.TEST_ACCURACY, test.accuracy)
        if self.prunes:
            return last.val_accuracy
        return last.val_accuracy, _median_speed(epochs)

    @contextlib.contextmanager
    def _optuna(self) -> Iterator[None]:
        """Times a block of Optuna calls (sampling, pruning, storage writes)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.optuna_seconds += time.perf_counter() - start


def run_stamps(data: Dataset, *, device: str = "auto") -> dict[str, Any]:
    """Conditions every trial records: device, torch, code version, data actually used."""
    stamps: dict[str, Any] = {
        rec.DEVICE_NAME: device_name(resolve_device(device)),
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
    """HEAD of the repository holding this code, with ``-dirty`` for uncommitted changes;
    None outside git (an installed copy, say)."""
    folder = folder or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _record_epochs(trial: optuna.trial.BaseTrial, epochs: list[EpochResult]) -> None:
    trial.set_user_attr(rec.EPOCHS_RUN, len(epochs))
    trial.set_user_attr(rec.EPOCH_SECONDS, [round(e.seconds, 4) for e in epochs])
    if epochs:
        best = max(epochs, key=lambda e: e.val_accuracy)  # earliest epoch wins a tie
        trial.set_user_attr(rec.BEST_EPOCH, best.epoch)
        trial.set_user_attr(rec.IMAGES_PER_SECOND, _median_speed(epochs))


def _median_speed(epochs: list[EpochResult]) -> float:
    # the median ignores the first epoch's warm-up (allocator, thread pool) on longer runs
    return float(statistics.median(e.images_per_second for e in epochs))
