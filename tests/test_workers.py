"""Several workers on one study: a real PostgreSQL server and the journal file, real processes,
real signals (no mocks). Each test runs tiny synthetic studies in a few seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from mnistcore.cli import run_main
from search.cli import main
from search.recovery import counted, proc_stat
from studies.storage import read_storage
from tests.conftest import require
from tests.postgres import find_bin_dir, free_port, fresh_database, postgres_server

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "2", "--no-report"]
# trials long enough (about a second) to be caught inside one, and never pruned
SLOW = ["--dataset", "synthetic", "--synthetic-size", "600", "--epochs", "4", "--pruner", "none",
        "--no-report", "--threads", "1"]  # fmt: skip
FINAL = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def study_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "search.study", *args]


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """A failed test (a timeout, say) must not leave its workers running: they would load the
    machine for the tests after it. Kills each one and its children (a --workers parent's
    children run in sessions of their own, so killing a process group would miss them)."""
    yield
    for proc in STARTED:
        if proc.poll() is None:
            for pid in _children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
    STARTED.clear()


def _children(pid: int) -> list[int]:
    children = []
    for folder in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            fields = proc_stat(int(folder.name))
            if fields is not None and int(fields[1]) == pid:  # field 4: ppid
                children.append(int(folder.name))
    return children


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        study_cmd(*args), cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    STARTED.append(proc)
    return proc


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = start(*args, cwd=cwd)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def trials(storage: str, name: str) -> list[FrozenTrial]:
    if "://" not in storage and not Path(storage).is_file():
        raise KeyError(name)  # the journal is not written yet, so neither is the study
    st = read_storage(storage)  # reads: never creates the journal or its folder
    return optuna.load_study(study_name=name, storage=st).get_trials(deepcopy=False)


def completed(storage: str, name: str) -> list[FrozenTrial]:
    return [t for t in trials(storage, name) if t.state == TrialState.COMPLETE]


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except KeyError:  # the study does not exist yet
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_whole(all_trials: list[FrozenTrial], n_trials: int) -> None:
    numbers = [t.number for t in all_trials]
    assert len(numbers) == len(set(numbers))
    assert all(t.state in FINAL for t in all_trials), [t.state for t in all_trials]
    assert len(counted(all_trials)) == n_trials
    # the study's lock makes "count, then create a trial" atomic: no worker ever starts a
    # trial past the total, so the only trials beyond it are the failed ones that were retried
    retried = [t for t in all_trials if "retry_of" in t.user_attrs]
    assert len(all_trials) == n_trials + len(retried)


def test_three_workers_on_postgres(postgres: str, tmp_path: Path) -> None:
    result = run(*FAST, "--workers", "3", "--n-trials", "5", "--storage", postgres,
                 "--study-name", "three", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "study 'three'" in result.stdout
    all_trials = trials(postgres, "three")
    assert len(all_trials) == 5
    assert_whole(all_trials, 5)


def training(t: FrozenTrial) -> bool:
    """The trial is RUNNING and past choosing its parameters (its config is stored)."""
    return t.state == TrialState.RUNNING and "config" in t.user_attrs


def running_of(storage: str, name: str, pid: int) -> FrozenTrial | None:
    return next(
        (t for t in trials(storage, name) if training(t) and t.user_attrs["worker_pid"] == pid),
        None,
    )


def assert_retried(all_trials: list[FrozenTrial], killed: int) -> FrozenTrial:
    by_number = {t.number: t for t in all_trials}
    assert by_number[killed].state == TrialState.FAIL
    retries = [t for t in all_trials if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry.params == by_number[killed].params
    return retry


def assert_recovered(
    all_trials: list[FrozenTrial], killed: int, n_trials: int, killed_at: datetime, label: str
) -> None:
    """The killed trial was retried once and the study holds exactly what was requested."""
    retry = assert_retried(all_trials, killed)
    assert retry.datetime_start is not None
    print(f"{label}: SIGKILL to retry {(retry.datetime_start - killed_at).total_seconds():.1f} s")
    assert_whole(all_trials, n_trials)


def kill_one_of_three(
    args: list[str], storage: str, name: str, cwd: Path
) -> tuple[FrozenTrial, int, datetime]:
    """Start three separate worker processes on one study, SIGKILL the first inside a trial,
    and wait for the other two to finish (exit 0). Returns the killed trial, the killed pid
    and the moment of the kill."""
    first = start(*args, "--seed", "1", cwd=cwd)
    wait_for(lambda: trials(storage, name), what="the study")
    others = [start(*args, "--seed", str(seed), cwd=cwd) for seed in (2, 3)]
    # the first: it is sure to be inside a trial (not finding the work done)
    trial = wait_for(lambda: running_of(storage, name, first.pid), what="a running trial")
    first.kill()
    killed_at = datetime.now()
    first.wait()
    for proc in others:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return trial, first.pid, killed_at


def test_sigkilled_worker_on_postgres_is_retried_by_the_others(
    postgres: str, tmp_path: Path
) -> None:
    args = [*SLOW, "--n-trials", "4", "--storage", postgres, "--study-name", "killed",
            "--heartbeat", "1", "--quiet"]  # fmt: skip
    trial, _, killed_at = kill_one_of_three(args, postgres, "killed", tmp_path)
    assert_recovered(trials(postgres, "killed"), trial.number, 4, killed_at, "postgres")


def test_three_workers_on_the_default_journal_a_sigkilled_child_is_retried(tmp_path: Path) -> None:
    # the default storage: the journal file reports/optuna-journal.log under the working folder
    journal = str(tmp_path / "reports" / "optuna-journal.log")
    parent = start(*SLOW, "--workers", "3", "--n-trials", "5", cwd=tmp_path)
    # a trial of any child but the first (whose first trial may start before the others)
    trial = wait_for(
        lambda: [
            t for t in trials(journal, "synthetic-accuracy") if training(t) and t.number > 0
        ],  # fmt: skip
        what="a running trial",
    )[0]
    os.kill(trial.user_attrs["worker_pid"], signal.SIGKILL)
    killed_at = datetime.now()
    out, err = parent.communicate(timeout=120)
    assert parent.returncode == 0, err
    assert "crashed" in out
    assert_recovered(trials(journal, "synthetic-accuracy"), trial.number, 5, killed_at, "journal")


def test_separate_processes_on_one_journal_retry_a_sigkilled_ones_trial(tmp_path: Path) -> None:
    # no --workers parent: three commands on one journal file, as a user runs them by hand
    journal = str(tmp_path / "journal.log")
    args = [*SLOW, "--n-trials", "4", "--storage", journal, "--quiet"]
    trial, victim, killed_at = kill_one_of_three(args, journal, "synthetic-accuracy", tmp_path)
    all_trials = trials(journal, "synthetic-accuracy")
    assert assert_retried(all_trials, trial.number).user_attrs["worker_pid"] != victim
    assert_recovered(all_trials, trial.number, 4, killed_at, "journal, separate processes")


def test_a_lone_process_killed_with_sigkill_is_resumed_by_a_rerun(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal.log")
    args = [*SLOW, "--n-trials", "2", "--storage", journal, "--quiet"]
    proc = start(*args, cwd=tmp_path)
    trial = wait_for(
        lambda: running_of(journal, "synthetic-accuracy", proc.pid), what="a running trial"
    )
    proc.kill()
    proc.wait()
    again = run(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    all_trials = trials(journal, "synthetic-accuracy")
    assert_retried(all_trials, trial.number)
    assert_whole(all_trials, 2)


@pytest.mark.parametrize("left", ["relative, a minute ago", "absolute, just now"])
def test_a_journal_lock_left_by_a_killed_writer_is_taken_over(left: str, tmp_path: Path) -> None:
    # a writer SIGKILLed inside an append leaves Optuna's lock, the symlink <journal>.lock. With
    # the default relative path it pointed nowhere, and Optuna's takeover never fired: every
    # worker then spun forever (seen in the 3-worker kill test). Now the link's age counts.
    reports = tmp_path / "reports"
    reports.mkdir()
    lock = reports / "optuna-journal.log.lock"
    if left.startswith("relative"):
        lock.symlink_to("reports/optuna-journal.log")
        past = time.time() - 60
        os.utime(lock, (past, past), follow_symlinks=False)
    else:
        lock.symlink_to(reports / "optuna-journal.log")
    result = run(*FAST, "--n-trials", "2", "--quiet", cwd=tmp_path, timeout=90)
    assert result.returncode == 0, result.stderr
    assert "taking it over" in result.stderr
    assert not lock.is_symlink()
    assert_whole(trials(str(reports / "optuna-journal.log"), "synthetic-accuracy"), 2)


def test_workers_starting_at_once_on_postgres_create_exactly_the_total(
    postgres: str, tmp_path: Path
) -> None:
    # separate processes opening a fresh database at once: Optuna's tables are created once
    # (they raced in CREATE TABLE before the schema lock), the start point is queued once, and
    # no one starts a trial past the total (tests/test_locks.py races that harder, in threads)
    url = fresh_database(postgres, "race")  # no tables yet: all three create them at once
    args = [*FAST, "--n-trials", "4", "--storage", url, "--study-name", "race", "--quiet",
            "--threads", "1"]  # fmt: skip
    workers = [start(*args, "--seed", str(seed), cwd=tmp_path) for seed in range(3)]
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    all_trials = trials(url, "race")
    assert_whole(all_trials, 4)
    assert len(all_trials) == 4
    queued = [t for t in all_trials if "fixed_params" in t.system_attrs]
    assert len(queued) == 1, [t.params for t in queued]


def test_sigint_stops_a_worker_cleanly_and_a_rerun_resumes(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal.log")
    args = [*SLOW, "--n-trials", "3", "--storage", journal, "--quiet"]
    proc = start(*args, cwd=tmp_path)
    # inside the training loop (an epoch reported), not in the process's start-up
    wait_for(
        lambda: (
            (t := running_of(journal, "synthetic-accuracy", proc.pid)) and t.intermediate_values
        ),
        what="a trial's first epoch",
    )
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "study 'synthetic-accuracy'" in out
    assert "Traceback" not in err
    interrupted = trials(journal, "synthetic-accuracy")
    assert all(t.state in FINAL for t in interrupted)
    assert len(interrupted) < 3

    cut = [t for t in interrupted if t.user_attrs.get("fail_reason", "").startswith("interrupted")]
    assert len(cut) == 1

    again = run(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    # the interrupted trial ran again first, with its parameters, and the total is whole
    assert_retried(trials(journal, "synthetic-accuracy"), cut[0].number)
    assert_whole(trials(journal, "synthetic-accuracy"), 3)


@pytest.mark.parametrize(
    "case", ["wrong password", "closed port", "bad url"], ids=lambda c: c.replace(" ", "-")
)
def test_unusable_database_is_one_line_exit_2(
    postgres: str, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = {
        "wrong password": postgres.replace(":test-secret@", ":wrong@"),
        "closed port": f"postgresql://u:p@127.0.0.1:{free_port()}/optuna",
        "bad url": "postgresql://u:p@127.0.0.1:notaport/optuna",
    }[case]
    # in this process (what `python -m search.study` runs): a child process would spend
    # seconds importing torch for nothing
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main([*FAST, "--storage", url, "--workers", "2"]))
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "127.0.0.1" in lines[0]
    assert "wrong" not in lines[0] and ":p@" not in lines[0]  # passwords are never shown


def test_lost_database_is_retried_then_one_line_exit_2_and_finished_trials_stay(
    tmp_path: Path,
) -> None:
    bin_dir = find_bin_dir()
    require(bin_dir is not None, "postgresql", "PostgreSQL server binaries (initdb, pg_ctl)")
    assert bin_dir is not None
    # a server of its own: this test stops it under a running study
    with postgres_server(bin_dir) as server:
        proc = start("--storage", server.url, "--study-name", "lost", "--n-trials", "100",
                     *SLOW, cwd=tmp_path)  # fmt: skip
        try:
            wait_for(lambda: completed(server.url, "lost"), timeout=120, what="a trial")
            done = {t.number for t in completed(server.url, "lost")}
            server.stop()
            lost_at = time.monotonic()
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
        print(f"connection lost -> exit after {time.monotonic() - lost_at:.1f} s")
        # Retried a few times (warnings), then one error line naming the host, exit code 2.
        assert proc.returncode == 2, err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "127.0.0.1" in errors[0], err
        assert "Traceback" not in err
        assert "retrying" in err
        # The server comes back: every trial that had finished is still there, complete.
        server.start()
        after = {t.number: t.state for t in trials(server.url, "lost")}
        assert all(after[n] == TrialState.COMPLETE for n in done)


def test_a_short_database_outage_is_ridden_out_and_the_study_finishes(tmp_path: Path) -> None:
    bin_dir = find_bin_dir()
    require(bin_dir is not None, "postgresql", "PostgreSQL server binaries (initdb, pg_ctl)")
    assert bin_dir is not None
    with postgres_server(bin_dir) as server:
        proc = start("--storage", server.url, "--study-name", "outage", "--n-trials", "4",
                     "--heartbeat", "1", "--quiet", *SLOW, cwd=tmp_path)  # fmt: skip
        try:
            wait_for(lambda: completed(server.url, "outage"), timeout=120, what="a trial")
            lines: list[str] = []
            assert proc.stderr is not None
            reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
            reader.start()
            server.stop()
            # back up once the worker has noticed: well inside its retries' 1 + 2 + 3 s
            wait_for(lambda: any("retrying" in line for line in lines), what="a retry")
            server.start()
            proc.wait(timeout=120)
            reader.join(timeout=10)
            err = "".join(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "retrying" in err
        # the trial the outage broke (left RUNNING or FAIL) has a retry; the study is whole
        assert_whole(trials(server.url, "outage"), 4)


def test_workers_and_their_confirmation_end_within_the_timeout(tmp_path: Path) -> None:
    # trials of a few seconds and 8 seeds to confirm: without the children keeping time for
    # the confirmation, it would come on top of the 20 s of searching
    slow = [*SLOW[:2], "--synthetic-size", "2000", *SLOW[4:]]
    begun = time.monotonic()
    args = ["--workers", "2", "--n-trials", "1000", "--timeout", "20", "--confirm", "1:8"]
    result = run(*slow, *args, "--storage", str(tmp_path / "j.log"), cwd=tmp_path)
    wall = time.monotonic() - begun
    assert result.returncode == 0, result.stderr
    assert "confirmed winner" in result.stdout
    assert wall < 20 + 8, result.stdout  # + the parent's start-up (torch) and the workers' exit
