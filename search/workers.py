"""Several workers on one study: the shared trial budget, crash recovery, ``--workers N``.

Any number of processes (``--workers N`` here, or the same command on several machines with
``--storage postgresql://...``) run one study. Three rules keep the study whole:

* **The total is exact.** ``--n-trials`` is the study's total. A trial counts once it is
  WAITING, RUNNING or finished; a failed trial that has a retry does not count. A worker takes
  the study's lock (search/locks.py), counts, creates its trial and only then lets go, so two
  workers never both take the last trial. Where the storage has no such lock (MySQL), a trial
  that started past the total is ended at once as PRUNED with the user attr ``surplus``; it
  trains nothing and does not count.
* **A crashed worker's trial is retried once, with the same parameters.** On PostgreSQL/MySQL
  the heartbeat does it: a RUNNING trial without a heartbeat for the grace period is failed by
  the next worker that starts a trial (or polls, see below), and
  ``RetryHeartbeatStaleTrialCallback`` enqueues its retry. A worker that died between creating
  its trial and stamping it (below) left a trial with neither heartbeat nor pid; since stamping
  happens under the study's lock, the next worker to hold the lock fails and retries it. The
  journal file has no heartbeat, but its workers share one machine: each trial records its
  worker's host, pid and process start time, and a worker that finds a RUNNING trial whose
  process is gone fails it and enqueues the retry (``--workers N``'s parent does the same the
  moment a child dies). Every retry records the trial it retries in the user attr
  ``retry_of``.
* **Workers wait for each other's last trials**: a worker with nothing left to start keeps
  polling while another worker's trial is RUNNING (on the journal file: another live process
  on this machine), so that if that worker dies, a survivor fails and reruns its trial instead
  of everyone leaving it behind.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import fail_stale_trials
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from search.locks import StudyLock
from search.storage import StorageError

log = logging.getLogger("search")

COUNTED = (
    TrialState.WAITING,
    TrialState.RUNNING,
    TrialState.COMPLETE,
    TrialState.PRUNED,
    TrialState.FAIL,
)
POLL_SECONDS = 1.0  # how often an idle worker looks for stale or re-enqueued trials
MAX_REPLACEMENTS = 3  # children the parent starts in place of crashed ones, per child slot
START_TIMEOUT = 300.0  # seconds the parent waits for the first child to create the study
CONNECTION_RETRIES = 3  # database errors in a row (1 s, 2 s, 3 s apart) before giving up


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that have a retry (enqueued, running or finished)."""
    numbers: set[int] = set()
    for t in trials:
        if "retry_of" in t.user_attrs:
            numbers.add(int(t.user_attrs["retry_of"]))
        # what RetryHeartbeatStaleTrialCallback.retried_trial_number reads (without its warning)
        failed = t.system_attrs.get("failed_trial")
        if failed is not None:
            numbers.add(int(failed))
    return numbers


def counted(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward ``--n-trials``: WAITING, RUNNING or finished, except
    surplus trials and failed trials that were retried (their retry counts instead)."""
    retried = retried_numbers(trials)
    return [
        t
        for t in trials
        if t.state in COUNTED
        and not t.user_attrs.get("surplus")
        and not (t.state == TrialState.FAIL and t.number in retried)
    ]


def budget_left(study: optuna.Study, n_trials: int) -> int:
    return n_trials - len(counted(study.get_trials(deepcopy=False)))


@dataclass
class SharedObjective:
    """Wraps the objective: stamps the trial's worker (``worker_pid``, ``worker_host``,
    ``worker_started``) and ``retry_of``, then releases the study's lock, which its worker
    took before counting; ends a trial that started past the study's total (only possible
    without a lock; checked with one too) as a surplus trial (PRUNED, trains nothing)."""

    objective: Callable[[optuna.trial.Trial], Any]
    n_trials: int
    lock: StudyLock = field(default_factory=StudyLock)
    surplus: bool = False  # set when a trial of this process started past the total

    def __call__(self, trial: optuna.trial.Trial) -> Any:
        try:
            for key, value in worker_stamp().items():
                trial.set_user_attr(key, value)
            # the heartbeat's retry callback marks a retry in its system attrs
            # ("failed_trial"), which a live Trial does not show: read them from storage
            storage = trial.study._storage  # noqa: SLF001
            failed = storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")  # noqa: SLF001
            if failed is not None:
                trial.set_user_attr("retry_of", failed)
            retry = failed is not None or "retry_of" in trial.user_attrs
            # with an atomic lock this cannot happen; the check stays as a safety net
            surplus = not retry and self._past_total(trial)
        finally:
            self.lock.release()  # the trial exists, stamped: the next worker may count
        if surplus:
            trial.set_user_attr("surplus", True)
            self.surplus = True
            raise optuna.TrialPruned(f"surplus: the study already has its {self.n_trials} trials")
        return self.objective(trial)

    def _past_total(self, trial: optuna.trial.Trial) -> bool:
        trials = counted(trial.study.get_trials(deepcopy=False))
        return sum(t.number < trial.number for t in trials) >= self.n_trials


def worker_stamp() -> dict[str, Any]:
    """What identifies this process to the others: its host, pid and start time (the start
    time tells a reused pid from the original)."""
    pid = os.getpid()
    return {
        "worker_pid": pid,
        "worker_host": socket.gethostname(),
        "worker_started": _started(pid),
    }


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in (...) may hold spaces


_HAS_PROC = os.path.isdir("/proc/self")


def unstamped(trial: FrozenTrial) -> bool:
    """True for a trial its worker never stamped: the worker died between creating the trial
    and its first line (Ctrl-C, SIGKILL). Under an atomic study lock no live worker has such a
    trial, since it stamps its trial before it lets go of the lock."""
    return "worker_pid" not in trial.user_attrs


def worker_gone(trial: FrozenTrial) -> bool:
    """True when ``trial`` ran on this machine and the process that ran it is gone (exited,
    killed, a zombie, or its pid reused since). False when unknown: another machine, or a
    trial without a worker stamp."""
    attrs = trial.user_attrs
    pid = attrs.get("worker_pid")
    if pid is None or attrs.get("worker_host") != socket.gethostname():
        return False
    if not _HAS_PROC:  # macOS, say: ask the kernel whether the pid exists (no start time)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # it exists, as another user's process
            return False
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    started = attrs.get("worker_started")
    return fields[0] == "Z" or (started is not None and fields[19] != started)


def recover(study: optuna.Study, gone: Callable[[FrozenTrial], bool]) -> list[int]:
    """Fail the RUNNING trials whose worker is ``gone`` and enqueue one retry of each (a retry
    is not retried again); returns their numbers. Call it holding the study's lock, so that
    two workers never both retry one trial."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not gone(t):
            continue
        pid = t.user_attrs.get("worker_pid")
        reason = (
            "its worker died before the trial started" if pid is None
            else f"its worker (pid {pid}) died"
        )  # fmt: skip
        study._storage.set_trial_user_attr(  # noqa: SLF001 - the trial is not ours to tell
            t._trial_id,  # noqa: SLF001
            "fail_reason",
            reason,
        )
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        failed.append(t.number)
        if "retry_of" not in t.user_attrs and not t.user_attrs.get("surplus"):
            # an enqueued trial (the start point, a retry) may have died before suggesting
            # its fixed parameters: keep them
            params = {**t.system_attrs.get("fixed_params", {}), **t.params}
            study.enqueue_trial(params, user_attrs={"retry_of": t.number})
            log.warning("trial %d failed: %s; retry enqueued", t.number, reason)
    return failed


def optimize_shared(
    study: optuna.Study,
    objective: SharedObjective,
    *,
    timeout: float | None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
) -> None:
    """Run trials one at a time until the study has ``objective.n_trials`` counted trials,
    none is WAITING, and (on heartbeat storage) none is RUNNING; or until ``timeout``."""
    deadline = time.monotonic() + timeout if timeout else None
    storage = study._storage  # noqa: SLF001 - Optuna exposes no public accessor
    heartbeat = is_heartbeat_enabled(storage)
    failures = 0
    while deadline is None or time.monotonic() < deadline:
        try:
            done = _step(study, objective, heartbeat=heartbeat, callbacks=callbacks)
        except Exception as e:
            # the database went away (restart, network): finished trials are stored; a trial
            # that was running is failed by the heartbeat and retried by a worker later
            cause = _connection_error(e)
            if cause is None:
                raise
            e = cause  # noqa: PLW2901
            failures += 1
            if failures > CONNECTION_RETRIES:
                raise StorageError(
                    f"lost the connection to the database at {_where(storage)} "
                    f"(retried {CONNECTION_RETRIES} times): {_reason(e)}; trials finished so "
                    "far are stored, rerun the same command to go on"
                ) from None
            log.warning("database connection lost (%s); retrying in %d s", _reason(e), failures)
            time.sleep(failures)
            continue
        failures = 0
        if done:
            break


def _step(
    study: optuna.Study,
    objective: SharedObjective,
    *,
    heartbeat: bool,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
) -> bool:
    """One trial, or one look for work (sleeping a while); True when there is none left."""
    lock = objective.lock
    lock.acquire()
    try:
        if heartbeat:
            fail_stale_trials(study)  # a dead worker's trial: FAIL, and its retry enqueued
        # a trial whose worker died before stamping it has no heartbeat and no pid to watch;
        # holding an atomic lock, we know its creator is not still about to stamp it
        recover(
            study,
            lambda t: (lock.atomic and unstamped(t)) or (not heartbeat and worker_gone(t)),
        )
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        left = objective.n_trials - len(counted(trials))
        if left > 0 or waiting:
            # the objective releases the lock as soon as its trial exists
            study.optimize(objective, n_trials=1, callbacks=callbacks, gc_after_trial=False)
            return objective.surplus  # a surplus trial: the others have the rest
    finally:
        lock.release()
    others = [t for t in trials if t.state == TrialState.RUNNING]
    if not heartbeat:  # the journal: only this machine's live processes can be watched
        others = [t for t in others if t.user_attrs.get("worker_host") == socket.gethostname()]
    if others:
        time.sleep(POLL_SECONDS)  # another worker's trial: wait in case it dies
        return False
    return True


def _connection_error(e: BaseException) -> BaseException | None:
    """The database connection error behind ``e`` (Optuna may mask it while failing the trial
    it was running, e.g. with an UnboundLocalError), or None."""
    try:
        from sqlalchemy.exc import InterfaceError, OperationalError
    except ImportError:  # pragma: no cover - sqlalchemy comes with optuna
        return None
    seen: BaseException | None = e
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, (OperationalError, InterfaceError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _reason(e: BaseException) -> str:
    return str(getattr(e, "orig", None) or e).strip().splitlines()[0]


def _where(storage: object) -> str:
    backend = getattr(storage, "_backend", storage)  # RDBStorage, maybe inside a cache
    url = getattr(getattr(backend, "engine", None), "url", None)
    if url is None or not url.host:
        return "the --storage host"
    return f"{url.host}:{url.port or 'default port'}"


# ---------------------------------------------------------------------------------------------
# the parent of ``--workers N``


@dataclass
class _Child:
    slot: int
    seed: int
    proc: subprocess.Popen[bytes]


@dataclass
class Parent:
    """Starts ``workers`` children running ``python -m search.study ARGV --workers 1``,
    forwards SIGINT, replaces crashed children after failing and re-enqueueing their trials."""

    argv: list[str]
    workers: int
    seed: int
    threads: int
    study: Callable[[], optuna.Study]  # loads the study (None before it exists: raises KeyError)
    lock: StudyLock = field(default_factory=StudyLock)  # the study's: see search/locks.py
    children: list[_Child] = field(default_factory=list)
    interrupted: bool = False
    crashed: int = 0
    started: int = 0

    def run(self) -> int:
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            self._start(0)
            self._wait_for_study()  # one child creates the study (and its first trial) alone
            first = self.children[0].proc.poll()
            if first is not None and first != 0:
                return first if first > 0 else 1  # it said why (a user error, say)
            for slot in range(1, self.workers):
                self._start(slot)
            return self._supervise()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.interrupted = True
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGINT)

    def _start(self, slot: int) -> None:
        seed = self.seed * 1000 + self.started
        self.started += 1
        threads = self.threads or max(1, (os.cpu_count() or 1) // self.workers)
        argv = [
            *self.argv,
            "--workers", "1", "--seed", str(seed), "--threads", str(threads), "--no-report",
        ]  # fmt: skip
        env = {
            **os.environ,
            # idle OpenMP threads spin by default: N processes sharing few cores thrash
            "OMP_WAIT_POLICY": "PASSIVE",
            "TQDM_DISABLE": "1",  # N progress bars on one terminal would overwrite each other
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "search.study", *argv],
            env=env,
            stdout=subprocess.DEVNULL,  # the parent prints the one summary
            start_new_session=True,  # Ctrl-C reaches the parent, which forwards it once
        )
        log.info("worker %d started: pid %d, seed %d, %d threads", slot, proc.pid, seed, threads)
        self.children.append(_Child(slot, seed, proc))

    def _wait_for_study(self) -> None:
        first = self.children[0].proc
        deadline = time.monotonic() + START_TIMEOUT
        while first.poll() is None and not self.interrupted and time.monotonic() < deadline:
            try:
                if self.study().get_trials(deepcopy=False):
                    return
            except KeyError:
                pass
            time.sleep(0.2)

    def _supervise(self) -> int:
        codes: list[int] = []
        replacements: dict[int, int] = {}
        while self.children:
            for child in list(self.children):
                code = child.proc.poll()
                if code is None:
                    continue
                self.children.remove(child)
                if code < 0 and not self.interrupted and -code != signal.SIGINT:
                    self.crashed += 1
                    log.warning(
                        "worker %d (pid %d) killed by signal %d", child.slot, child.proc.pid, -code
                    )
                    self._recover(child.proc.pid)
                    if replacements.get(child.slot, 0) < MAX_REPLACEMENTS:
                        replacements[child.slot] = replacements.get(child.slot, 0) + 1
                        self._start(child.slot)
                        continue
                codes.append(code)
            time.sleep(0.2)
        if self.interrupted or any(c in (130, -signal.SIGINT) for c in codes):
            return 130
        bad = [c for c in codes if c != 0]
        return (bad[0] if bad[0] > 0 else 1) if bad else 0

    def _recover(self, pid: int) -> None:
        """Fail the trials a dead child left RUNNING and enqueue one retry of each."""
        with self.lock.hold():
            recover(self.study(), lambda t: t.user_attrs.get("worker_pid") == pid)
