"""The extract layer of the report on studies made here (in-memory storage, no training)."""

from __future__ import annotations

import argparse
import math
import shlex

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from mnistcore.cli import add_config_arguments, config_from_args
from mnistcore.config import TrainConfig
from studies import trial_record as rec
from studies.formatting import MACHINE_DEFAULTS, format_epochs, percent, train_command
from studies.intervals import t_quantile_975
from studies.study_data import (
    extract_study,
    pareto_numbers,
    pruning_ledger,
    slugify,
    steps_per_epoch,
    study_report,
    trial_counts,
)
from studies.study_tables import learning_curves, shared_populations, timeline_rows
from tests.reports_fixtures import (
    MAX_EPOCHS,
    PLAN,
    POPULATION_PLAN,
    STEPS_PER_EPOCH,
    accuracy_curve,
    config_of,
    make_empty,
    make_only_failed,
    make_population_study,
    make_single_objective,
    make_two_objective,
)


@pytest.fixture()
def storage() -> optuna.storages.InMemoryStorage:
    return optuna.storages.InMemoryStorage()


def test_counts_best_and_stamps(storage):
    report = study_report(make_single_objective(storage))
    # PLAN: 5 complete, 3 pruned, 2 failed.
    assert (report.counts.complete, report.counts.pruned, report.counts.failed) == (5, 3, 2)
    complete = [i for i, (state, _) in enumerate(PLAN) if state == TrialState.COMPLETE]
    best = max(complete, key=lambda i: accuracy_curve(i, MAX_EPOCHS)[MAX_EPOCHS])
    assert report.best.number == best
    assert report.best.test_accuracy == pytest.approx(
        accuracy_curve(best, MAX_EPOCHS)[MAX_EPOCHS] - 0.004
    )
    assert report.dataset == "fashion-mnist"
    assert report.stamps["torch_version"] == "2.14.1+cu130"
    assert report.objective_names == ("val accuracy",)
    # Trials start 40 s apart; the last one (trial 9) failed after 3 s.
    assert report.wall_seconds == pytest.approx(40 * 9 + 3)


def test_pruning_ledger_counts_complete_and_pruned_trials(storage):
    ledger = study_report(make_single_objective(storage)).ledger
    # 5 complete x 6 epochs + pruned after 2, 1 and 3 epochs; failed trials are left out.
    assert ledger.epochs_spent == 5 * MAX_EPOCHS + 2 + 1 + 3
    assert ledger.epochs_without_pruning == 8 * MAX_EPOCHS
    assert ledger.pruned_trials == 3
    assert ledger.saved_fraction == pytest.approx(1 - 36 / 48)


def test_ledger_falls_back_to_intermediate_values_and_study_max_epochs():
    trials = [
        create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.5, 2: 0.6}),
        create_trial(value=0.9, intermediate_values={1: 0.7, 2: 0.8, 3: 0.9}),
        create_trial(value=0.8),  # nothing to count its epochs by
    ]
    ledger = pruning_ledger(trials, default_max_epochs=3)
    assert (ledger.epochs_spent, ledger.epochs_without_pruning, ledger.unknown) == (5, 6, 1)
    # No max_epochs anywhere: nothing can be counted, and no fraction is claimed.
    assert pruning_ledger(trials).saved_fraction is None


def test_trials_table_is_best_first_with_unfinished_last(storage):
    report = study_report(make_single_objective(storage))
    table = report.trials
    assert len(table) == len(PLAN)
    values = table["val accuracy"].tolist()
    finished = [v for v in values if not math.isnan(v)]
    assert finished == sorted(finished, reverse=True)
    assert values[: len(finished)] == finished  # pruned and failed rows after them
    assert {"param lr", "param momentum", "test accuracy", "fail reason"} <= set(table.columns)
    # Headers are words, not the record's attribute names (test_accuracy, images_per_second).
    headers = [c for c in table.columns if not c.startswith("param ")]
    assert not [c for c in headers if "_" in c], headers
    assert {"img/s", "best epoch", "epochs run", "seconds"} <= set(headers)
    assert table.loc[0, "trial"] == report.best.number


def test_learning_curves_keep_pruned_trials_cut(storage):
    curves = study_report(make_single_objective(storage)).curves
    pruned_last = curves[curves["state"] == "pruned"].groupby("trial")["step"].max()
    # Pruned trials stop where the pruner cut them (PLAN: trials 2, 4, 7 after 2, 1, 3).
    assert pruned_last.to_dict() == {2: 2, 4: 1, 7: 3}
    complete_last = curves[curves["state"] == "complete"].groupby("trial")["step"].max()
    assert set(complete_last) == {MAX_EPOCHS}


def test_throughput_points_use_last_epoch_of_pruned_trials(storage):
    points = study_report(make_single_objective(storage)).throughput
    assert set(points["state"]) == {"complete", "pruned"}
    row = points[points["trial"] == 4].iloc[0]
    assert row["val_accuracy"] == accuracy_curve(4, 1)[1]


def test_two_objective_study(storage):
    study = make_two_objective(storage)
    report = study_report(study)
    assert report.is_multi_objective
    assert report.objective_names == ("val accuracy", "img/s")
    assert report.curves.empty
    # Our Pareto front is Optuna's.
    numbers = pareto_numbers(study.get_trials(), study.directions)
    assert sorted(numbers) == sorted(t.number for t in study.best_trials)
    assert len(report.front) == len(numbers) >= 2
    # The best trial is the most accurate one, whatever its speed.
    assert report.best.values[0] == max(t.values[0] for t in study.best_trials)
    assert report.best.images_per_second is not None
    assert report.fail_reasons == [(8, "diverged: loss is nan")]


def test_pareto_numbers_drop_dominated_trials():
    trials = [
        create_trial(values=[0.9, 100.0]),
        create_trial(values=[0.8, 200.0]),
        create_trial(values=[0.7, 150.0]),  # dominated by trial 1
        create_trial(values=[0.9, 100.0]),  # a tie dominates nobody
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    both_max = [StudyDirection.MAXIMIZE, StudyDirection.MAXIMIZE]
    assert pareto_numbers(trials, both_max) == [0, 1, 3]


def test_empty_study(storage):
    report = study_report(make_empty(storage))
    assert report.counts.total == 0
    assert report.best is None
    assert report.wall_seconds is None
    assert report.ledger.saved_fraction is None
    assert report.trials.empty and report.curves.empty and report.throughput.empty


def test_only_failed_trials(storage):
    report = study_report(make_only_failed(storage))
    assert report.counts.failed == 3 and report.best is None
    assert [reason for _, reason in report.fail_reasons] == ["boom 0", "boom 1", "boom 2"]
    assert report.ledger.trials == 0


def test_trials_without_user_attrs():
    trials = [
        create_trial(
            value=0.5,
            params={"lr": 0.1},
            distributions={"lr": optuna.distributions.FloatDistribution(0, 1)},
        )
    ]
    report = extract_study(
        name="bare", directions=[StudyDirection.MAXIMIZE], user_attrs={}, trials=trials
    )
    # Missing attrs stay missing; nothing is invented.
    assert report.best.test_accuracy is None and report.stamps == {}
    assert report.best.config == {}  # a study from before the config was recorded
    assert report.throughput.empty
    assert report.ledger.unknown == 1


def test_trial_counts_and_slugs():
    counts = trial_counts([create_trial(value=1.0), create_trial(state=TrialState.FAIL)])
    assert (counts.complete, counts.failed, counts.total) == (1, 1, 2)
    assert slugify("fashion mnist/lr sweep") == "fashion-mnist-lr-sweep"
    assert slugify("///") == "study"


def test_learning_curves_of_no_trials():
    assert list(learning_curves([]).columns) == ["trial", "state", "step", "epoch", "value"]


def test_format_epochs():
    # Whole epochs print as before (ints); fractions of an epoch with 2 decimals.
    assert [format_epochs(x) for x in (13, 13.0, 0, 0.3333, 0.1111, 9.2221)] == [
        "13", "13", "0", "0.33", "0.11", "9.22",
    ]  # fmt: skip
    # A sum of rounded ninths that is whole at 2 decimals prints whole.
    assert format_epochs(0.9999) == "1"
    assert format_epochs(None) == "–" and format_epochs(math.nan) == "–"


def test_steps_per_epoch_defaults_to_one():
    assert steps_per_epoch({rec.STEPS_PER_EPOCH: 9}) == 9
    # Older studies did not record it: a step was an epoch.
    assert steps_per_epoch({}) == 1 and steps_per_epoch({rec.STEPS_PER_EPOCH: 0}) == 1


def _pruned_after(step: int) -> list:
    return [n for n, (_, _, at) in POPULATION_PLAN.items() if at == step]


def test_ledger_counts_fractions_of_an_epoch(storage):
    report = study_report(make_population_study(storage))
    ledger = report.ledger
    # 4 complete trials x 2 epochs + trials pruned after 1/9 and 3/9 of the first epoch,
    # as the objective records them (epochs_run to 4 decimals).
    spent = 4 * 2 + len(_pruned_after(1)) * 0.1111 + len(_pruned_after(3)) * 0.3333
    assert ledger.epochs_spent == pytest.approx(spent) == 9.2221
    assert ledger.epochs_without_pruning == 9 * 2
    assert (ledger.trials, ledger.pruned_trials) == (9, 5)
    assert format_epochs(ledger.epochs_spent) == "9.22"
    assert report.steps_per_epoch == STEPS_PER_EPOCH


def test_ledger_falls_back_to_steps_over_steps_per_epoch():
    trials = [
        create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.5, 3: 0.6}),
        create_trial(value=0.9, intermediate_values={1: 0.7, 9: 0.8, 18: 0.9}),
    ]
    ledger = pruning_ledger(trials, default_max_epochs=2, steps_per_epoch=9)
    # No epochs_run recorded: the last step, 3, is a third of an epoch.
    assert ledger.epochs_spent == pytest.approx(2 + 3 / 9, abs=1e-4)
    assert ledger.epochs_without_pruning == 4


def test_fractional_epochs_stay_fractional(storage):
    report = study_report(make_population_study(storage))
    table = report.trials.set_index("trial")
    # Read as recorded, not truncated to 0.
    assert table.loc[1, "epochs run"] == 0.1111 and table.loc[2, "best epoch"] == 0.3333
    assert table.loc[0, "epochs run"] == 2
    assert report.best.epochs_run == 2 and isinstance(report.best.epochs_run, int)


def test_learning_curves_have_an_epoch_column(storage):
    curves = study_report(make_population_study(storage)).curves
    # Trial 1 was pruned at the first rung: one value, at step 1 = 1/9 epoch.
    one = curves[curves["trial"] == 1]
    assert one[["step", "epoch"]].values.tolist() == [[1, pytest.approx(1 / 9)]]
    complete = curves[curves["trial"] == 0]
    assert complete["step"].tolist() == [1, 3, 9, 18]
    assert complete["epoch"].tolist() == pytest.approx([1 / 9, 1 / 3, 1, 2])
    # One step per epoch (older studies, mnist-5k): the epoch is the step.
    old = study_report(make_single_objective(optuna.storages.InMemoryStorage())).curves
    assert (old["epoch"] == old["step"]).all()


def test_trials_table_shows_populations(storage):
    table = study_report(make_population_study(storage)).trials.set_index("trial")
    assert table.loc[7, "population"] == "gpu-box-101-4"
    assert table.loc[7, "member"] == 2
    # Studies from before populations have no such columns (nothing recorded: dropped).
    old = study_report(make_single_objective(optuna.storages.InMemoryStorage())).trials
    assert not {"population", "member"} & set(old.columns)


def test_shared_populations_group_trials_trained_together(storage):
    trials = make_population_study(storage).get_trials()
    populations = shared_populations(trials)
    # Trial 6 trained alone (a population of one): it shared nothing.
    assert [(p.id, p.trials, p.size) for p in populations] == [
        ("gpu-box-101-0", (0, 1, 2, 3), 4),
        ("gpu-box-101-4", (4, 5, 7, 8), 4),
    ]
    first = populations[0]
    assert (first.end - first.start).total_seconds() == 2.0 * 18  # the complete member's end
    assert shared_populations(make_single_objective(storage, name="old").get_trials()) == ()


def test_timeline_rows_put_a_population_together(storage):
    rows = timeline_rows(make_population_study(storage).get_trials())
    # Trial 6 started between population B's trials (numbers 4, 5 | 7, 8) on another worker;
    # B's trials are drawn together, in member order, and trial 6 after them.
    assert rows["trial"].tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 6]
    assert rows["population_id"].fillna("none").tolist()[4:] == ["gpu-box-101-4"] * 4 + ["none"]
    # No populations: trials by start, as Optuna draws them.
    old = timeline_rows(make_single_objective(storage, name="old").get_trials())
    assert old["trial"].tolist() == list(range(len(PLAN)))
    assert old["population_id"].isna().all()


def _rerun(command: str) -> TrainConfig:
    """The TrainConfig that `python -m mnistcore` builds from ``command`` (its own flags)."""
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "mnistcore"]
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(words[3:]))


def test_best_trial_carries_its_whole_config(storage):
    report = study_report(make_single_objective(storage))
    config = report.best.config
    # Pinned values too, not only the searched params (depth 2, one-cycle, hidden 128 ...).
    assert config == config_of(report.best.number)
    assert {k: config[k] for k in ("depth", "schedule", "hidden", "batch_size")} == {
        "depth": 2, "schedule": "onecycle", "hidden": 128, "batch_size": 128,
    }  # fmt: skip
    assert report.best.params.items() <= config.items()


def test_train_command_trains_the_same_config_again(storage):
    config = study_report(make_single_objective(storage)).best.config
    command = train_command(config)
    # Parsed by mnistcore's own flags, the command gives back exactly the trial's config.
    assert _rerun(command) == TrainConfig(**config)
    words = shlex.split(command)
    defaults = TrainConfig()
    for name, value in config.items():
        flag = "--" + name.replace("_", "-")
        if name in MACHINE_DEFAULTS and value == getattr(defaults, name):
            continue
        if isinstance(value, bool):
            assert (flag if value else f"--no-{flag[2:]}") in words
        else:
            assert words[words.index(flag) + 1] == str(value)
    # Machine fields at their defaults are left out: the command runs on any machine.
    assert not {"--device", "--threads", "--precision", "--channels-last"} & set(words)


def test_train_command_keeps_machine_fields_that_are_not_default():
    config = TrainConfig(
        lr=1e-05, device="cuda", threads=4, channels_last=False, precision="bf16", batch_norm=True
    ).to_dict()
    command = train_command(config)
    words = shlex.split(command)
    assert "--batch-norm" in words and words[words.index("--lr") + 1] == "1e-05"
    for flag, value in (("--device", "cuda"), ("--precision", "bf16"), ("--threads", "4")):
        assert words[words.index(flag) + 1] == value
    assert "--no-channels-last" in words
    assert _rerun(command) == TrainConfig(**config)
    with pytest.raises(ValueError, match="config={}"):
        train_command({})


def test_best_epoch_carries_the_value_it_reported():
    # The value of a trial is its last epoch's; its best epoch may be an earlier one.
    trial = create_trial(
        value=0.90,
        intermediate_values={1: 0.85, 2: 0.93, 3: 0.90},
        user_attrs={rec.BEST_EPOCH: 2, rec.EPOCHS_RUN: 3},
    )
    best = extract_study(
        name="s", directions=[StudyDirection.MAXIMIZE], user_attrs={}, trials=[trial]
    ).best
    assert (best.values[0], best.epochs_run) == (0.90, 3)
    assert (best.best_epoch, best.best_epoch_value) == (2, 0.93)
    # Within-epoch reports (9 steps an epoch): the best epoch's value is at its step.
    fine = create_trial(value=0.8, intermediate_values={3: 0.82, 9: 0.8}, user_attrs={
        rec.BEST_EPOCH: 0.3333, rec.EPOCHS_RUN: 1})  # fmt: skip
    best = extract_study(name="s", directions=[StudyDirection.MAXIMIZE], trials=[fine],
                         user_attrs={rec.STEPS_PER_EPOCH: 9}).best  # fmt: skip
    assert best.best_epoch_value == 0.82


def test_accuracies_print_as_percentages():
    assert [percent(0.96), percent(0.9725), percent(None), percent(math.nan)] == [
        "96.00%", "97.25%", "–", "–",
    ]  # fmt: skip
    assert percent(0.25, 0) == "25%"


def test_t_quantile_without_scipy():
    # Student's t 97.5 % quantiles, as tables print them
    known = {1: 12.706, 2: 4.303, 4: 2.776, 30: 2.042}
    assert {df: round(t_quantile_975(df), 3) for df in known} == known
    # many degrees of freedom: the normal's 1.96
    assert t_quantile_975(100_000) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError, match="df=0"):
        t_quantile_975(0)
