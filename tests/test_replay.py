"""Training a configuration again: ``python -m mnistcore --recipe FILE.toml`` and
``--from-trial N`` (search/replay.py), which replays a stored trial as the search trained it.

One real tiny study (synthetic data, 6,300 training images: two report steps per epoch) serves
the replay tests; it runs in-process once per module, the replay of its complete trial through
the real command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from mnistcore import TrainConfig, build_model, count_parameters, write_recipe
from mnistcore.__main__ import main, parse_args
from mnistcore.cli import config_from_args, run_main
from search import replay
from search.cli import main as study_main
from studies.storage import read_storage
from studies.study_data import format_epochs

ROOT = Path(__file__).resolve().parents[1]
# 7,000 synthetic images (6,300 train: two report steps per epoch, so a pruned trial stops half
# way through its first epoch), a one-block net of width 4, a learning rate low enough that
# the curve does not saturate at 100 % within two epochs.
STUDY = [
    "--dataset", "synthetic", "--synthetic-size", "7000", "--epochs", "2",
    "--width", "4", "--depth", "1", "--hidden", "16", "--batch-size", "64", "--lr", "0.001:0.01",
    "--device", "cpu", "--threads", "1", "--no-report", "--quiet", "--n-trials", "6",
    "--confirm", "0",
]  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNISTCORE_NO_DOWNLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mnistcore", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def user_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The stderr of ``python -m mnistcore ARGV`` run in-process; it must be one line, exit 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("replay") / "journal.log"
    with pytest.MonkeyPatch.context() as mp:  # the autouse _offline is function-scoped
        mp.setenv("MNISTCORE_NO_DOWNLOAD", "1")
        assert study_main([*STUDY, "--storage", str(path)]) == 0
    return str(path)


def trials_of(journal: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="synthetic-accuracy", storage=read_storage(journal)).trials


# ---- recipes --------------------------------------------------------------------------------


def test_a_flag_overrides_the_recipe_field_it_names(tmp_path) -> None:
    recipe = TrainConfig(lr=0.2, width=8, epochs=3, dataset="synthetic", batch_norm=True)
    path = write_recipe(tmp_path / "r.toml", recipe, header=["from a test"])
    args, given = parse_args(["--recipe", str(path), "--epochs", "1", "--no-batch-norm"])
    # the flags given win; every other field is the recipe's, not the CLI's default
    assert config_from_args(args) == recipe.replace(epochs=1, batch_norm=False)
    assert given == {"epochs", "batch_norm"}


def test_a_recipe_trains_through_the_real_command(tmp_path) -> None:
    recipe = TrainConfig(width=4, depth=1, hidden=16, epochs=3, dataset="synthetic", threads=1)
    path = write_recipe(tmp_path / "r.toml", recipe)
    result = run_cli("--recipe", str(path), "--epochs", "1", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # one epoch (the flag), the recipe's architecture (its parameter count)
    assert "epoch 1/1" in out and "epoch 2/" not in out, out
    assert f"model: {count_parameters(build_model(recipe)):,} parameters" in out
    assert "overridden: device, epochs" in out and "test accuracy" in out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("learning_rate = 0.1", "unknown field 'learning_rate'"),
        ('lr = "fast"', "lr = 'fast' is a str, lr must be a float"),
        ("epochs = 0", "epochs"),
    ],
)
def test_a_bad_recipe_is_one_line_and_exit_2(line, message, tmp_path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"# a recipe\n{line}\n")
    err = user_error(["--recipe", str(path), "--epochs", "1"], capsys)
    assert message in err and str(path) in err


# ---- replays --------------------------------------------------------------------------------


def test_a_complete_trial_replays_to_every_stored_value(journal) -> None:
    complete = [t for t in trials_of(journal) if t.state == TrialState.COMPLETE]
    assert complete, "the tiny study completed no trial"
    trial = complete[0]
    assert len(trial.intermediate_values) == 4  # steps 1-4: half epochs

    result = run_cli("--from-trial", str(trial.number), "--storage", journal)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # a row per report step, replayed exactly on this CPU, and the test accuracy too
    for step, value in trial.intermediate_values.items():
        row = f"{step:>5}  {format_epochs(step / 2):>6}"  # two steps per epoch
        assert any(
            line.startswith(row) and f"{value:.4f}" in line and line.endswith("same")
            for line in out.splitlines()
        ), (step, value, out)
    test = trial.user_attrs["test_accuracy"]
    assert f"test accuracy: stored {test:.4f}, replayed {test:.4f} (same)" in out
    assert "replayed exactly: every stored value (5)" in out, out
    assert "note:" not in out  # same machine, same torch, no overrides


def test_the_replay_data_layer_holds_the_stored_values_exactly(journal) -> None:
    complete = next(t for t in trials_of(journal) if t.state == TrialState.COMPLETE)
    stored = replay.find_trial(journal, None, complete.number)
    data = replay.replay_data(stored, stored.config, data_dir="data")
    result = replay.replay(stored, config=stored.config, data=data)
    # exact float equality, not 4 printed decimals
    assert [p.stored for p in result.points] == [p.replayed for p in result.points]
    assert [p.epoch for p in result.points] == [Fraction(1, 2), 1, Fraction(3, 2), 2]
    assert result.replayed_test == result.stored_test == complete.user_attrs["test_accuracy"]
    assert result.state == TrialState.COMPLETE


def test_a_pruned_trial_replays_up_to_where_it_was_pruned(journal, capsys) -> None:
    pruned = [t for t in trials_of(journal) if t.state == TrialState.PRUNED]
    assert pruned, "the tiny study pruned no trial"
    trial = pruned[0]
    assert list(trial.intermediate_values) == [1]  # pruned after half an epoch

    assert main(["--from-trial", str(trial.number), "--storage", journal]) == 0
    out = capsys.readouterr().out
    assert "PRUNED after step 1 (epoch 0.50); replaying up to there" in out
    value = trial.intermediate_values[1]
    assert f"    1    0.50  {value:>14.4f}  {value:>8.4f}  same" in out
    assert "    2 " not in out  # nothing trained past the pruning step
    assert "stopped where the search pruned it, after epoch 0.50: not tested" in out
    assert "replayed exactly: every stored value (1)" in out


def test_a_flag_given_with_from_trial_overrides_and_says_so(journal, capsys) -> None:
    complete = next(t for t in trials_of(journal) if t.state == TrialState.COMPLETE)
    argv = ["--from-trial", str(complete.number), "--storage", journal, "--epochs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "note: overridden on the command line: epochs=1 (stored 2)" in out
    # one epoch replayed; the stored second epoch is listed with no replayed value
    rows = [line for line in out.splitlines() if line.startswith(("    3 ", "    4 "))]
    assert len(rows) == 2 and all(row.endswith("–") for row in rows), out
    assert "values compared differ" in out and out.endswith(", as expected (overrides)\n")


TINY = [
    "--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "2", "--width", "4",
    "--depth", "1", "--hidden", "16", "--batch-size", "64", "--device", "cpu", "--threads", "1",
    "--no-report", "--quiet",
]  # fmt: skip


def test_a_diverged_trial_replays_until_it_diverges_too(tmp_path, capsys) -> None:
    journal = str(tmp_path / "j.log")
    assert study_main([*TINY, "--n-trials", "1", "--lr", "1e6", "--storage", journal]) == 0
    capsys.readouterr()
    assert main(["--from-trial", "0", "--storage", journal]) == 0
    out = capsys.readouterr().out
    assert "PRUNED, diverged (training diverged: non-finite training loss" in out
    assert "the replay diverged as the search's trial did: training diverged:" in out


def test_a_population_member_replays_alone_and_says_why_it_may_differ(tmp_path, capsys) -> None:
    journal = str(tmp_path / "j.log")
    args = [*TINY, "--n-trials", "2", "--population", "2", "--dropout", "0.2"]
    assert study_main([*args, "--storage", journal]) == 0
    capsys.readouterr()
    assert main(["--from-trial", "1", "--storage", journal]) == 0
    out = capsys.readouterr().out
    assert "note: trained as member 1 of a population of 2, which drew the dropout masks" in out


def test_a_trial_that_does_not_exist_names_the_study_and_its_trials(journal, capsys) -> None:
    err = user_error(["--from-trial", "99", "--storage", journal], capsys)
    assert "study 'synthetic-accuracy' has trials 0..5; --from-trial 99 is not one" in err


@pytest.fixture
def two_old_studies(tmp_path) -> str:
    """A journal with two studies from before trials stored their config."""
    path = tmp_path / "old.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    for name in ("old-a", "old-b"):
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 1)}, value=0.9
            )
        )
    return str(path)


def test_a_trial_without_a_stored_config_says_so(two_old_studies, capsys) -> None:
    argv = ["--from-trial", "0", "--storage", two_old_studies, "--study-name", "old-a"]
    err = user_error(argv, capsys)
    assert "trial 0 of study 'old-a' stored no config (a study from a version before" in err
    assert "lr=0.1" in err  # what it did store


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "holds 2 studies ('old-a', 'old-b'); pick one with --study-name"),
        (["--study-name", "new"], "study 'new' is not in "),
    ],
)
def test_the_study_must_be_named_when_it_is_not_the_only_one(
    two_old_studies, extra, message, capsys
) -> None:
    err = user_error(["--from-trial", "0", "--storage", two_old_studies, *extra], capsys)
    assert message in err and "'old-a', 'old-b'" in err


def test_a_storage_that_does_not_exist_is_not_created(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.log"
    err = user_error(["--from-trial", "0", "--storage", str(missing)], capsys)
    assert "no Optuna journal file at" in err
    assert not missing.exists()


def test_without_storage_the_default_journal_must_exist(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no reports/optuna-journal.log here
    err = user_error(["--from-trial", "3"], capsys)
    assert "no --storage given and no journal at reports/optuna-journal.log" in err
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from-trial", "0", "--recipe", "r.toml"], "--recipe and --from-trial"),
        (["--storage", "j.log"], "--storage says where --from-trial finds its trial"),
        (["--from-trial", "0", "--val-fraction", "0.2"], "--val-fraction does not apply"),
        (["--from-trial", "-1"], "trial numbers start at 0, got -1"),
    ],
)
def test_flags_that_do_not_go_together_are_one_line(argv, message, capsys) -> None:
    assert message in user_error(argv, capsys)


def test_plain_training_does_not_import_optuna() -> None:
    code = (
        "import sys; from mnistcore.__main__ import parse_args; parse_args([]); "
        "print('optuna' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr
