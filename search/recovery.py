"""Crash recovery: which trials count toward ``--n-trials``, who runs each trial, what becomes of
a trial whose worker died, and how long a trial trained. One retry marker (``retry_of``).

A failed trial that has a retry does not count (its retry does). A crashed worker's trial runs
again once, with the same parameters: ``recover``, under the study lock (search/locks.py),
finds it by Optuna's heartbeat on a database, by a stamp (host, pid, process start time) naming
a gone process of this machine, or, under an atomic lock, by a missing stamp. A crash's retry is
not retried (it could loop). A Ctrl-C is no crash: its trial fails as INTERRUPTED and the next
run queues a retry, every time, so the study still reaches its total.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import fail_stale_trials
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from studies import trial_record as rec

log = logging.getLogger("search")

_HAS_PROC = os.path.isdir("/proc/self")
INTERRUPTED = "interrupted by the user (SIGINT)"  # the fail reason of a trial cut by Ctrl-C


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` from field 3 on (state, ppid, ...; field 22, the start
    time, is item 19), or None when no such process exists. Linux only."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()  # the name in (...) may hold spaces


def counted(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward ``--n-trials``: all but failed trials that were retried."""
    retried = _retried(trials)
    return [t for t in trials if not (t.state == TrialState.FAIL and t.number in retried)]


def _retried(trials: Sequence[FrozenTrial]) -> set[int]:
    return {int(t.user_attrs[rec.RETRY_OF]) for t in trials if rec.RETRY_OF in t.user_attrs}


def worker_stamp() -> dict[str, Any]:
    """This process to the others: host, pid and start time (which tells a reused pid)."""
    pid = os.getpid()
    try:
        stat = proc_stat(pid) if _HAS_PROC else None
    except OSError:  # /proc not readable here: no start time, the pid alone
        stat = None
    return {
        rec.WORKER_PID: pid,
        rec.WORKER_HOST: socket.gethostname(),
        rec.WORKER_STARTED: stat[19] if stat else None,
    }


def stamp(trial: optuna.trial.Trial) -> None:
    """Record on ``trial`` which process runs it; done under the study's lock, after ``ask``."""
    for key, value in worker_stamp().items():
        trial.set_user_attr(key, value)


def worker_gone(trial: FrozenTrial) -> bool:
    """True when ``trial`` ran on this machine and the process that ran it is gone (exited,
    killed, a zombie, or its pid reused since). False when unknown: another machine, or a
    trial without a worker stamp."""
    attrs = trial.user_attrs
    pid = attrs.get(rec.WORKER_PID)
    if pid is None or attrs.get(rec.WORKER_HOST) != socket.gethostname():
        return False
    if not _HAS_PROC:  # macOS, say: ask the kernel whether the pid exists (no start time)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # it exists, as another user's process
            pass
        return False
    try:
        fields = proc_stat(pid)
    except OSError:
        return False
    if fields is None:
        return True
    started = attrs.get(rec.WORKER_STARTED)
    return fields[0] == "Z" or (started is not None and fields[19] != started)


def recover(study: optuna.Study, *, atomic: bool, dead_pid: int | None = None) -> None:
    """Fail the RUNNING trials whose worker is gone and queue a retry of each, and of each trial
    a Ctrl-C cut short. Hold the study's lock (``atomic``: a real one), so no two workers retry
    one trial and an unstamped trial cannot be a live worker's. ``dead_pid``: a dead process of
    this machine (a ``--workers`` child), whose trials fail at once on any storage. Stamps are
    judged only where no heartbeat watches (the journal): database hosts may share a name."""
    heartbeat = is_heartbeat_enabled(study._storage)
    if heartbeat:
        fail_stale_trials(study)  # calls retry_stale (the storage's callback) for each
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    for t in trials:
        cut = t.state == TrialState.FAIL and t.user_attrs.get(rec.FAIL_REASON) == INTERRUPTED
        if cut and t.number not in retried:
            _queue_retry(study, t, INTERRUPTED, crashed=False)
    here = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get(rec.WORKER_PID)
        if dead_pid is not None and pid == dead_pid and t.user_attrs.get(rec.WORKER_HOST) == here:
            pass  # the parent saw this process die
        elif not ((atomic and pid is None) or (not heartbeat and worker_gone(t))):
            continue
        reason = (
            "its worker died before the trial started" if pid is None
            else f"its worker (pid {pid}) died"
        )  # fmt: skip
        # the trial is not this process's to tell through a Trial object: write to storage
        study._storage.set_trial_user_attr(t._trial_id, rec.FAIL_REASON, reason)
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        _queue_retry(study, t, reason)


def retry_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat callback (``open_storage(on_stale_trial=...)``): Optuna has failed
    ``trial``, whose worker stopped sending heartbeats; queue its retry."""
    _queue_retry(study, trial, "its worker stopped sending heartbeats")


def _queue_retry(
    study: optuna.Study, trial: FrozenTrial, reason: str, *, crashed: bool = True
) -> None:
    if crashed and rec.RETRY_OF in trial.user_attrs:
        log.warning("trial %d failed: %s; a retry itself, not retried", trial.number, reason)
        return
    # an enqueued trial (the start point, a retry) may have died before suggesting its fixed
    # parameters: keep them
    params: dict[str, Any] = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    study.enqueue_trial(params, user_attrs={rec.RETRY_OF: trial.number})
    log.warning("trial %d failed: %s; retry enqueued", trial.number, reason)
