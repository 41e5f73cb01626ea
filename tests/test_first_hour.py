"""A new user's first hour (issue 21): does the winner beat the tutorial's recipe, what stopped
the run, what to type next. Real tiny studies on synthetic data, run in-process."""

from __future__ import annotations

import optuna
import pytest

from mnistcore import TrainConfig, write_recipe
from mnistcore.cli import run_main
from search.cli import main
from studies import trial_record as rec
from studies.confirmation import extract_confirmation
from studies.storage import read_storage

TINY = [
    "--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "2", "--width", "4",
    "--depth", "1", "--hidden", "16", "--batch-size", "64", "--device", "cpu", "--threads", "1",
    "--no-report", "--n-trials", "3", "--confirm", "1:2", "--seed", "5",
]  # fmt: skip


def study_of(journal) -> optuna.Study:
    return optuna.load_study(study_name="synthetic-accuracy", storage=read_storage(str(journal)))


def test_the_winner_is_compared_with_the_tutorials_recipe_on_its_seeds(tmp_path, capsys):
    journal = tmp_path / "j.log"
    assert main([*TINY, "--storage", str(journal)]) == 0
    out, err = capsys.readouterr()
    study = study_of(journal)
    winner = extract_confirmation(study.user_attrs, study.trials).winner
    baseline = study.user_attrs[rec.BASELINE]
    # the tutorial's recipe, on the winner's seeds, data and epoch budget
    assert baseline["name"] == "tutorial" and baseline["seeds"] == list(winner.seeds) == [6, 7]
    config = TrainConfig(**baseline["config"])
    assert (config.lr, config.momentum, config.batch_size, config.width) == (0.01, 0.9, 64, 10)
    assert (config.dataset, config.epochs, config.synthetic_size) == ("synthetic", 2, 300)
    assert len(baseline["curves"]) == 2 and all(len(c) == 2 for c in baseline["curves"])
    # the summary says it in one line, the measured cost once, and ends with the next step
    line = next(x for x in out.splitlines() if x.startswith("baseline: the winner "))
    assert "the tutorial's recipe" in line and line.endswith("2 seeds")
    assert "(baseline included)" in out and "even over" not in out
    assert err.count("about ") == 1  # the plan's one estimate, logged before training
    last = out.rstrip().splitlines()[-1]
    assert last == (
        f"export it: python -m search.export --out DIR --storage {journal} "
        "--study-name synthetic-accuracy"
    )
    # a rerun trains nothing again, the baseline included
    assert main([*TINY, "--storage", str(journal)]) == 0
    assert study_of(journal).user_attrs[rec.BASELINE]["seconds"] == baseline["seconds"]


def test_another_baseline_recipe_or_none(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "mine.toml", TrainConfig(lr=0.05, width=6))
    journal = tmp_path / "a.log"
    assert main([*TINY, "--storage", str(journal), "--baseline", str(recipe)]) == 0
    baseline = study_of(journal).user_attrs[rec.BASELINE]
    assert baseline["name"] == str(recipe) and baseline["config"]["width"] == 6
    assert "the recipe " in capsys.readouterr().out
    journal = tmp_path / "b.log"
    assert main([*TINY, "--storage", str(journal), "--baseline", "none"]) == 0
    assert rec.BASELINE not in study_of(journal).user_attrs
    assert "baseline:" not in capsys.readouterr().out


def test_a_bad_baseline_file_is_one_line_before_any_training(tmp_path, capsys):
    journal = tmp_path / "j.log"
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main([*TINY, "--storage", str(journal), "--baseline", "nope.toml"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "recipe nope.toml does not exist" in err
    assert not journal.exists()


def test_a_timeout_says_it_stopped_the_run_and_how_to_continue(tmp_path, capsys):
    journal = tmp_path / "j.log"
    args = [*TINY[:-6], "--n-trials", "500", "--confirm", "0", "--timeout", "3"]
    assert main([*args, "--storage", str(journal)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("stopped by --timeout 3 s"))
    assert "of --n-trials 500 still to run: continue with python -m search.study" in line


def test_a_new_journal_says_so_on_its_own_line(tmp_path, capsys):
    # a mistyped file name in an existing folder would otherwise start a study silently
    journal = tmp_path / "jounral.log"
    args = [*TINY[:-6], "--confirm", "0", "--storage", str(journal)]
    assert main([*args, "--n-trials", "1"]) == 0
    assert f"new study in a new journal {journal}\n" in capsys.readouterr().err
    assert main([*args, "--n-trials", "2"]) == 0
    assert "new study in a new journal" not in capsys.readouterr().err  # it exists now
