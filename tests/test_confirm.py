"""Confirmation over seeds, intervals, kept weights and the export (issue: results you can trust).

The studies here are tiny (300 synthetic images, a one-block net of width 4, two epochs), run
in-process through ``search.cli.main``; the export runs as a real subprocess once.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState, create_trial
from scipy.stats import binomtest
from scipy.stats import t as student_t

from mnistcore import TrainConfig, build_model, evaluate, load_dataset, read_recipe
from search.artifacts import load_weights
from search.cli import main
from search.confirm import ConfirmSpec, parse_confirm, plan
from studies import trial_record as rec
from studies.confirmation import extract_confirmation, stored_records
from studies.intervals import seed_spread, wilson
from studies.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "2",
    "--width", "4", "--depth", "1", "--hidden", "16", "--batch-size", "64",
    "--device", "cpu", "--threads", "1", "--no-report", "--quiet",
]  # fmt: skip
NAME = "synthetic-accuracy"


def load(journal: Path) -> optuna.Study:
    storage, _ = open_storage(str(journal))
    return optuna.load_study(study_name=NAME, storage=storage)


def tiny_data():
    return load_dataset("synthetic", synthetic_size=300)


# ---- intervals ----------------------------------------------------------------------------


def test_wilson_matches_known_values() -> None:
    # the textbook case: 50 of 100 -> 0.4038..0.5962
    low, high = wilson(0.5, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    # scipy's Wilson interval, on the default set's 400 validation images
    for correct in (389, 400, 0, 200):
        expected = binomtest(correct, 400).proportion_ci(method="wilson")
        got = wilson(correct / 400, 400)
        assert got.low == pytest.approx(expected.low, abs=1e-12)
        assert got.high == pytest.approx(expected.high, abs=1e-12)
    # at 100 % the interval is not zero-wide
    assert wilson(1.0, 400).low < 1.0


def test_seed_spread_is_the_student_t_interval() -> None:
    values = [0.97, 0.9725, 0.98]
    spread = seed_spread(values)
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = student_t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert spread.mean == pytest.approx(mean)
    assert spread.sd == pytest.approx(sd)
    assert spread.interval.low == pytest.approx(mean - half)
    assert spread.interval.high == pytest.approx(mean + half)
    # 4.30 is t(2)'s 97.5 % quantile: three seeds give a wide interval
    assert student_t.ppf(0.975, 2) == pytest.approx(4.3027, abs=1e-4)
    # one seed: a mean, no spread
    assert seed_spread([0.9]).interval is None
    # an accuracy's interval stays inside [0, 1]
    assert seed_spread([1.0, 0.9, 1.0]).interval.high == 1.0


# ---- the flag -----------------------------------------------------------------------------


def test_confirm_flag_values() -> None:
    assert parse_confirm("3:5") == ConfirmSpec(3, 5)
    assert parse_confirm("0") == ConfirmSpec(0, 0)
    assert parse_confirm("auto").auto
    for bad, words in (("3", "TOP:SEEDS"), ("3:1", "SEEDS must be >= 2"), ("0:3", "TOP")):
        with pytest.raises(ValueError, match=words):
            parse_confirm(bad)


def test_a_bad_confirm_flag_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "search.study", "--confirm", "3:1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "SEEDS must be >= 2" in result.stderr


# ---- confirmation -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory) -> Path:
    """A tiny study of 5 trials confirmed with --confirm 2:3."""
    journal = tmp_path_factory.mktemp("confirmed") / "journal.log"
    assert main([*TINY, "--n-trials", "5", "--confirm", "2:3", "--storage", str(journal)]) == 0
    return journal


def test_confirmation_is_stored_with_each_seed(confirmed: Path) -> None:
    study = load(confirmed)
    records = stored_records(study.user_attrs)
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(records) == min(2, len(complete))
    for number, record in records.items():
        trial = study.trials[number]
        # new seeds: never the search's own
        assert record["seeds"] == [trial.user_attrs[rec.SEED] + i for i in (1, 2, 3)]
        assert len(record["val"]) == len(record["test"]) == 3
        assert record["search_val"] == trial.value
        assert record["n_val"] == trial.user_attrs[rec.SPLIT_SIZES]["val"]
    confirmation = extract_confirmation(study.user_attrs, study.get_trials())
    # the winner has the best mean val
    assert confirmation.winner.val.mean == max(c.val.mean for c in confirmation.configs)
    settings = study.user_attrs[rec.CONFIRM_SETTINGS]
    assert settings["seeds"] == 3 and settings["search_seconds"] > 0


def test_a_rerun_does_not_confirm_again(confirmed: Path, capsys) -> None:
    before = stored_records(load(confirmed).user_attrs)
    files = sorted(p.name for p in (confirmed.parent / "journal-artifacts").iterdir())
    loud = [a for a in TINY if a != "--quiet"]
    # the study has its 5 trials: nothing to search, nothing to confirm
    assert main([*loud, "--n-trials", "5", "--confirm", "2:3", "--storage",
                 str(confirmed)]) == 0  # fmt: skip
    assert stored_records(load(confirmed).user_attrs) == before
    assert sorted(p.name for p in (confirmed.parent / "journal-artifacts").iterdir()) == files
    assert "already confirmed, nothing to train" in capsys.readouterr().err


def test_a_new_trial_in_the_top_is_the_only_one_confirmed(confirmed: Path) -> None:
    study = load(confirmed)
    best = max(
        (t for t in study.get_trials() if t.state == TrialState.COMPLETE), key=lambda t: t.value
    )
    # a better trial with another configuration enters the top
    config = {**best.user_attrs[rec.CONFIG], "lr": 0.0123}
    study.add_trial(create_trial(
        value=1.0, params={}, distributions={},
        user_attrs={rec.CONFIG: config, rec.SEED: 0, **{
            k: best.user_attrs[k] for k in (rec.SPLIT_SIZES,)}},
    ))  # fmt: skip
    new = study.get_trials()[-1].number
    the_plan = plan(study, ConfirmSpec(2, 3))
    assert list(the_plan.to_train) == [new]
    assert the_plan.to_train[new] == [1, 2, 3]
    # asking for more seeds trains only the missing ones of the confirmed configuration
    more = plan(study, ConfirmSpec(2, 4))
    assert more.to_train[best.number] == [best.user_attrs[rec.SEED] + 4]


def test_fewer_complete_trials_than_top_confirms_what_there_is(tmp_path, capsys) -> None:
    journal = tmp_path / "journal.log"
    assert main([*TINY, "--n-trials", "2", "--confirm", "9:2", "--storage",
                 str(journal), "--pruner", "none"]) == 0  # fmt: skip
    study = load(journal)
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert len(stored_records(study.user_attrs)) == complete
    assert f"asks for the top 9, the study has {complete} complete" in capsys.readouterr().err


# ---- weights ------------------------------------------------------------------------------


def test_stored_weights_reproduce_the_recorded_test_accuracy(confirmed: Path) -> None:
    study = load(confirmed)
    store = optuna.artifacts.FileSystemArtifactStore(confirmed.parent / "journal-artifacts")
    data = tiny_data()
    kept = [t for t in study.trials if rec.WEIGHTS in t.user_attrs]
    assert kept, "the best complete trials keep their weights"
    for trial in kept:
        model = build_model(TrainConfig(**trial.user_attrs[rec.CONFIG]))
        model.load_state_dict(load_weights(store, trial.user_attrs[rec.WEIGHTS]))
        assert evaluate(model, data.test).accuracy == trial.user_attrs[rec.TEST_ACCURACY]
    # and each confirmation run's
    for record in stored_records(study.user_attrs).values():
        for seed, test, artifact in zip(record["seeds"], record["test"], record["weights"],
                                        strict=True):  # fmt: skip
            model = build_model(TrainConfig(**{**record["config"], "seed": seed}))
            model.load_state_dict(load_weights(store, artifact))
            assert evaluate(model, data.test).accuracy == test


def test_an_unwritable_artifact_store_is_one_line_before_training(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    journal = tmp_path / "journal.log"
    env = {**os.environ, "MNISTCORE_NO_DOWNLOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "search.study", *TINY, "--n-trials", "2", "--storage",
         str(journal), "--artifacts", str(blocker / "store")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    # one error line (besides the notice that the journal is new)
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("new study in")]
    assert len(lines) == 1 and "--artifacts" in lines[0] and str(blocker) in lines[0]
    # nothing trained: the study holds no trial
    storage, _ = open_storage(str(journal))
    assert all(not s.n_trials for s in storage.get_all_studies()) if journal.exists() else True


# ---- export -------------------------------------------------------------------------------


def test_export_writes_the_confirmed_winner_and_its_weights(confirmed: Path, tmp_path) -> None:
    out = tmp_path / "exported"
    result = subprocess.run(
        [sys.executable, "-m", "search.export", "--out", str(out), "--storage", str(confirmed)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # a second export into the same folder replaces the files
    again = subprocess.run(
        [sys.executable, "-m", "search.export", "--out", str(out), "--storage", str(confirmed)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    (recipe,) = out.glob("*.toml")
    (weights,) = out.glob("*.pt")
    config = read_recipe(recipe)
    study = load(confirmed)
    confirmation = extract_confirmation(study.user_attrs, study.get_trials())
    winner = confirmation.winner
    assert recipe.name == f"{NAME}-trial{winner.trial}.toml"
    # the recipe is the winner's configuration, with the seed whose weights came along
    expected = {**winner.config, "seed": winner.seeds[0], "device": "auto", "threads": 0}
    assert config.to_dict() == expected
    model = build_model(config)
    model.load_state_dict(torch.load(weights, weights_only=True))
    assert evaluate(model, tiny_data().test).accuracy == winner.test_values[0]
    assert "confirmed val" in recipe.read_text()
    # and python -m mnistcore trains the exported recipe (a flag overriding one field)
    trained = subprocess.run(
        [sys.executable, "-m", "mnistcore", "--recipe", str(recipe), "--epochs", "1", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "test accuracy" in trained.stdout


def test_export_without_a_study_is_one_line(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "search.export", "--out", str(tmp_path / "x"), "--storage",
         str(tmp_path / "missing.log")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "missing.log" in result.stderr


def test_the_search_time_counts_overlapping_trials_once() -> None:
    start = datetime(2026, 1, 1)

    def trial(begin: float, end: float) -> FrozenTrial:
        return FrozenTrial(
            number=0, state=TrialState.COMPLETE, value=0.5, values=None,
            datetime_start=start + timedelta(seconds=begin),
            datetime_complete=start + timedelta(seconds=end),
            params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values={}, trial_id=0,
        )  # fmt: skip

    # a population of two (same span) and a later trial: 10 + 3 seconds
    assert rec.search_seconds([trial(0, 10), trial(0, 10), trial(12, 15)]) == 13.0
    # two workers overlapping, one trial inside another
    assert rec.search_seconds([trial(0, 10), trial(5, 20), trial(6, 8)]) == 20.0


def test_help_prints() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "search.study", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--confirm TOP:SEEDS" in result.stdout and "30% of the search" in result.stdout


def _record(trial: int, config: dict, val: list, seconds: float = 1.0, search_val=0.9) -> dict:
    return {
        "trial": trial, "config": config, "search_val": search_val, "search_test": None,
        "seeds": list(range(1, len(val) + 1)), "val": val, "test": val,
        "weights": [None] * len(val), "diverged": [i + 1 for i, v in enumerate(val) if v is None],
        "seconds": seconds, "n_val": 400, "n_test": 1000,
    }  # fmt: skip


def _timed_trial(number: int, value: float, config: dict, begin: float, end: float):
    start = datetime(2026, 1, 1)
    return FrozenTrial(
        number=number, state=TrialState.COMPLETE, value=value, values=None,
        datetime_start=start + timedelta(seconds=begin),
        datetime_complete=start + timedelta(seconds=end),
        params={}, distributions={}, user_attrs={rec.CONFIG: config, rec.SEED: 0},
        system_attrs={}, intermediate_values={}, trial_id=number,
    )  # fmt: skip


def test_auto_counts_what_earlier_runs_spent_confirming() -> None:
    study = optuna.create_study(direction="maximize")
    configs = [TrainConfig(lr=0.01 * (i + 1)).to_dict() for i in range(10)]
    # ten sequential trials, the 2nd and 3rd best of 1 s, the others of 10 s: the search took
    # 82 s, auto may spend 24.6 s
    for i in range(10):
        duration = 1.0 if i in (1, 2) else 10.0
        study.add_trial(_timed_trial(i, 0.99 - 0.01 * i, configs[i], 10 * i, 10 * i + duration))
    # the best configuration was confirmed by an earlier run, in 30 s
    study.set_user_attr(rec.CONFIRMED_PREFIX + "0", _record(0, configs[0], [0.98] * 3, 30.0))
    the_plan = plan(study, parse_confirm("auto"))
    # the next two (3 runs of 1 s each) would fit in 24.6 s alone, not after the 30 s spent
    assert [t.number for t in the_plan.top] == [0] and the_plan.to_train == {}
    # with nothing spent it fits
    study.set_user_attr(rec.CONFIRMED_PREFIX + "0", _record(0, configs[0], [0.98] * 3, 0.0))
    assert list(plan(study, parse_confirm("auto")).to_train) == [1, 2]


def test_a_configuration_that_diverged_does_not_win() -> None:
    a = TrainConfig(lr=0.5).to_dict()
    b = TrainConfig(lr=0.05).to_dict()
    c = TrainConfig(lr=5.0).to_dict()
    attrs = {
        rec.CONFIRMED_PREFIX + "1": _record(1, a, [0.99, None, None]),  # best mean, 2 diverged
        rec.CONFIRMED_PREFIX + "2": _record(2, b, [0.95, 0.96, 0.97]),
        rec.CONFIRMED_PREFIX + "3": _record(3, c, [None, None, None]),  # every seed diverged
        rec.CONFIRMED_PREFIX + "4": {"trial": 4, "val": "broken"},  # edited by hand: left out
    }
    confirmation = extract_confirmation(attrs, [])
    assert [k.trial for k in confirmation.configs] == [1, 2, 3]
    assert confirmation.winner.trial == 2
    assert confirmation.configs[2].val is None and confirmation.configs[2].curse is None


def test_a_ctrl_c_during_confirmation_keeps_the_seeds_done(tmp_path, monkeypatch) -> None:
    import search.confirm as confirm_module

    journal = tmp_path / "journal.log"
    assert main([*TINY, "--n-trials", "3", "--confirm", "0", "--storage", str(journal)]) == 0
    study = load(journal)
    real, calls = confirm_module.fit, []

    def interrupted_on_the_third(config, data):
        calls.append(config)
        if len(calls) == 3:
            raise KeyboardInterrupt
        yield from real(config, data)

    monkeypatch.setattr(confirm_module, "fit", interrupted_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        confirm_module.confirm(
            study, tiny_data(), ConfirmSpec(1, 3), device="cpu", threads=1, store=None
        )
    (record,) = stored_records(load(journal).user_attrs).values()
    assert len(record["seeds"]) == 2 and None not in record["val"]


def test_weights_that_cannot_be_written_leave_the_trial_alone(tmp_path, capsys) -> None:
    from search.artifacts import Keeper
    from search.console import setup_logging

    setup_logging(quiet=False)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    gone = optuna.artifacts.FileSystemArtifactStore(tmp_path / "removed")  # never created
    Keeper(gone)(trial, 0.5, build_model(TrainConfig(width=2, hidden=8)))
    assert rec.WEIGHTS not in study.trials[0].user_attrs
    assert "weights not kept" in capsys.readouterr().err


def test_with_workers_only_the_parent_confirms(tmp_path) -> None:
    journal = tmp_path / "journal.log"
    env = {**os.environ, "MNISTCORE_NO_DOWNLOAD": "1"}
    loud = [a for a in TINY if a != "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "search.study", *loud, "--n-trials", "4",
         "--workers", "2", "--confirm", "2:2", "--storage", str(journal)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    confirmed = re.findall(r"confirmed trial (\d+)'s configuration", result.stderr)
    assert confirmed and len(confirmed) == len(set(confirmed)), result.stderr
    for record in stored_records(load(journal).user_attrs).values():
        assert len(record["seeds"]) == 2
