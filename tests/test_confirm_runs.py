"""How confirmation runs: each seed alone through ``mnistcore.fit`` with its curve stored, one
process at a time under the study lock, a failed weight upload that keeps the seeds, and auto's
budget (issue 19: items 2, 3, 7 and 8). Tiny synthetic studies, in-process."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

import search.confirm as confirm_module
from mnistcore import TrainConfig, fit, load_dataset
from search.confirm import ConfirmSpec, confirm, parse_confirm, plan
from search.console import setup_logging
from search.locks import study_lock
from studies import trial_record as rec
from studies.confirmation import extract_confirmation, stored_records
from studies.storage import open_storage
from studies.study_data import extract_study

NAME = "tiny"
CONFIG = TrainConfig(
    dataset="synthetic", synthetic_size=300, epochs=2, width=4, depth=1, hidden=16,
    batch_size=64, schedule="onecycle", lr=0.05, device="cpu", threads=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", synthetic_size=300)


def one_trial_study(journal: Path) -> optuna.Study:
    """A study whose one complete trial is CONFIG with seed 0 (its confirmation: 1, 2, ...)."""
    storage, _ = open_storage(str(journal))
    study = optuna.create_study(study_name=NAME, storage=storage, direction="maximize")
    study.add_trial(
        create_trial(value=0.5, user_attrs={rec.CONFIG: CONFIG.to_dict(), rec.SEED: 0})
    )
    return study


def record_of(study: optuna.Study) -> dict:
    (record,) = stored_records(study.user_attrs).values()
    return record


def test_each_seed_trains_alone_and_its_curve_retrains_exactly(tmp_path, data) -> None:
    study = one_trial_study(tmp_path / "j.log")
    confirm(study, data, ConfirmSpec(1, 2), device="cpu", threads=1)
    record = record_of(study)
    assert record["seeds"] == [1, 2] and len(record["curves"]) == 2
    for seed, curve, val in zip(record["seeds"], record["curves"], record["val"], strict=True):
        # what python -m mnistcore --recipe trains with that seed, epoch by epoch
        again = [epoch.val_accuracy for epoch in fit(CONFIG.replace(seed=seed), data)]
        assert curve == again and len(curve) == CONFIG.epochs and val == curve[-1]


def test_a_record_from_before_curves_is_still_read_and_extended(tmp_path, data) -> None:
    study = one_trial_study(tmp_path / "j.log")
    confirm(study, data, ConfirmSpec(1, 2), device="cpu", threads=1)
    old = record_of(study)
    del old["curves"]  # as an older version stored it
    study.set_user_attr(rec.CONFIRMED_PREFIX + "0", old)
    assert extract_confirmation(study.user_attrs, study.trials).winner.seeds == (1, 2)
    confirm(study, data, ConfirmSpec(1, 3), device="cpu", threads=1)  # one more seed
    record = record_of(study)
    assert record["seeds"] == [1, 2, 3]
    assert record["curves"][:2] == [None, None] and len(record["curves"][2]) == CONFIG.epochs


def test_a_failed_weight_upload_warns_and_keeps_the_seeds(tmp_path, data, capsys) -> None:
    setup_logging(quiet=False)
    study = one_trial_study(tmp_path / "j.log")
    gone = optuna.artifacts.FileSystemArtifactStore(tmp_path / "removed")  # never created
    confirm(study, data, ConfirmSpec(1, 2), device="cpu", threads=1, store=gone)
    record = record_of(study)
    assert record["seeds"] == [1, 2] and None not in record["val"]
    assert record["weights"] == [None, None]
    assert "trial 0's seed 1 weights not kept" in capsys.readouterr().err


def test_two_processes_confirm_once_under_the_study_lock(tmp_path, data, monkeypatch) -> None:
    journal = tmp_path / "j.log"
    one_trial_study(journal)
    together = threading.Barrier(2, timeout=2)
    calls = []

    def fit_waiting_for_the_other(config, data):
        calls.append(config.seed)
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()  # without the lock both processes would be training now
        yield from fit(config, data)

    monkeypatch.setattr(confirm_module, "fit", fit_waiting_for_the_other)
    errors = []

    def process() -> None:
        try:
            storage, storage_name = open_storage(str(journal))  # each opens its own
            study = optuna.load_study(study_name=NAME, storage=storage)
            lock = study_lock(storage, storage_name, NAME)
            confirm(study, data, ConfirmSpec(1, 2), device="cpu", threads=1, lock=lock)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=process) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    # one process trained the two seeds; the other found them stored
    assert sorted(calls) == [1, 2]
    storage, _ = open_storage(str(journal))
    assert record_of(optuna.load_study(study_name=NAME, storage=storage))["seeds"] == [1, 2]


# ---- auto's budget ------------------------------------------------------------------------

START = datetime(2026, 1, 1)


def timed(number: int, value: float, begin: float, end: float, **attrs) -> FrozenTrial:
    config = TrainConfig(lr=0.01 * (number + 1)).to_dict()
    return FrozenTrial(
        number=number, state=attrs.pop("state", TrialState.COMPLETE), value=value, values=None,
        datetime_start=START + timedelta(seconds=begin),
        datetime_complete=START + timedelta(seconds=end),
        params={}, distributions={}, user_attrs={rec.CONFIG: config, rec.SEED: 0, **attrs},
        system_attrs={}, intermediate_values={}, trial_id=number,
    )  # fmt: skip


def confirmed(trial: FrozenTrial, seconds: float) -> dict:
    return {
        "trial": trial.number, "config": trial.user_attrs[rec.CONFIG], "search_val": trial.value,
        "search_test": None, "seeds": [1, 2, 3], "val": [0.9] * 3, "test": [0.9] * 3,
        "weights": [None] * 3, "diverged": [], "seconds": seconds, "n_val": 400, "n_test": 1000,
    }  # fmt: skip


def test_a_recovered_trial_counts_up_to_its_last_report_not_the_downtime() -> None:
    reported = (START + timedelta(seconds=10)).astimezone(UTC).isoformat()
    # a worker died 10 s into its trial; a rerun three days later failed it
    dead = timed(1, 0.0, 0, 3 * 86400, state=TrialState.FAIL, **{rec.LAST_REPORT: reported})
    assert rec.search_seconds([dead, timed(2, 0.9, 100, 105)]) == 10 + 5
    # failed before its first report: nothing counted
    assert rec.search_seconds([timed(1, 0.0, 0, 3 * 86400, state=TrialState.FAIL)]) == 0


def test_auto_looks_past_a_configuration_over_budget() -> None:
    study = optuna.create_study(direction="maximize")
    best, costly, free = timed(0, 0.99, 0, 1), timed(1, 0.98, 10, 110), timed(2, 0.97, 120, 121)
    for trial in (best, costly, free):
        study.add_trial(trial)
    # the third was confirmed by an earlier run: it costs nothing and stays in the top
    study.set_user_attr(rec.CONFIRMED_PREFIX + "2", confirmed(free, 1.0))
    the_plan = plan(study, parse_confirm("auto"))  # budget: 30 % of 102 s
    assert [t.number for t in the_plan.top] == [0, 2] and list(the_plan.to_train) == [0]
    assert the_plan.overrun() is None
    # when earlier confirmations spent the budget, the log says so, not "the best alone"
    study.set_user_attr(rec.CONFIRMED_PREFIX + "2", confirmed(free, 40.0))
    overrun = plan(study, parse_confirm("auto")).overrun()
    assert "earlier runs spent 40 s" in overrun and "alone" not in overrun


# ---- --timeout bounds the whole run -------------------------------------------------------


def test_the_confirmation_is_cut_to_what_the_timeout_leaves() -> None:
    study = optuna.create_study(direction="maximize")
    for number in range(3):  # three configurations, 10 s a run
        study.add_trial(timed(number, 0.99 - 0.01 * number, 20 * number, 20 * number + 10))
    # 25 s left: two seeds of the best fit, the other configurations do not
    the_plan = plan(study, ConfirmSpec(3, 3), seconds=25)
    assert the_plan.to_train == {0: [1, 2]} and [t.number for t in the_plan.top] == [0]
    assert the_plan.cut == [
        "1 of the best configuration's 3 seeds", "trial 1's configuration",
        "trial 2's configuration",
    ]  # fmt: skip
    # nothing left: still two seeds of the best, the fewest that give a spread
    assert plan(study, ConfirmSpec(3, 3), seconds=0).to_train == {0: [1, 2]}
    assert plan(study, ConfirmSpec(3, 3), seconds=100).cut == []


def test_a_timeout_bounds_the_search_and_its_confirmation(tmp_path, capsys) -> None:
    from search.cli import main

    tiny = ["--dataset", "synthetic", "--synthetic-size", "600", "--epochs", "3", "--width",
            "4", "--depth", "1", "--hidden", "16", "--device", "cpu", "--threads", "1",
            "--no-report", "--quiet", "--pruner", "none"]  # fmt: skip
    start = time.monotonic()
    assert main([*tiny, "--n-trials", "1000", "--timeout", "12", "--confirm", "1:3",
                 "--storage", str(tmp_path / "j.log")]) == 0  # fmt: skip
    wall = time.monotonic() - start
    out = capsys.readouterr().out
    assert "confirmed winner" in out and "no trial started after" in out
    assert wall < 12 * 1.1, out


def test_the_report_times_a_trial_from_its_own_groups_start() -> None:
    # Two architectures asked together: the second group trained from t=30 s to t=50 s, though
    # Optuna started its trial at t=0 when it was asked (issue 19 item 5, the report's side).
    started = (START + timedelta(seconds=30)).astimezone(UTC).isoformat()
    first = timed(0, 0.9, 0, 30)
    second = timed(1, 0.95, 0, 50, **{rec.TRAINING_STARTED: started})
    report = extract_study(
        name="s", directions=[StudyDirection.MAXIMIZE], user_attrs={}, trials=[first, second]
    )
    assert report.best is not None and report.best.number == 1
    assert report.best.seconds == 20.0
    assert rec.search_seconds([first, second]) == 50.0  # the union of 0-30 and 30-50


def test_a_trial_too_slow_to_finish_and_confirm_is_stopped_by_the_timeout(tmp_path, capsys):
    # issue 19 item 1: the study has a cheap complete trial; the next one is far slower (its
    # confirmation alone would overrun --timeout), so it stops after its first report and the
    # cheap one is confirmed, within the timeout
    from search.cli import main

    size, journal = 5000, tmp_path / "j.log"
    cheap = CONFIG.replace(synthetic_size=size)
    storage, _ = open_storage(str(journal))
    study = optuna.create_study(study_name=NAME, storage=storage, direction="maximize")
    study.add_trial(create_trial(value=0.5, user_attrs={rec.CONFIG: cheap.to_dict(), rec.SEED: 0}))
    slow = ["--dataset", "synthetic", "--synthetic-size", str(size), "--epochs", "9",
            "--width", "64", "--depth", "2", "--hidden", "128", "--device", "cpu",
            "--no-report", "--quiet", "--pruner", "none", "--baseline", "none"]  # fmt: skip
    start = time.monotonic()
    assert main([*slow, "--n-trials", "2", "--timeout", "20", "--confirm", "1:2",
                 "--storage", str(journal), "--study-name", NAME]) == 0  # fmt: skip
    wall, out = time.monotonic() - start, capsys.readouterr().out
    trial = optuna.load_study(study_name=NAME, storage=storage).trials[1]
    assert trial.state == TrialState.PRUNED, out
    assert trial.user_attrs[rec.FAIL_REASON].startswith("stopped by --timeout"), out
    assert "--timeout stopped trial 1 early" in out, out
    assert trial.user_attrs[rec.EPOCHS_RUN] < 9 and "confirmed winner: trial 0" in out, out
    assert wall < 20 * 1.1, out


def test_the_reserve_counts_the_baselines_own_seconds_once_timed(tmp_path, data) -> None:
    from search.confirm import Baseline
    from search.deadline import timed_baseline

    study = optuna.create_study(direction="maximize")
    study.add_trial(timed(0, 0.9, 0, 10))  # 10 s a seed
    untimed = Baseline("tutorial", CONFIG)
    assert plan(study, ConfirmSpec(1, 3), seconds=0, baseline=untimed).estimate == 2 * 20
    cheap = Baseline("tutorial", CONFIG, seed_seconds=2.0)
    assert plan(study, ConfirmSpec(1, 3), seconds=0, baseline=cheap).estimate == 2 * 12
    # timed here on the data; a study whose baseline record matches gives its measured seconds
    stored = one_trial_study(tmp_path / "j.log")
    timed_here = timed_baseline(untimed, stored, data, CONFIG)
    assert 0 < timed_here.seed_seconds < 60 and timed_here.config == CONFIG
    config = CONFIG.replace(dataset=data.name).to_dict()
    stored.set_user_attr(rec.BASELINE, {"config": config, "seeds": [1, 2], "seconds": 8.0})
    assert timed_baseline(untimed, stored, data, CONFIG).seed_seconds == 4.0
