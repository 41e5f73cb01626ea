"""The objective on tiny synthetic data: one report per epoch, pruning, divergence, stamps."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from mnistcore import TrainConfig, load_dataset
from search.objective import Objective, run_stamps
from search.space import build_space

# A small, fast corner of the space: each trial trains in a fraction of a second.
TINY = {"width": "4", "depth": "1", "hidden": "16", "batch_size": "64", "lr": "0.05"}
STAMPS = {"device_name", "torch_version", "dataset", "dataset_source", "split_sizes"}


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("synthetic", synthetic_size=300)


def make_objective(data, *, epochs: int = 3, objectives=("accuracy",), **space: str) -> Objective:
    return Objective(
        data,
        build_space(overrides={**TINY, **space}),
        base=TrainConfig(epochs=epochs, dataset="synthetic", device="cpu", threads=1),
        objectives=objectives,
        stamps=run_stamps(data, device="cpu"),
    )


def test_reports_validation_accuracy_once_per_epoch(tiny_data) -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(make_objective(tiny_data, epochs=3), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    # steps are the 1-based epochs; the value is the last epoch's validation accuracy
    assert sorted(trial.intermediate_values) == [1, 2, 3]
    assert trial.value == trial.intermediate_values[3]


def test_completed_trial_records_its_conditions(tiny_data) -> None:
    study = optuna.create_study(direction="maximize")
    study.optimize(make_objective(tiny_data, epochs=2), n_trials=1)
    attrs = study.trials[0].user_attrs
    assert set(attrs) >= STAMPS
    assert 0 <= attrs["test_accuracy"] <= 1
    assert attrs["epochs_run"] == attrs["max_epochs"] == 2
    assert len(attrs["epoch_seconds"]) == 2
    assert attrs["best_epoch"] in (1, 2)
    assert attrs["images_per_second"] > 0 and attrs["n_params"] > 0
    assert attrs["dataset"] == "synthetic" and attrs["seed"] == 0
    assert attrs["split_sizes"] == {"train": 270, "val": 30, "test": 60}
    assert "fail_reason" not in attrs


def test_a_bad_trial_is_pruned_after_its_first_epoch(tiny_data) -> None:
    # accuracy can never reach 1.1: this pruner stops every trial at its first report
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1)
    )
    study.optimize(make_objective(tiny_data, epochs=4), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]
    # pruned trials still say how far they got and how fast they ran
    assert trial.user_attrs["epochs_run"] == 1
    assert trial.user_attrs["images_per_second"] > 0
    assert "test_accuracy" not in trial.user_attrs


def test_a_diverging_trial_is_pruned_with_its_reason_and_the_study_goes_on(tiny_data) -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(make_objective(tiny_data, epochs=2, lr="1e6", momentum="0.9"), n_trials=1)
    study.optimize(make_objective(tiny_data, epochs=2), n_trials=1)
    diverged, healthy = study.trials
    assert diverged.state == TrialState.PRUNED
    assert "non-finite training loss" in diverged.user_attrs["fail_reason"]
    assert healthy.state == TrialState.COMPLETE


def test_two_objectives_return_accuracy_and_speed_without_reports(tiny_data) -> None:
    study = optuna.create_study(directions=["maximize", "maximize"])
    objective = make_objective(tiny_data, epochs=2, objectives=("accuracy", "throughput"))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    accuracy, speed = trial.values
    assert 0 <= accuracy <= 1 and speed == trial.user_attrs["images_per_second"]
    # Optuna cannot prune multi-objective studies, so nothing is reported
    assert trial.intermediate_values == {}


def test_runs_without_a_study(tiny_data) -> None:
    objective = make_objective(tiny_data, epochs=1)
    params = {"momentum": 0.9, "dropout": 0.0, "batch_norm": False, "weight_decay": 0.0}
    params |= {"width": 4, "depth": 1, "hidden": 16, "batch_size": 64, "lr": 0.05}
    value = objective(optuna.trial.FixedTrial({**params, "schedule": "onecycle"}))
    assert 0 <= value <= 1
    assert objective.compute_seconds > 0
