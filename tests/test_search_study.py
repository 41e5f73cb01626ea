"""The study CLI: resume from storage, reproducible seeds, user errors, Ctrl-C, the report hook.

Most tests call ``main`` in-process (no torch import per test); two run the real
``python -m search.study`` with a budget of seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import reports
import search.setup
from search.cli import main
from search.setup import default_epochs

ROOT = Path(__file__).resolve().parents[1]
# Tiny and fast: 300 synthetic images, a one-block net of width 4, two epochs per trial.
TINY = [
    "--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "2",
    "--width", "4", "--depth", "1", "--hidden", "16", "--batch-size", "64",
    "--device", "cpu", "--threads", "1", "--no-report",
]  # fmt: skip


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNISTCORE_NO_DOWNLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "search.study", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load(journal: Path, name: str = "synthetic-accuracy") -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    return optuna.load_study(study_name=name, storage=storage)


def test_a_second_run_resumes_the_stored_study(tmp_path) -> None:
    journal = tmp_path / "journal.log"
    first = run_cli(*TINY, "--n-trials", "3", "--storage", str(journal))
    assert first.returncode == 0, first.stderr
    assert "trial 2 " in first.stderr and "study 'synthetic-accuracy'" in first.stdout
    assert len(load(journal).trials) == 3

    # --n-trials is the study's total: the rerun adds 2 trials, numbered after the first 3
    second = run_cli(*TINY, "--n-trials", "5", "--storage", str(journal), "--quiet")
    assert second.returncode == 0, second.stderr
    numbers = [t.number for t in load(journal).trials]
    assert numbers == [0, 1, 2, 3, 4]
    study = load(journal)
    # a new study starts from the known-good point (TINY pins width)
    assert study.trials[0].params == {
        "lr": 0.05,
        "momentum": 0.9,
        "dropout": 0.25,
        "batch_norm": True,
    }
    assert study.user_attrs["dataset"] == "synthetic"
    assert study.user_attrs["objectives"] == ["accuracy"]
    assert study.user_attrs["max_epochs"] == 2


def test_a_study_with_enough_trials_runs_none(tmp_path) -> None:
    args = [*TINY, "--n-trials", "2", "--storage", str(tmp_path / "j.log"), "--quiet"]
    assert main(args) == 0
    assert main(args) == 0
    assert len(load(tmp_path / "j.log").trials) == 2


def test_seeded_tpe_gives_the_same_params_twice(tmp_path) -> None:
    params = []
    for run in ("a", "b"):
        journal = tmp_path / f"{run}.log"
        assert main([*TINY, "--n-trials", "3", "--seed", "5", "--storage", str(journal)]) == 0
        params.append([t.params for t in load(journal).trials])
    assert params[0] == params[1]
    assert len({str(p) for p in params[0]}) == 3  # and the three trials differ


def test_sqlite_storage_and_two_objectives(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = [*TINY, "--n-trials", "2", "--storage", url, "--objectives", "accuracy,throughput"]
    code = main([*args, "--pruner", "median"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "pruning disabled" in err, err
    assert "--pruner median ignored" in err, err
    study = optuna.load_study(study_name="synthetic-accuracy+throughput", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2, err
    assert [len(t.values) for t in study.trials] == [2, 2]


def test_a_diverging_config_does_not_stop_the_study(tmp_path, capsys) -> None:
    journal = tmp_path / "j.log"
    # every trial diverges: each is recorded as pruned with its reason, and all three run
    assert main([*TINY, "--n-trials", "3", "--lr", "1e6", "--storage", str(journal)]) == 0
    trials = load(journal).trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 3
    assert all("non-finite" in t.user_attrs["fail_reason"] for t in trials)
    assert "no completed trial yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["--n-trials", "0"], "must be >= 1"),
        (["--sampler", "bayes"], "invalid choice: 'bayes'"),
        (["--objectives", "speed"], "choose accuracy or accuracy,throughput"),
        (["--lr", "1:0.1"], "low must be < high"),
        (["--lr", "0:1"], "log-scale range needs bounds > 0"),
        (["--space", "missing.toml"], "space file 'missing.toml' not found"),
        (["--device", "cuda"], "use --device cpu"),
        (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
        (["--storage", "postgresql://u:secret@127.0.0.1:1/db"], "127.0.0.1:1"),
        (["--storage", "redis://localhost"], "unsupported scheme 'redis'"),
        (["--storage", "study.db"], "use --storage sqlite:///study.db"),
        (["--storage", "sqlite:////no/such/dir/x.db"], "does not exist"),
        (["--storage", "sqlite:/tmp/x.db"], "did you mean --storage sqlite:////tmp/x.db?"),
        (["--storage", "/no/such/dir/journal.log"], "folder '/no/such/dir' does not exist"),
        (["--sampler", "cmaes", "--objectives", "accuracy,throughput"], "one objective"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message, capsys) -> None:
    if args == ["--device", "cuda"] and __import__("torch").cuda.is_available():
        pytest.skip("CUDA is available here")
    from mnistcore.cli import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main([*TINY, "--n-trials", "1", *args]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert "secret" not in err  # passwords never reach the terminal


def test_a_resumed_study_must_keep_its_dataset_and_epochs(tmp_path, capsys) -> None:
    args = [*TINY, "--n-trials", "1", "--storage", str(tmp_path / "j.log")]
    assert main([*args, "--study-name", "s"]) == 0
    from mnistcore.cli import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main([*args, "--study-name", "s", "--epochs", "3"]))
    assert exit_info.value.code == 2
    assert "max_epochs=2" in capsys.readouterr().err


def test_user_error_from_the_real_command_is_one_line() -> None:
    result = run_cli("--lr", "1:0.1", "--no-report")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "low must be < high" in result.stderr


def test_ctrl_c_marks_the_running_trial_and_prints_the_summary(tmp_path) -> None:
    journal = tmp_path / "j.log"
    # trials of 30 epochs on 2,000 images: long enough to be interrupted mid-trial
    args = [*TINY, "--synthetic-size", "2000", "--epochs", "30", "--pruner", "none"]
    env = {**os.environ, "MNISTCORE_NO_DOWNLOAD": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "search.study", *args, "--storage", str(journal)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # inside the training loop (an epoch reported), not in the process's start-up
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _has_trained_an_epoch(journal):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "study 'synthetic-accuracy'" in out
    states = [t.state for t in load(journal).trials]
    assert states and TrialState.RUNNING not in states
    assert states[-1] == TrialState.FAIL
    assert load(journal).trials[-1].user_attrs["fail_reason"].startswith("interrupted")


def _has_trained_an_epoch(journal: Path) -> bool:
    if not journal.exists():
        return False
    try:
        trials = load(journal).trials
    except KeyError:  # the study is not created yet
        return False
    return any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials)


def test_the_report_builder_is_called_with_the_storage_and_study(tmp_path, monkeypatch) -> None:
    calls = []
    fake = lambda **kwargs: calls.append(kwargs) or tmp_path / "index.html"  # noqa: E731
    monkeypatch.setattr(reports, "build_report", fake)
    journal = str(tmp_path / "j.log")
    args = [a for a in TINY if a != "--no-report"]
    assert main([*args, "--n-trials", "1", "--storage", journal]) == 0
    assert calls == [
        {
            "storage": journal,
            "study_names": ["synthetic-accuracy"],
            "benchmarks_dir": Path(".benchmarks"),
            "out_dir": Path("reports"),
        }
    ]


def test_default_epochs_follow_the_training_set_size() -> None:
    # mnist-5k trains on 3,600 images: 9 epochs; the full 54k sets get 5 (each is 15x longer)
    assert default_epochs(3600) == 9
    assert default_epochs(54_000) == 5


# -- what a new user trips over (issue 14)


def test_a_space_that_does_not_fit_the_stored_study_is_refused_before_loading_data(
    tmp_path, monkeypatch, capsys
) -> None:
    from mnistcore.cli import run_main

    args = [*TINY, "--n-trials", "1", "--storage", str(tmp_path / "j.log")]
    assert main(args) == 0
    capsys.readouterr()

    def no_loading(*args, **kwargs):
        raise AssertionError("data loaded before the resume check")

    monkeypatch.setattr(search.setup, "load_dataset", no_loading)
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main([*args, "--batch-size", "32,64", "--momentum", "0.9"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "searches batch_size" in err and "pins momentum=0.9" in err
    assert "synthetic-accuracy" in err and "--study-name" in err


def test_nothing_to_run_names_the_real_count_even_when_quiet(tmp_path, capsys) -> None:
    args = [*TINY, "--storage", str(tmp_path / "j.log"), "--quiet"]
    assert main([*args, "--n-trials", "3"]) == 0
    capsys.readouterr()
    assert main([*args, "--n-trials", "2"]) == 0
    err = capsys.readouterr().err
    assert "already has 3 trials" in err and "--n-trials 2" in err and "--study-name" in err


def test_a_mistyped_journal_folder_is_not_created(tmp_path) -> None:
    result = run_cli(*TINY, "--n-trials", "1", "--storage", str(tmp_path / "typo" / "j.log"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "typo").exists()


def test_ctrl_c_during_start_up_is_one_line_and_exit_130() -> None:
    env = {**os.environ, "MNISTCORE_NO_DOWNLOAD": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "search.study", *TINY, "--n-trials", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.5)  # importing torch takes seconds: this lands inside the imports
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err == "interrupted\n", err


def test_an_interrupted_trial_runs_again_first_with_its_parameters(tmp_path) -> None:
    journal = tmp_path / "j.log"
    args = [*TINY, "--storage", str(journal)]
    assert main([*args, "--n-trials", "2"]) == 0
    # a trial cut by Ctrl-C, as the trial loop records it (FAIL with the reason)
    study = load(journal)
    trial = study.ask()
    cut = {"lr": trial.suggest_float("lr", 0.01, 0.5, log=True)}
    trial.set_user_attr("fail_reason", "interrupted by the user (SIGINT)")
    study.tell(trial, state=TrialState.FAIL)

    # --n-trials 3: the interrupted trial does not use up the third; its retry does
    assert main([*args, "--n-trials", "3", "--quiet"]) == 0
    trials = load(journal).trials
    retries = [t for t in trials if t.user_attrs.get("retry_of") == trial.number]
    assert len(retries) == 1 and retries[0].state != TrialState.FAIL
    assert retries[0].params["lr"] == cut["lr"]
    assert len(trials) == 4  # 3 counted, and the interrupted one


def test_a_retry_interrupted_again_is_retried_again(tmp_path) -> None:
    journal = tmp_path / "j.log"
    args = [*TINY, "--storage", str(journal), "--quiet"]
    assert main([*args, "--n-trials", "2"]) == 0
    study = load(journal)
    first = study.ask()
    lr = first.suggest_float("lr", 0.01, 0.5, log=True)
    # Ctrl-C, rerun (the retry starts), Ctrl-C again: as the trial loop records them
    study.enqueue_trial({"lr": lr}, user_attrs={"retry_of": first.number})
    for cut in (first, study.ask()):
        cut.set_user_attr("fail_reason", "interrupted by the user (SIGINT)")
        study.tell(cut, state=TrialState.FAIL)
    assert main([*args, "--n-trials", "3"]) == 0
    trials = load(journal).trials
    (again,) = [t for t in trials if t.user_attrs.get("retry_of") == first.number + 1]
    # the configuration is not lost, and the study has its 3 trials besides the cut ones
    assert again.state != TrialState.FAIL and again.params["lr"] == lr
    assert len(trials) == 5


def test_the_progress_bar_counts_the_trials_this_run_starts(tmp_path) -> None:
    journal = tmp_path / "j.log"
    assert main([*TINY, "--n-trials", "1", "--storage", str(journal), "--quiet"]) == 0
    study = load(journal)
    trial = study.ask()  # a worker that died before stamping it: retried under the lock
    trial.set_user_attr("fail_reason", "interrupted by the user (SIGINT)")
    study.tell(trial, state=TrialState.FAIL)
    result = run_cli(*TINY, "--n-trials", "3", "--storage", str(journal))
    assert result.returncode == 0, result.stderr
    # the retry and one new trial: 2 to run, shown as such from the start to the end
    shown = re.findall(r" (\d+)/(\d+) \[", result.stderr)  # tqdm's "n/total [elapsed"
    assert ("0", "2") in shown and ("2", "2") in shown, result.stderr
    assert {total for _, total in shown} == {"2"}
    assert not re.search(r"\dtrial \[", result.stderr)  # a count past its total: "3trial ["


def test_the_summary_shows_the_whole_configuration_and_how_to_train_it(tmp_path, capsys) -> None:
    assert main([*TINY, "--n-trials", "1", "--storage", str(tmp_path / "j.log"), "--quiet"]) == 0
    out = capsys.readouterr().out
    # the pinned fields too (TINY pins width, depth, hidden, batch size), and one command
    pinned = next(line for line in out.splitlines() if line.startswith("pinned: "))
    assert {"width=4", "depth=1", "hidden=16", "batch_size=64", "schedule=onecycle"} <= set(
        pinned.split()
    )
    command = next(line for line in out.splitlines() if line.startswith("train it again: "))
    assert "python -m mnistcore " in command and "--depth 1 --width 4 --hidden 16" in command
