"""One lock per study, shared by its workers, so that "count the trials, then create one" is
atomic: without it two workers can both see the study one trial short and both start one.

* Journal file and SQLite: ``fcntl.flock`` on ``<file>.study-<hash>.lock`` beside the storage
  file (``<file>.lock`` is Optuna's own journal lock).
* PostgreSQL: a session-level ``pg_advisory_lock`` on a connection of its own.

The kernel or the server releases both when the holder dies (SIGKILL included). Other storages
(MySQL, in-memory) get ``StudyLock``, no lock: their racing workers may end a trial or two past
the total. search/run.py's ``run_trials`` holds it around ``recover``, ``ask`` and ``stamp``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalStorage
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from studies.storage import advisory_key

log = logging.getLogger("search")


class StudyLock:
    """No lock: the base class, for storages that have none. ``release`` may be called any
    number of times; only the first after an ``acquire`` does anything."""

    atomic = False  # True: counting and creating a trial under this lock cannot race

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


class FileLock(StudyLock):
    atomic = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the file drops its flock


class AdvisoryLock(StudyLock):
    """PostgreSQL's session-level advisory lock, keyed by the study's name. If the holder's
    machine vanishes, the server drops the lock once TCP keepalive finds the connection dead
    (studies/storage.py sets them on every connection: about 25 s)."""

    atomic = True

    def __init__(self, engine: Any, study_name: str) -> None:
        self.engine = engine
        self.key = advisory_key(study_name)
        self._conn: Any = None

    def acquire(self) -> None:
        conn = self.engine.connect()
        try:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            conn.commit()  # the lock outlives the transaction: it belongs to the session
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        self._conn = conn

    def release(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            held = conn.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": self.key}
            ).scalar()
            conn.commit()
            conn.close()
            if not held:  # the server lost our session (restart) and the lock with it
                log.warning("the study lock %d was no longer held when released", self.key)
        except SQLAlchemyError:
            # the connection is gone, and the server dropped the lock with its session; never
            # hand this connection back to the pool
            conn.invalidate()
            conn.close()


def study_lock(storage: BaseStorage, storage_name: str, study_name: str) -> StudyLock:
    """The lock for ``study_name`` in ``storage`` (opened from ``storage_name``)."""
    if isinstance(storage, JournalStorage):
        return FileLock(_beside(Path(storage_name), study_name))
    if isinstance(storage, RDBStorage):
        url = storage.engine.url
        backend = url.get_backend_name()
        if backend == "postgresql":
            return AdvisoryLock(storage.engine, study_name)
        if backend == "sqlite" and url.database and url.database != ":memory:":
            return FileLock(_beside(Path(url.database), study_name))
    return StudyLock()


def _beside(path: Path, study_name: str) -> Path:
    digest = hashlib.sha256(study_name.encode()).hexdigest()[:12]
    return path.with_name(f"{path.name}.study-{digest}.lock")
