"""Running a study in this process: the trial loop (``run_trials``), then the confirmation,
the summary and the report (``run_study``); ``--workers N`` is search/workers.py.

The trial loop asks, runs and tells each trial itself (as Optuna's own ``_run_trial`` does),
so the study's lock, crash recovery (search/recovery.py), the heartbeat and Ctrl-C each sit in
one visible place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import InterfaceError, OperationalError

from mnistcore import MEMBER_FIELDS, Dataset
from mnistcore.cli import INTERRUPTED_EXIT
from mnistcore.errors import UserError
from search.confirm import PARENT_CONFIRMS, confirm, parse_confirm
from search.console import progress_bar, trial_line
from search.deadline import Deadline, stopped_line, timed_baseline
from search.locks import StudyLock
from search.objective import Objective
from search.recovery import INTERRUPTED, counted, recover, stamp
from search.setup import Place, population_size, prepare
from search.space import searched_names, suggest
from search.summary import format_summary
from studies import trial_record as rec
from studies.storage import StorageError, first_line
from studies.study_data import study_report

if TYPE_CHECKING:
    from search.cli import StudySettings

log = logging.getLogger("search")

POLL_SECONDS = 1.0  # how often an idle worker looks for stale or re-enqueued trials
CONNECTION_RETRIES = 3  # database errors in a row (1 s, 2 s, 3 s apart) before giving up

# trains a batch of trials and tells each as it ends (search.objective.Objective.run), or a
# plain Optuna objective (one trial -> its value, or optuna.TrialPruned)
AnyObjective = Callable[[optuna.trial.Trial], Any]
OnTrialEnd = Callable[[FrozenTrial], None]


def run_study(settings: StudySettings) -> int:
    """Run (or resume) the study of ``settings`` in this process; returns the exit code.
    ``--timeout`` bounds the whole run: the search stops early enough for the confirmation."""
    started = time.monotonic()
    prepared = prepare(settings)
    study, place, data = prepared.study, prepared.place, prepared.objective.data
    if settings.timeout and settings.baseline is not None:  # what the reserve counts for it
        base = prepared.objective.base
        settings = replace(settings, baseline=timed_baseline(settings.baseline, study, data, base))
    with place.lock.hold():  # dead or interrupted trials get their retry queued before counting
        recover(study, atomic=place.lock.atomic)
    lines: list[str] = []
    interrupted = False
    to_run = _to_run(study, settings.n_trials)
    if to_run or study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        interrupted = _search(study, prepared.objective, settings, place.lock, started, lines)
    else:  # a warning, so that --quiet still says why nothing ran
        log.warning(
            "study %r already has %d trials and --n-trials %d counts them: nothing to run; "
            "raise --n-trials above %d to continue it, or give --study-name for a new study",
            study.study_name, len(counted(study.get_trials(deepcopy=False))),
            settings.n_trials, settings.n_trials,
        )  # fmt: skip
    if not interrupted:
        interrupted = confirm_study(study, data, settings, place, prepared.store, lines, started)
    finish(place, study, lines, report=not settings.no_report and not interrupted)
    return INTERRUPTED_EXIT if interrupted else 0


def _search(
    study: optuna.Study,
    objective: Objective,
    settings: StudySettings,
    lock: StudyLock,
    started: float,
    lines: list[str],
) -> bool:
    """The trial loop with its progress bar and trial lines; adds this run's timing to
    ``lines``; True when a Ctrl-C stopped it."""
    names = searched_names(settings.space)
    bar = progress_bar(_to_run(study, settings.n_trials), quiet=settings.quiet)
    ended: list[FrozenTrial] = []

    def on_trial_end(trial: FrozenTrial) -> None:
        ended.append(trial)
        bar.total = bar.n + 1 + _to_run(study, settings.n_trials)  # a retry adds one
        bar.update(1)
        log.info("%s", trial_line(trial, names))

    # a --workers child leaves the confirmation to its parent, but keeps time for it too
    later = parse_confirm(os.environ.get(PARENT_CONFIRMS, "0"))
    confirmation = settings.confirm if settings.confirm.top else later

    end = started + settings.timeout if settings.timeout else None
    deadline = Deadline(study, confirmation, settings.baseline, end)
    objective.too_late = deadline.too_late
    start, interrupted, done = time.perf_counter(), False, True
    try:
        done = run_trials(
            study,
            objective,
            n_trials=settings.n_trials,
            lock=lock,
            timeout=_left(settings, started),
            population=population_size(settings),
            on_trial_end=on_trial_end,
            keep=deadline.reserve if settings.timeout else None,
        )
    except KeyboardInterrupt:
        interrupted = True
        log.warning(
            "interrupted: the running trial is marked FAIL; rerun the same command to resume "
            "(it runs that trial again first)"
        )
    finally:
        wall = time.perf_counter() - start
        bar.close()
    if ended:  # where this run's time went: training (the objective's) vs Optuna's own work
        overhead = max(wall - objective.compute_seconds, 0.0)
        lines.append(
            f"this run: {len(ended)} trial{'s' if len(ended) != 1 else ''} in {wall:.1f} s; "
            f"Optuna's overhead (sampler, pruner, storage) {overhead:.1f} s = "
            f"{overhead / wall if wall else 0.0:.1%} of it{'; interrupted' if interrupted else ''}"
        )
    if stopped := stopped_line(ended):
        lines.append(stopped)
    if not done:
        command = shlex.join(["python", "-m", "search.study", *sys.argv[1:]])
        lines.append(
            f"stopped by --timeout {settings.timeout:.0f} s: no trial started after "
            f"{time.monotonic() - started:.0f} s"
            + (", to leave time for the confirmation" if confirmation.top else "")
            + f"; {_to_run(study, settings.n_trials)} of --n-trials {settings.n_trials} "
            f"still to run: continue with {command}"
        )
    return interrupted


def _left(settings: StudySettings, started: float) -> float | None:
    """Seconds left of ``--timeout`` (None: no limit)."""
    return settings.timeout - (time.monotonic() - started) if settings.timeout else None


def _to_run(study: optuna.Study, n_trials: int) -> int:
    """Trials still to start: those the study is short of its total, plus the queued ones."""
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return max(n_trials - len(counted(trials)), 0) + waiting


def confirm_study(
    study: optuna.Study,
    data: Dataset,
    settings: StudySettings,
    place: Place,
    store: FileSystemArtifactStore | None,
    lines: list[str],
    started: float,
) -> bool:
    """Confirm the study's top configurations (search/confirm.py) under its lock, within what
    ``--timeout`` leaves of the run ``started`` then, adding this run's line to ``lines``; True
    when a Ctrl-C stopped it (what was confirmed is stored)."""
    if not settings.confirm.top:
        return False
    try:
        where = {"device": settings.device, "threads": settings.threads, "store": store}
        seconds = confirm(
            study, data, settings.confirm, lock=place.lock, seconds=_left(settings, started),
            baseline=settings.baseline, **where,
        )  # fmt: skip
    except KeyboardInterrupt:
        log.warning(
            "confirmation interrupted: the configurations confirmed so far are stored; rerun "
            "the same command to finish it (the search itself is done)"
        )
        return True
    if seconds:
        lines.append(f"this run's confirmation: {seconds:.1f} s of wall time")
    return False


def finish(place: Place, study: optuna.Study, lines: list[str], *, report: bool) -> None:
    """Print the summary (``lines``: this run's timing) and build the report if asked."""
    print(format_summary(study_report(study), run_lines=lines, storage=place.storage_name))
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


def run_trials(
    study: optuna.Study,
    objective: AnyObjective,
    *,
    n_trials: int,
    lock: StudyLock,
    timeout: float | None = None,
    population: int = 1,
    on_trial_end: OnTrialEnd = lambda trial: None,
    keep: Callable[[], float] | None = None,
) -> bool:
    """Run up to ``population`` trials at a time until the study as a whole has ``n_trials``
    counted trials and none is WAITING or RUNNING (see ``_step``; True), or until ``timeout``
    seconds have passed (False). ``keep()``: seconds to keep free at the end (for the
    confirmation), besides the longest step so far. A lost database connection is retried
    CONNECTION_RETRIES times, then a StorageError."""
    deadline = time.monotonic() + timeout if timeout else None
    failures, longest = 0, 0.0
    while True:
        clock = time.monotonic()
        try:  # keep() reads the study too: a lost connection is handled alike
            if deadline is not None and clock + (keep() + longest if keep else 0) >= deadline:
                return False
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
        failures, longest = 0, max(longest, time.monotonic() - clock)
        if done:
            return True


def _step(
    study: optuna.Study,
    objective: AnyObjective,
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
                # queued trials (retries, enqueued points) come first, as they are
                if len(trials) == 1 and not waiting and isinstance(objective, Objective):
                    _share_architecture(study, trials[0], objective, wanted - 1)
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


def _share_architecture(
    study: optuna.Study, first: optuna.trial.Trial, objective: Objective, more: int
) -> None:
    """Queue ``more`` trials with ``first``'s searched architecture (fields members cannot differ
    in), so a population of the default space fuses; the sampler suggests the rest."""
    suggest(first, objective.space, base=objective.base)
    shared = {k: v for k, v in first.params.items() if k not in MEMBER_FIELDS}
    if shared:
        for _ in range(more):
            study.enqueue_trial(shared, skip_if_exists=False)


def _run_group(
    study: optuna.Study,
    trials: list[optuna.trial.Trial],
    objective: AnyObjective,
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


def _one_by_one(objective: AnyObjective) -> Callable[..., None]:
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
    """The database connection error behind ``e`` (maybe as the cause of another), or None."""
    seen: BaseException | None = e
    for _ in range(10):  # a chain of causes, not a cycle
        if seen is None or isinstance(seen, (OperationalError, InterfaceError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _where(study: optuna.Study) -> str:
    backend = getattr(study._storage, "_backend", study._storage)  # RDB, maybe inside a cache
    url = getattr(getattr(backend, "engine", None), "url", None)
    return f"{url.host}:{url.port or 'default port'}" if url and url.host else "the --storage host"
