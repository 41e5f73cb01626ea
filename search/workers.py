"""``--workers N``: N child processes run this command with ``--workers 1`` on one study; this
process starts them, forwards Ctrl-C, replaces crashed ones (after failing and re-enqueueing
their trials), then confirms once, prints the summary and builds the report."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mnistcore.cli import INTERRUPTED_EXIT
from search.artifacts import open_artifact_store
from search.confirm import PARENT_CONFIRMS
from search.recovery import recover
from search.run import confirm_study, finish
from search.setup import Place, load_data, locate

if TYPE_CHECKING:
    from search.cli import StudySettings

log = logging.getLogger("search")

MAX_REPLACEMENTS = 3  # children the parent starts in place of crashed ones, per child slot
START_TIMEOUT = 300.0  # seconds the parent waits for the first child to create the study


def run_workers(settings: StudySettings, argv: list[str]) -> int:
    """Run the study of ``settings`` in ``settings.workers`` children; returns the exit code."""
    place = locate(settings)  # the children must agree on the study's name: resolved here once
    store = open_artifact_store(settings.artifacts, place.storage_name)  # before any child
    start = time.monotonic()
    deadline = start + settings.timeout if settings.timeout else None
    parent = Parent(settings, place, [*argv, "--study-name", place.study_name], deadline)
    log.info(
        "%d workers on study %r in %s", settings.workers, place.study_name, place.storage_name
    )
    code = parent.run()
    wall = time.monotonic() - start
    try:
        study = place.load()
    except KeyError:
        return code or 1  # no child got as far as creating the study: it said why
    lines = [f"{settings.workers} workers: {wall:.1f} s wall"]
    if parent.crashed:
        lines[0] += f"; {parent.crashed} crashed, their trials retried"
    confirming = code == 0 and settings.confirm.top > 0  # data is loaded only then
    if confirming and confirm_study(
        study, load_data(settings), settings, place, store, lines, start
    ):
        code = INTERRUPTED_EXIT
    finish(place, study, lines, report=not settings.no_report and code == 0)
    return code


@dataclass
class _Child:
    slot: int
    proc: subprocess.Popen[bytes]


@dataclass
class Parent:
    """Starts ``settings.workers`` children running ``python -m search.study ARGV --workers 1``,
    forwards SIGINT, replaces crashed children after failing and re-enqueueing their trials."""

    settings: StudySettings
    place: Place
    argv: list[str]
    deadline: float | None  # time.monotonic() when --timeout ends (None: no limit)
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
            for slot in range(1, self.settings.workers):
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
        s = self.settings
        seed = s.seed * 1000 + self.started
        self.started += 1
        threads = s.threads or max(1, (os.cpu_count() or 1) // s.workers)
        argv = [
            *self.argv,
            "--workers", "1", "--seed", str(seed), "--threads", str(threads), "--no-report",
            "--confirm", "0",  # the parent confirms once, after every worker is done
        ]  # fmt: skip
        if self.deadline is not None:  # what is left of the parent's --timeout
            argv += ["--timeout", f"{max(self.deadline - time.monotonic(), 0.01):.2f}"]
        env = {
            **os.environ,
            PARENT_CONFIRMS: str(s.confirm),  # the children leave time for it
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
        self.children.append(_Child(slot, proc))

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
