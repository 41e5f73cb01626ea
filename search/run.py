"""Running a study: the trial loop of one process (``run_study``), or N worker processes on one
study supervised by this one (``run_workers``, for ``--workers N``).

The trial loop asks, runs and tells each trial itself (as Optuna's own ``_run_trial`` does),
so the study's lock, crash recovery (search/recovery.py), the heartbeat and Ctrl-C each sit in
one visible place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import InterfaceError, OperationalError

from mnistcore import Dataset
from mnistcore.cli import INTERRUPTED_EXIT
from mnistcore.errors import UserError
from search.artifacts import open_artifact_store
from search.confirm import confirm
from search.console import progress_bar, trial_line
from search.locks import StudyLock
from search.recovery import INTERRUPTED, counted, recover, stamp
from search.setup import Place, StudySettings, load_data, locate, population_size, prepare
from search.space import searched_names
from search.summary import format_summary
from studies import trial_record as rec
from studies.storage import StorageError, first_line
from studies.study_data import study_report

log = logging.getLogger("search")

POLL_SECONDS = 1.0  # how often an idle worker looks for stale or re-enqueued trials
CONNECTION_RETRIES = 3  # database errors in a row (1 s, 2 s, 3 s apart) before giving up
MAX_REPLACEMENTS = 3  # children the parent starts in place of crashed ones, per child slot
START_TIMEOUT = 300.0  # seconds the parent waits for the first child to create the study

# trains a batch of trials and tells each as it ends (search.objective.Objective.run), or a
# plain Optuna objective (one trial -> its value, or optuna.TrialPruned)
Objective = Callable[[optuna.trial.Trial], Any]
OnTrialEnd = Callable[[FrozenTrial], None]


def run_study(settings: StudySettings) -> int:
    """Run (or resume) the study of ``settings`` in this process; returns the exit code."""
    prepared = prepare(settings)
    study, objective, lock = prepared.study, prepared.objective, prepared.place.lock
    with lock.hold():  # dead or interrupted trials get their retry queued before counting
        recover(study, atomic=lock.atomic)
    to_run = _to_run(study, settings.n_trials)
    if not to_run and not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # a warning, so that --quiet still says why nothing ran
        log.warning(
            "study %r already has %d trials and --n-trials %d counts them: nothing to run; "
            "raise --n-trials above %d to continue it, or give --study-name for a new study",
            study.study_name, len(counted(study.get_trials(deepcopy=False))),
            settings.n_trials, settings.n_trials,
        )  # fmt: skip
        interrupted = _confirm(study, prepared.objective.data, settings, prepared.store, [])
        _finish(prepared.place, study, [], report=settings.report and not interrupted)
        return INTERRUPTED_EXIT if interrupted else 0
    names = searched_names(settings.space)
    bar = progress_bar(to_run, quiet=settings.quiet)
    ledger = _Ledger()

    def on_trial_end(trial: FrozenTrial) -> None:
        ledger.trials += 1
        bar.total = bar.n + 1 + _to_run(study, settings.n_trials)  # a retry adds one
        bar.update(1)
        log.info("%s", trial_line(trial, names))

    start = time.perf_counter()
    try:
        run_trials(
            study,
            objective,
            n_trials=settings.n_trials,
            lock=lock,
            timeout=settings.timeout,
            population=population_size(settings),
            on_trial_end=on_trial_end,
        )
    except KeyboardInterrupt:
        ledger.interrupted = True
        log.warning(
            "interrupted: the running trial is marked FAIL; rerun the same command to resume "
            "(it runs that trial again first)"
        )
    finally:
        ledger.wall_seconds = time.perf_counter() - start
        bar.close()
    lines = ledger.lines(objective.compute_seconds)
    if not ledger.interrupted:
        ledger.interrupted = _confirm(study, objective.data, settings, prepared.store, lines)
    report = settings.report and not ledger.interrupted
    _finish(prepared.place, study, lines, report=report)
    return INTERRUPTED_EXIT if ledger.interrupted else 0


def _to_run(study: optuna.Study, n_trials: int) -> int:
    """Trials still to start: those the study is short of its total, plus the queued ones."""
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return max(n_trials - len(counted(trials)), 0) + waiting


def run_workers(settings: StudySettings, argv: list[str]) -> int:
    """``--workers N``: N child processes run this command with ``--workers 1`` on one study;
    this process supervises them, then prints the summary and builds the report once."""
    place = locate(settings)  # the children must agree on the study's name: resolved here once
    store = open_artifact_store(settings.artifacts, place.storage_name)  # before any child
    parent = Parent(
        argv=[*argv, "--study-name", place.study_name],
        workers=settings.workers,
        seed=settings.seed,
        threads=settings.threads,
        place=place,
    )
    log.info("%d workers on study %r in %s", parent.workers, place.study_name, place.storage_name)
    start = time.perf_counter()
    code = parent.run()
    wall = time.perf_counter() - start
    try:
        study = place.load()
    except KeyError:
        return code or 1  # no child got as far as creating the study: it said why
    line = f"{settings.workers} workers: {wall:.1f} s wall"
    if parent.crashed:
        line += f"; {parent.crashed} crashed, their trials retried"
    lines = [line]
    if (
        code == 0
        and settings.confirm.top
        and _confirm(study, load_data(settings), settings, store, lines)
    ):
        code = INTERRUPTED_EXIT
    _finish(place, study, lines, report=settings.report and code == 0)
    return code


def _confirm(
    study: optuna.Study,
    data: Dataset,
    settings: StudySettings,
    store: FileSystemArtifactStore | None,
    lines: list[str],
) -> bool:
    """Confirm the study's top configurations (search/confirm.py), adding this run's line to
    ``lines``; True when a Ctrl-C stopped it (what was confirmed is stored)."""
    if not settings.confirm.top:
        return False
    try:
        seconds = confirm(
            study,
            data,
            settings.confirm,
            device=settings.device,
            threads=settings.threads,
            population=population_size(settings),
            store=store,
        )
    except KeyboardInterrupt:
        log.warning(
            "confirmation interrupted: the configurations confirmed so far are stored; rerun "
            "the same command to finish it (the search itself is done)"
        )
        return True
    if seconds:
        lines.append(f"this run's confirmation: {seconds:.1f} s of wall time")
    return False


def _finish(place: Place, study: optuna.Study, lines: list[str], *, report: bool) -> None:
    """Print the summary (``lines``: this run's timing) and build the report if asked."""
    print(format_summary(study_report(study), run_lines=lines))
    if not report:
        return
    from reports import build_report  # plotly: only the process that writes the report needs it

    try:
        index = build_report(
            storage=place.storage_name,
            study_names=[place.study_name],
            benchmarks_dir=Path(".benchmarks"),
            out_dir=Path("reports"),
        )
    except UserError as e:  # the trials are stored: say why there is no report, exit 0
        log.warning("report not built: %s", e)
        return
    log.info("report: %s", index)


@dataclass
class _Ledger:
    """Where this run's time went: training (the objective's compute) vs Optuna's own work."""

    wall_seconds: float = 0.0
    trials: int = 0
    interrupted: bool = False

    def lines(self, compute_seconds: float) -> list[str]:
        if not self.trials:
            return []
        overhead = max(self.wall_seconds - compute_seconds, 0.0)
        share = overhead / self.wall_seconds if self.wall_seconds else 0.0
        return [
            f"this run: {self.trials} trial{'s' if self.trials != 1 else ''} in "
            f"{self.wall_seconds:.1f} s; Optuna's overhead "
            f"(sampler, pruner, storage) {overhead:.1f} s = {share:.1%} of it"
            + ("; interrupted" if self.interrupted else "")
        ]


def run_trials(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int,
    lock: StudyLock,
    timeout: float | None = None,
    population: int = 1,
    on_trial_end: OnTrialEnd = lambda trial: None,
) -> None:
    """Run up to ``population`` trials at a time until the study as a whole has ``n_trials``
    counted trials and none is WAITING or RUNNING (see ``_step``), or until ``timeout``
    seconds have passed. A lost database connection is retried CONNECTION_RETRIES times, then
    a StorageError."""
    deadline = time.monotonic() + timeout if timeout else None
    failures = 0
    while deadline is None or time.monotonic() < deadline:
        try:
            done = _step(study, objective, n_trials, lock, population, on_trial_end)
        except Exception as e:
            # the database went away (restart, network): finished trials are stored; a trial
            # that was running is failed by the heartbeat and retried by a worker later
            cause = _connection_error(e)
            if cause is None:
                raise
            failures += 1
            if failures > CONNECTION_RETRIES:
                raise StorageError(
                    f"lost the connection to the database at {_where(study)} "
                    f"(retried {CONNECTION_RETRIES} times): {first_line(cause)}; trials finished "
                    "so far are stored, rerun the same command to go on"
                ) from None
            log.warning(
                "database connection lost (%s); retrying in %d s", first_line(cause), failures
            )
            time.sleep(failures)
            continue
        failures = 0
        if done:
            return


def _step(
    study: optuna.Study,
    objective: Objective,
    n_trials: int,
    lock: StudyLock,
    population: int,
    on_end: OnTrialEnd,
) -> bool:
    """Up to ``population`` trials, or one look for work (sleeping a while); True when there
    is none left."""
    trials: list[optuna.trial.Trial] = []
    with lock.hold():
        recover(study, atomic=lock.atomic)
        stored = study.get_trials(deepcopy=False)
        waiting = sum(t.state == TrialState.WAITING for t in stored)
        wanted = min(population, max(n_trials - len(counted(stored)), 0) + waiting)
        try:
            for _ in range(wanted):  # each new trial counts, so the total stays exact
                with warnings.catch_warnings():  # _run_group runs the heartbeat, as optimize
                    warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                    trial = study.ask()
                trials.append(trial)
                if is_heartbeat_enabled(study._storage):
                    # beat once now: a trial with no heartbeat yet is never judged stale, and
                    # its worker may die before _run_group starts the heartbeat threads
                    study._storage.record_heartbeat(trial._trial_id)
                stamp(trial)
        except BaseException as e:  # a Ctrl-C too
            for trial in trials:
                _fail(study, trial, e)
            raise
    if trials:
        _run_group(study, trials, objective, on_end)
        return False
    # nothing left to start: wait while another worker's trial runs, in case that worker dies
    # (on the journal only this machine's processes can be watched)
    heartbeat = is_heartbeat_enabled(study._storage)
    here = socket.gethostname()
    if any(
        t.state == TrialState.RUNNING and (heartbeat or t.user_attrs.get(rec.WORKER_HOST) == here)
        for t in stored
    ):
        time.sleep(POLL_SECONDS)
        return False
    return True


def _run_group(
    study: optuna.Study,
    trials: list[optuna.trial.Trial],
    objective: Objective,
    on_end: OnTrialEnd,
) -> None:
    """Train ``trials`` (the objective tells each as it ends), with a heartbeat beating for
    every one on database storage. A Ctrl-C or a bug fails every trial not yet ended right
    here, with its reason, and is raised again (a lost database cannot be told: the heartbeat
    fails those trials later)."""
    running = {t.number: t for t in trials}

    def tell(trial: optuna.trial.Trial, state: TrialState, values: Any = None) -> None:
        told = study.tell(trial, values, state=None if state == TrialState.COMPLETE else state)
        del running[trial.number]  # only once told: a Ctrl-C inside tell fails it below
        on_end(told)

    run = getattr(objective, "run", None) or _one_by_one(objective)
    with contextlib.ExitStack() as beating:
        for trial in trials:
            beating.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))
        try:
            run(trials, tell)
        except BaseException as e:  # a Ctrl-C too
            for trial in list(running.values()):
                running.pop(trial.number)
                on_end(_fail(study, trial, e))
            raise
    if running:  # the objective left some untold: a bug; fail them, then say so
        error = RuntimeError(f"the objective did not end trials {sorted(running)}")
        for trial in running.values():
            on_end(_fail(study, trial, error))
        raise error


def _one_by_one(objective: Objective) -> Callable[..., None]:
    """A plain Optuna objective as ``run(trials, tell)``."""

    def run(trials: list[optuna.trial.Trial], tell: Callable[..., None]) -> None:
        for trial in trials:
            try:
                values = objective(trial)
            except optuna.TrialPruned:
                tell(trial, TrialState.PRUNED)
                continue
            tell(trial, TrialState.COMPLETE, values)

    return run


def _fail(study: optuna.Study, trial: optuna.trial.Trial, error: BaseException) -> FrozenTrial:
    reason = INTERRUPTED if isinstance(error, KeyboardInterrupt) else first_line(error)
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr(rec.FAIL_REASON, reason)  # unless a tell got through first
    return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _connection_error(e: BaseException) -> BaseException | None:
    """The database connection error behind ``e`` (raised by Optuna or by the objective's
    storage writes, maybe as the cause of another error), or None."""
    seen: BaseException | None = e
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, (OperationalError, InterfaceError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _where(study: optuna.Study) -> str:
    backend = getattr(study._storage, "_backend", study._storage)  # RDB, maybe inside a cache
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
    place: Place
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
            "--confirm", "0",  # the parent confirms once, after every worker is done
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
                if self.place.load().get_trials(deepcopy=False):
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
                    lock, pid = self.place.lock, child.proc.pid
                    with lock.hold():  # its trials: FAIL, retry queued, at once
                        recover(self.place.load(), atomic=lock.atomic, dead_pid=pid)
                    if replacements.get(child.slot, 0) < MAX_REPLACEMENTS:
                        replacements[child.slot] = replacements.get(child.slot, 0) + 1
                        self._start(child.slot)
                        continue
                codes.append(code)
            time.sleep(0.2)
        if self.interrupted or any(c in (INTERRUPTED_EXIT, -signal.SIGINT) for c in codes):
            return INTERRUPTED_EXIT
        bad = [c for c in codes if c != 0]
        return (bad[0] if bad[0] > 0 else 1) if bad else 0
