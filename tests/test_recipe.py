"""Training a configuration again: ``python -m search.export --trial N`` writes a stored trial's
recipe, ``python -m mnistcore --recipe FILE.toml`` trains it and reproduces the stored curve
exactly on this CPU (the validation split is fixed by the dataset, never by --seed).

One real tiny study (synthetic data, 6,300 training images: two report steps per epoch) runs
in-process once per module; export and training run through the real commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from mnistcore import (
    TrainConfig,
    build_model,
    count_parameters,
    fit,
    load_dataset,
    read_recipe,
    write_recipe,
)
from mnistcore.__main__ import main, parse_args
from mnistcore.cli import config_from_args, run_main
from search.cli import main as study_main
from search.export import main as export_main
from studies.storage import read_storage

ROOT = Path(__file__).resolve().parents[1]
# 7,000 synthetic images (6,300 train: two report steps per epoch), a one-block net of width
# 4, a learning rate low enough that the curve does not saturate at 100 % within two epochs.
STUDY = [
    "--dataset", "synthetic", "--synthetic-size", "7000", "--epochs", "2", "--seed", "3",
    "--width", "4", "--depth", "1", "--hidden", "16", "--batch-size", "64", "--lr", "0.001:0.01",
    "--device", "cpu", "--threads", "1", "--no-report", "--quiet", "--n-trials", "4",
    "--confirm", "0",
]  # fmt: skip


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNISTCORE_NO_DOWNLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def user_error(entry, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The stderr of ``entry(argv)`` run in-process; it must be one line and exit code 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: entry(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("recipe") / "journal.log"
    with pytest.MonkeyPatch.context() as mp:  # the autouse _offline is function-scoped
        mp.setenv("MNISTCORE_NO_DOWNLOAD", "1")
        assert study_main([*STUDY, "--storage", str(path)]) == 0
    return str(path)


def trials_of(journal: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="synthetic-accuracy", storage=read_storage(journal)).trials


# ---- the round trip ---------------------------------------------------------------------------


def test_an_exported_trial_retrains_to_every_stored_epoch(journal, tmp_path) -> None:
    trial = next(t for t in trials_of(journal) if t.state == TrialState.COMPLETE)
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]  # two report steps per epoch
    out = tmp_path / "exported"
    done = run("search.export", "--out", str(out), "--storage", journal, "--trial",
               str(trial.number))  # fmt: skip
    assert done.returncode == 0, done.stderr
    recipe = out / f"synthetic-accuracy-trial{trial.number}.toml"
    config = read_recipe(recipe)
    # the recipe carries what changes the data and the training: the trial's seed and size
    assert (config.seed, config.synthetic_size, config.dataset) == (3, 7000, "synthetic")
    data = load_dataset(config.dataset, synthetic_size=config.synthetic_size)
    epochs = list(fit(config.replace(threads=1), data))
    # every epoch's validation accuracy exactly as stored (steps 2 and 4 end the epochs)
    assert [e.val_accuracy for e in epochs] == [trial.intermediate_values[s] for s in (2, 4)]
    # and the real command prints the same curve and test accuracy
    shown = run("mnistcore", "--recipe", str(recipe), "--threads", "1")
    assert shown.returncode == 0, shown.stderr
    for epoch, step in ((1, 2), (2, 4)):
        assert f"epoch {epoch}/2 " in shown.stdout
        assert f"val acc {trial.intermediate_values[step]:.4f}" in shown.stdout, shown.stdout
    assert f"test accuracy {trial.user_attrs['test_accuracy']:.4f}" in shown.stdout


def test_the_recipe_header_says_where_it_came_from(journal, tmp_path, capsys) -> None:
    last = trials_of(journal)[-1]
    assert export_main(["--out", str(tmp_path), "--storage", journal, "--trial",
                        str(last.number)]) == 0  # fmt: skip
    text = (tmp_path / f"synthetic-accuracy-trial{last.number}.toml").read_text()
    assert f"state {last.state.name.lower()}; val accuracy per epoch:" in text
    assert "train it: python -m mnistcore --recipe " in text


# ---- recipes and saved weights ------------------------------------------------------------------


def test_a_flag_overrides_the_recipe_field_it_names(tmp_path) -> None:
    recipe = TrainConfig(lr=0.2, width=8, epochs=3, dataset="synthetic", batch_norm=True)
    path = write_recipe(tmp_path / "r.toml", recipe, header=["from a test"])
    args, given = parse_args(["--recipe", str(path), "--epochs", "1", "--no-batch-norm"])
    # the flags given win; every other field is the recipe's, not the CLI's default
    assert config_from_args(args) == recipe.replace(epochs=1, batch_norm=False)
    assert given == {"epochs", "batch_norm"}


def test_a_recipe_trains_and_saves_loadable_weights(tmp_path) -> None:
    recipe = TrainConfig(width=4, depth=1, hidden=16, epochs=3, dataset="synthetic", threads=1)
    path = write_recipe(tmp_path / "r.toml", recipe)
    saved = tmp_path / "model.pt"
    result = run("mnistcore", "--recipe", str(path), "--epochs", "1", "--device", "cpu",
                 "--save", str(saved))  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # one epoch (the flag), the recipe's architecture (its parameter count)
    assert "epoch 1/1" in out and "epoch 2/" not in out, out
    assert f"model: {count_parameters(build_model(recipe)):,} parameters" in out
    assert "overridden: device, epochs" in out and f"weights: {saved}" in out
    # the README's way back: build_model + load_state_dict
    model = build_model(recipe)
    model.load_state_dict(torch.load(saved, weights_only=True))


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
    err = user_error(main, ["--recipe", str(path), "--epochs", "1"], capsys)
    assert message in err and str(path) in err


def test_a_weights_file_given_as_recipe_says_what_to_pass(tmp_path, capsys) -> None:
    weights = tmp_path / "model.pt"
    torch.save(build_model(TrainConfig()).state_dict(), weights)
    err = user_error(main, ["--recipe", str(weights)], capsys)
    assert "is not text (a weights file?); give the .toml recipe" in err


def test_save_into_a_missing_folder_is_one_line(tmp_path, capsys) -> None:
    err = user_error(main, ["--save", str(tmp_path / "no" / "m.pt"), "--epochs", "1"], capsys)
    assert "does not exist; create it" in err


# ---- export's errors ----------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trial", "0"], "holds 2 studies (old-a, old-b); name one with --study-name"),
        (["--trial", "0", "--study-name", "old-a"], "trial 0 of study 'old-a' recorded no"),
        (["--trial", "5", "--study-name", "old-a"], "has trials 0..0, not 5"),
        (["--trial", "-1"], "a trial number is an integer >= 0, got '-1'"),
        (["--study-name", "new"], "has no study 'new'"),
    ],
)
def test_export_errors_are_one_line(two_old_studies, extra, message, tmp_path, capsys) -> None:
    argv = ["--out", str(tmp_path / "x"), "--storage", two_old_studies, *extra]
    assert message in user_error(export_main, argv, capsys)


def test_export_without_out_is_one_line(capsys) -> None:
    err = user_error(export_main, [], capsys)
    assert "the following arguments are required: --out" in err


def test_plain_training_does_not_import_optuna() -> None:
    code = (
        "import sys; from mnistcore.__main__ import parse_args; parse_args([]); "
        "print('optuna' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr
