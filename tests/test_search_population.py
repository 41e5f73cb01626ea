"""``--population K``: K trials trained as one fused model, each reporting to its own trial.

Real studies on tiny synthetic data: the exact total, resume, per-member pruning and
divergence, Ctrl-C, and a SIGKILLed worker whose whole population is retried.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from mnistcore import TrainConfig
from search.cli import main
from search.locks import StudyLock
from search.objective import Objective, report_steps
from search.recovery import counted
from search.run import run_trials
from search.space import build_space
from studies import trial_record as rec
from studies.storage import read_storage

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "2",
    "--width", "4", "--depth", "1", "--hidden", "16", "--batch-size", "64",
    "--device", "cpu", "--threads", "1", "--no-report", "--quiet",
    "--batch-norm", "true",  # one architecture: every asked trial joins one population
]  # fmt: skip
FINAL = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def trials(journal: Path, name: str = "synthetic-accuracy") -> list[optuna.trial.FrozenTrial]:
    if not journal.is_file():
        raise KeyError(name)
    study = optuna.load_study(study_name=name, storage=read_storage(str(journal)))
    return study.get_trials(deepcopy=False)


def wait_for(condition, timeout: float = 60.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except KeyError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MNISTCORE_NO_DOWNLOAD": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "search.study", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_a_population_study_has_exactly_its_trials_and_resumes(tmp_path) -> None:
    journal = tmp_path / "j.log"
    args = [*TINY, "--storage", str(journal), "--population", "4"]
    assert main([*args, "--n-trials", "7"]) == 0
    first = trials(journal)
    assert len(first) == 7 and all(t.state in FINAL for t in first)
    # asked 4 at a time: 4 then 3, each group one population, each member its own trial
    groups: dict[str, list[int]] = {}
    for t in first:
        groups.setdefault(t.user_attrs[rec.POPULATION_ID], []).append(t.number)
    assert sorted(len(g) for g in groups.values()) == [3, 4]
    for t in first:
        members = groups[t.user_attrs[rec.POPULATION_ID]]
        assert t.user_attrs[rec.POPULATION_SIZE] == len(members)
        assert t.user_attrs[rec.POPULATION_MEMBER] == members.index(t.number)
    # TPE as a constant liar: trials asked together are not K copies of one point
    assert len({(t.params["lr"], t.params["momentum"]) for t in first}) == 7

    assert main([*args, "--n-trials", "10"]) == 0  # resumed: 3 more, numbered after
    assert [t.number for t in trials(journal)] == list(range(10))


def test_members_are_pruned_and_diverge_one_by_one(tmp_path) -> None:
    journal = tmp_path / "j.log"
    # lr 0.01 or 1e6 (diverges at once): the diverged members end PRUNED with their reason,
    # and the others of their population train on
    args = [*TINY, "--storage", str(journal), "--population", "4", "--lr", "0.01,1000000"]
    assert main([*args, "--n-trials", "8", "--epochs", "3", "--pruner", "none"]) == 0
    by_lr: dict[float, list] = {}
    for t in trials(journal):
        by_lr.setdefault(t.params["lr"], []).append(t)
    assert by_lr[1000000.0] and by_lr[0.01], "both choices were drawn"
    for t in by_lr[1000000.0]:
        assert t.state == TrialState.PRUNED
        assert "non-finite training loss" in t.user_attrs[rec.FAIL_REASON]
    assert all(t.state != TrialState.FAIL for t in by_lr[0.01])
    assert any(t.state == TrialState.COMPLETE for t in by_lr[0.01])


def test_sigint_fails_every_running_member_and_exits_130(tmp_path) -> None:
    journal = tmp_path / "j.log"
    slow = [*TINY, "--synthetic-size", "2000", "--epochs", "30", "--pruner", "none"]
    proc = start(*slow, "--storage", str(journal), "--population", "3", "--n-trials", "3",
                 cwd=tmp_path)  # fmt: skip
    # inside the training loop: the members have reported an epoch
    wait_for(lambda: sum(bool(t.intermediate_values) for t in trials(journal)) == 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    stored = trials(journal)
    assert [t.state for t in stored] == [TrialState.FAIL] * 3
    assert all(t.user_attrs[rec.FAIL_REASON].startswith("interrupted") for t in stored)


def test_a_killed_worker_s_whole_population_is_retried(tmp_path) -> None:
    journal = tmp_path / "j.log"
    slow = [*TINY, "--synthetic-size", "1200", "--epochs", "6", "--pruner", "none"]
    args = [*slow, "--storage", str(journal), "--population", "3", "--n-trials", "4"]
    victim = start(*args, "--seed", "1", cwd=tmp_path)
    try:
        running = wait_for(
            lambda: (
                [
                    t
                    for t in trials(journal)
                    if t.state == TrialState.RUNNING and t.intermediate_values
                ]  # fmt: skip
                if len([t for t in trials(journal) if t.state == TrialState.RUNNING]) == 3
                else None
            )
        )
        victim.kill()
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
    killed = {t.number for t in trials(journal) if t.state == TrialState.RUNNING}
    assert len(killed) == 3 and {t.number for t in running} <= killed
    survivor = start(*args, "--seed", "2", cwd=tmp_path)
    out, err = survivor.communicate(timeout=180)
    assert survivor.returncode == 0, err
    stored = trials(journal)
    by_number = {t.number: t for t in stored}
    for number in killed:
        assert by_number[number].state == TrialState.FAIL
        retries = [t for t in stored if t.user_attrs.get(rec.RETRY_OF) == number]
        assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert retries[0].params == by_number[number].params
    assert len(counted(stored)) == 4 and all(t.state in FINAL for t in stored)


@pytest.mark.parametrize(
    ("n_train", "epochs", "per_epoch", "steps"),
    [
        (3600, 9, 1, [1, 2, 3, 4, 5, 6, 7, 8, 9]),  # mnist-5k: as before, each epoch
        (54000, 5, 9, [1, 3, 9, 18, 27, 36, 45]),  # fashion: rungs at 1/9, 1/3, 1, 3 epochs
    ],
)
def test_report_steps_judge_large_sets_within_the_first_epoch(n_train, epochs, per_epoch, steps):
    assert report_steps(n_train, epochs) == (per_epoch, steps)


def test_population_zero_is_one_line_and_exit_2(capsys) -> None:
    from mnistcore.cli import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main([*TINY, "--population", "0"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--population" in err and "must be >= 1" in err


def test_population_workers_on_postgres_keep_the_exact_total(postgres: str, tmp_path) -> None:
    # two worker processes, each asking 2 trials at a time, heartbeats for every member
    args = [*TINY, "--storage", postgres, "--study-name", "pop", "--population", "2",
            "--n-trials", "5", "--workers", "2", "--heartbeat", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MNISTCORE_NO_DOWNLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "search.study", *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = optuna.load_study(study_name="pop", storage=read_storage(postgres)).trials
    assert len(stored) == 5 and all(t.state in FINAL for t in stored)
    assert {t.user_attrs[rec.POPULATION_SIZE] for t in stored} <= {1, 2}


def test_a_population_too_big_for_the_gpu_is_halved(tmp_path, monkeypatch, capsys) -> None:
    import search.objective
    from mnistcore import Population

    class SmallGpu(Population):
        """A Population whose device holds at most 2 members (as an out-of-memory GPU)."""

        def train(self, images: int) -> dict[int, float]:
            if len(self.configs) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().train(images)

    monkeypatch.setattr(search.objective, "Population", SmallGpu)
    journal = tmp_path / "j.log"
    args = [*TINY, "--storage", str(journal), "--population", "4", "--n-trials", "4"]
    assert main(args) == 0
    stored = trials(journal)
    assert len(stored) == 4 and all(t.state in FINAL for t in stored)
    # one log line, then two populations of 2 instead of a crash
    err = capsys.readouterr().err
    assert "a population of 4 does not fit in GPU memory: training it as 2 and 2" in err
    assert [t.user_attrs[rec.POPULATION_SIZE] for t in stored] == [2, 2, 2, 2]
    assert len({t.user_attrs[rec.POPULATION_ID] for t in stored}) == 2


def test_a_study_reporting_in_other_steps_is_not_resumed(tmp_path, capsys) -> None:
    from mnistcore.cli import run_main

    journal = tmp_path / "j.log"
    args = [*TINY, "--storage", str(journal), "--n-trials", "1"]
    assert main(args) == 0
    study = optuna.load_study(study_name="synthetic-accuracy", storage=read_storage(str(journal)))
    # as if written where a step was 1/9 epoch: its steps do not compare with these
    study.set_user_attr(rec.STEPS_PER_EPOCH, 9)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main([*args[:-1], "2"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reported 9 time(s) per epoch" in err and "--study-name" in err


def test_each_architecture_s_clock_starts_when_it_trains(synthetic) -> None:
    study = optuna.create_study(direction="maximize")
    for width in (4, 8):  # two architectures asked together: two populations, one after the other
        study.enqueue_trial({"width": width})
    space = build_space(overrides={"width": "4,8", "depth": "1", "hidden": "16", "lr": "0.05"})
    base = TrainConfig(epochs=2, dataset="synthetic", device="cpu", threads=1)
    objective = Objective(synthetic, space, base=base)
    run_trials(study, objective, n_trials=2, lock=StudyLock(), population=2)
    first, second = study.trials
    # the second waited while the first trained: that wait is not its duration
    assert rec.trial_span(second)[0] >= first.datetime_complete
    assert rec.trial_seconds(second) < second.duration.total_seconds()


def test_a_population_of_the_default_space_shares_one_architecture(synthetic) -> None:
    # The default space searches width and batch norm: each trial would be its own population.
    # The first trial's architecture is queued for the others, whose lr, momentum and dropout
    # the sampler still suggests, so all K train fused.
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    space = build_space(overrides={"depth": "1", "hidden": "16", "batch_size": "64"})
    base = TrainConfig(epochs=1, dataset="synthetic", device="cpu", threads=1)
    run_trials(study, Objective(synthetic, space, base=base), n_trials=6, lock=StudyLock(),
               population=3)  # fmt: skip
    trials = study.trials
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    for group in (trials[:3], trials[3:]):
        assert {t.user_attrs[rec.POPULATION_SIZE] for t in group} == {3}
        assert len({(t.params["width"], t.params["batch_norm"]) for t in group}) == 1
        assert len({t.params["lr"] for t in group}) == 3  # the members are sampled each
