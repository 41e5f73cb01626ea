"""The study lock (search/locks.py) on a real journal file and a real PostgreSQL server: it
excludes, it is per study, a holder killed with SIGKILL leaves nothing locked, and workers
racing for a study's last trials under it create exactly the total (without it, 8 racing
workers made 2-3 surplus trials in 24 in each of 4 runs)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import text

from search import recovery
from search.locks import AdvisoryLock, FileLock, StudyLock, study_lock
from search.run import run_trials
from studies.storage import KEEPALIVE
from studies.storage import open_storage as _open_storage

ROOT = Path(__file__).resolve().parents[1]
OPENED: list = []


def open_storage(spec: str, **kwargs):
    """The real opener; each test disposes the database engines it opened (their pooled
    connections would otherwise be closed by the garbage collector in a later test)."""
    storage, name = _open_storage(spec, **kwargs)
    OPENED.append(storage)
    return storage, name


@pytest.fixture(autouse=True)
def _dispose_engines():
    yield
    for storage in OPENED:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()
    OPENED.clear()


@pytest.fixture(params=["journal", "postgres"])
def make_lock(request: pytest.FixtureRequest, tmp_path: Path):
    """A factory of locks on one storage, each as a separate worker would hold it."""
    if request.param == "journal":
        spec = str(tmp_path / "journal.log")
    else:
        spec = request.getfixturevalue("postgres")

    def make(study_name: str = "s") -> StudyLock:
        storage, name = open_storage(spec)  # each worker opens the storage itself
        return study_lock(storage, name, study_name)

    return make


def test_each_storage_gets_its_real_lock(make_lock) -> None:
    lock = make_lock()
    assert isinstance(lock, (FileLock, AdvisoryLock)) and lock.atomic
    assert not study_lock(optuna.storages.InMemoryStorage(), "", "s").atomic


def test_read_modify_write_under_the_lock_loses_no_update(make_lock) -> None:
    # the pattern the lock protects: read a count, pause (creating a trial takes a while),
    # write the count + 1. Unlocked, the 4 threads overwrite each other's increments.
    counter = [0]

    def worker(lock: StudyLock) -> None:
        for _ in range(5):
            with lock.hold():
                seen = counter[0]
                time.sleep(0.005)
                counter[0] = seen + 1

    threads = [threading.Thread(target=worker, args=(make_lock(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert counter[0] == 20


def test_studies_do_not_block_each_other(make_lock) -> None:
    first, other = make_lock("first"), make_lock("other")
    with first.hold():
        done = threading.Event()
        threading.Thread(target=lambda: (other.acquire(), other.release(), done.set())).start()
        assert done.wait(timeout=10)


def test_release_twice_and_without_acquire_is_harmless(make_lock) -> None:
    lock = make_lock()
    lock.release()
    with lock.hold():
        pass
    lock.release()
    with lock.hold():  # and it can be taken again
        pass


HOLD_AND_WAIT = """
import sys, time
from studies.storage import open_storage
from search.locks import study_lock
storage, name = open_storage(sys.argv[1])
study_lock(storage, name, "s").acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_holder_killed_with_sigkill_leaves_the_study_unlocked(make_lock) -> None:
    lock = make_lock()
    spec = lock.path.with_name("journal.log") if isinstance(lock, FileLock) else None
    url = str(spec) if spec else lock.engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, url], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        taken = threading.Event()
        waiter = threading.Thread(target=lambda: (lock.acquire(), taken.set()), daemon=True)
        waiter.start()
        assert not taken.wait(timeout=1.0), "the lock did not exclude"
        holder.kill()
        holder.wait()
        assert taken.wait(timeout=10), "a killed holder left the lock taken"
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()


def racing_workers(spec: str, lock_for, n_workers: int = 8, n_trials: int = 24) -> list:
    """``n_workers`` threads, each with its own storage connection and lock, run one study of
    quick trials to ``n_trials`` with run_trials; returns the study's trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, name = open_storage(spec)
    optuna.create_study(study_name="race", storage=storage)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            storage, name = open_storage(spec)
            study = optuna.load_study(
                study_name="race", storage=storage, sampler=optuna.samplers.RandomSampler(seed)
            )
            run_trials(
                study,
                lambda t: (t.suggest_float("x", 0, 1), time.sleep(0.002))[0],
                n_trials=n_trials,
                lock=lock_for(storage, name),
                timeout=60,
            )
        except BaseException as e:  # reported by the test
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return optuna.load_study(study_name="race", storage=storage).get_trials(deepcopy=False)


@pytest.mark.parametrize("where", ["journal", "postgres"])
def test_racing_workers_create_exactly_the_total(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    spec = str(tmp_path / "j.log") if where == "journal" else request.getfixturevalue("postgres")
    all_trials = racing_workers(spec, lambda storage, name: study_lock(storage, name, "race"))
    assert len(all_trials) == 24, [(t.number, t.state.name) for t in all_trials]
    assert all(t.state == TrialState.COMPLETE for t in all_trials)


@pytest.mark.parametrize("where", ["journal", "postgres"])
def test_a_trial_its_worker_never_stamped_is_failed_and_retried_with_its_parameters(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # a worker that dies (Ctrl-C, SIGKILL) between creating its trial and stamping it leaves a
    # RUNNING trial with no heartbeat and no pid: the next worker under the lock retries it
    spec = str(tmp_path / "j.log") if where == "journal" else request.getfixturevalue("postgres")
    storage, name = open_storage(spec, heartbeat=1)
    study = optuna.create_study(study_name="orphan", storage=storage)
    study.enqueue_trial({"x": 0.25})  # the start point
    orphan = study.ask()  # pops it: RUNNING, never stamped, never heartbeating
    assert orphan.number == 0
    run_trials(
        study,
        lambda t: t.suggest_float("x", 0, 1),
        n_trials=3,
        lock=study_lock(storage, name, "orphan"),
        timeout=30,
    )
    all_trials = study.get_trials(deepcopy=False)
    assert all_trials[0].state == TrialState.FAIL
    retries = [t for t in all_trials if t.user_attrs.get("retry_of") == 0]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == {"x": 0.25}
    assert len(all_trials) == 4  # 3 counted, plus the failed one


def test_the_lock_connection_keeps_alive_so_a_dead_machine_lets_go(postgres: str) -> None:
    storage, name = open_storage(postgres)
    lock = study_lock(storage, name, "keepalive")
    assert isinstance(lock, AdvisoryLock)
    lock.acquire()
    try:
        for setting, seconds in KEEPALIVE.items():
            shown = lock._conn.execute(text(f"SHOW {setting}")).scalar()
            assert shown == str(seconds), (setting, shown)  # over TCP the server applies it
    finally:
        lock.release()


def test_releasing_a_lock_the_server_dropped_warns_and_does_not_raise(
    postgres: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage, name = open_storage(postgres)
    lock = study_lock(storage, name, "dropped")
    lock.acquire()
    lock._conn.execute(text("SELECT pg_advisory_unlock_all()"))
    with caplog.at_level(logging.WARNING, logger="search"):
        lock.release()
    assert "no longer held" in caplog.text
    # a connection the server cut: release is quiet, and the lock can be taken again
    lock.acquire()
    pid = lock._conn.execute(text("SELECT pg_backend_pid()")).scalar()
    other = study_lock(storage, name, "other")
    other.acquire()
    other._conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.release()
    lock.release()
    assert lock._conn is None
    with lock.hold():
        pass


def test_without_proc_a_dead_pid_is_gone_and_a_live_one_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # macOS has no /proc: the kernel is asked whether the pid exists (kill 0)
    monkeypatch.setattr(recovery, "_HAS_PROC", False)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid is free

    def trial_of(pid: int) -> FrozenTrial:
        return optuna.trial.create_trial(
            state=TrialState.RUNNING, user_attrs=recovery.worker_stamp() | {"worker_pid": pid}
        )

    assert not recovery.worker_gone(trial_of(os.getpid()))
    assert recovery.worker_gone(trial_of(child.pid))
