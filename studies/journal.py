"""Optuna's journal file, the one module that knows its format: records, damage, the lock every
writer takes, the backend the opener (storage.py) hands to Optuna, and the checked replacement
``python -m studies.repair`` writes. Optuna appends each change as one JSON line holding
``<journal>.lock``. A file is damaged in two ways:

* a cut end: the last line lacks its newline (a writer killed mid-append, a full disk, a power
  cut). Optuna skips it, but its next append glues a record onto it, and that line stops every
  later read (optuna/optuna#5138). A writer moves the cut bytes to a side file, holding the
  lock, when it opens the file and before each append; a reader warns.
* a damaged line: a whole line that is no record. No opener guesses what it held: the error
  names the line and ``python -m studies.repair``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage

# the one import of Optuna's op codes, which 5.1 does not export; repair.py reads them here
from optuna.storages.journal._storage import JournalOperation

from mnistcore.errors import UserError  # torch-free: mnistcore imports its modules lazily

STALE_LOCK = 5  # seconds: a journal lock older than this was left by a dead writer
RECORD_HEAD = b'{"op_code":'  # how Optuna starts every record it writes
_OP_CODES = frozenset(op.value for op in JournalOperation)  # what its replay understands
_SQLITE_HEADER = b"SQLite format 3\x00"

log = logging.getLogger("studies")


class StorageError(UserError):
    """A storage that is malformed, unsupported, missing, unreachable or damaged, or lacks a
    study the user named: one line naming it and the fix. The opener re-exports it."""


def parse_record(line: bytes) -> dict[str, Any] | None:
    """The journal record on ``line`` (one JSON object with an integer ``op_code``), or None."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    return record if _is_record(record) else None


def _is_record(value: object) -> bool:
    op = value.get("op_code") if isinstance(value, dict) else None
    return isinstance(op, int) and not isinstance(op, bool) and op in _OP_CODES


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is a SQLite database, the file most often taken for a journal."""
    try:
        with path.open("rb") as f:
            return f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def open_journal(path: Path, *, writer: bool) -> JournalStorage:
    """Optuna's storage on the journal file ``path``. A ``writer`` moves a cut end aside now and
    before each append; a reader warns about one. A damaged line is the one-line StorageError
    naming it, now or on a later read; checked now: the last whole line (Optuna skips it until
    a record appended after it makes every read fail) and a file with no whole line that does
    not start as a record does (another kind of file, not to be cut aside)."""
    lock = JournalLock(path, mend=writer)
    data = path.read_bytes() if path.is_file() else b""  # all of it, as Optuna's replay next
    tail = data.rfind(b"\n") + 1  # where the bytes after the last newline start
    last = data.rfind(b"\n", 0, max(tail - 1, 0)) + 1
    if tail and parse_record(data[last:tail]) is None:
        raise _damaged_error(path)
    if not tail and data and not RECORD_HEAD.startswith(data[: len(RECORD_HEAD)]):
        raise _no_journal(path)
    if writer and data:
        with lock:  # taking it mends the end now, before reading
            pass
    elif len(data) > tail:
        warnings.warn(
            f"journal {path} ends with {len(data) - tail} bytes without a newline (a record cut "
            "off mid-append, or one being appended right now): left out; the next "
            f"`python -m search.study --storage {shlex.quote(str(path))}` moves them aside",
            stacklevel=2,
        )
    return JournalStorage(_CtrlCSafeJournalFile(lock))


def _repair_command(path: Path) -> str:
    return f"python -m studies.repair {shlex.quote(str(path))}"


def _no_journal(path: Path) -> StorageError:
    return StorageError(
        f"cannot read Optuna journal {path}: it holds no journal record; pass --storage an "
        "Optuna journal file or database URL"
    )


def _damaged_error(path: Path) -> StorageError:
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    lines = data.split(b"\n")[:-1]  # a cut end is no line
    bad = [n for n, line in enumerate(lines, start=1) if parse_record(line) is None]
    if bad and len(bad) == len(lines):
        return _no_journal(path)
    where = "a line is not a journal record"  # none now: changed since Optuna read it
    if bad:
        where = f"line {bad[0]} is not a journal record"
        if rest := bad[1:]:
            shown = ", ".join(map(str, rest[:5])) + (", ..." if len(rest) > 5 else "")
            where += f" (nor {'are lines' if len(rest) > 1 else 'is line'} {shown})"
    return StorageError(
        f"cannot read Optuna journal {path}: {where}; run `{_repair_command(path)}` to keep "
        "every readable record (it backs the file up first)"
    )


def _mend_end(path: Path) -> None:
    """Make the journal end with a newline, holding its lock (no writer is mid-append then, so
    a last line without one was cut off for good): its bytes move to a side file, unless they
    are a whole record that only lacks its newline (added then)."""
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0 or os.pread(f.fileno(), 1, size - 1) == b"\n":
            return  # each append comes here: only a cut end reads the whole file
        data = os.pread(f.fileno(), size, 0)  # the position stays at the end
        start = data.rfind(b"\n") + 1
        tail = data[start:]
        if os.fstat(f.fileno()).st_size != size:
            return  # another writer appended meanwhile (it took a stale lock over): not cut
        if parse_record(tail) is not None:
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            log.warning("journal %s: its last record lacked a newline; added it", path)
            return
        side = _write_beside(path, "cut", tail)
        if os.fstat(f.fileno()).st_size != size:  # the same check, after the slow side file
            side.unlink()
            return
        f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
    log.warning(
        "journal %s ended with %d bytes of a record cut off mid-append (a writer killed, a full "
        "disk, a power cut): moved them to %s; every whole record is kept",
        path, len(tail), side,
    )  # fmt: skip


def _write_beside(path: Path, kind: str, data: bytes) -> Path:
    """Write ``data``, synced, to a new file ``<path>.<kind>-<date>-<time>``; returns its path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        side = path.with_name(f"{path.name}.{kind}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            f = side.open("xb")
        except FileExistsError:
            continue
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return side
    raise FileExistsError(f"{path.name}.{kind}-{stamp}-*: no free name")


def replace_journal(path: Path, old: bytes, new: bytes, lock: JournalLock) -> Path:
    """Replace the journal ``path``, read as ``old`` holding ``lock``, by ``new``, after a backup
    of ``old`` beside it (returned). Changes nothing when a writer took the lock over as stale
    (the work took over STALE_LOCK seconds) or appended: replacing would drop its record."""
    backup = _write_beside(path, "bak", old)
    temporary = path.with_name(f".{path.name}.repair-{os.getpid()}")
    try:
        with temporary.open("wb") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        shutil.copymode(path, temporary)
        if not lock.renew() or path.stat().st_size != len(old):
            raise StorageError(
                f"cannot repair {path}: another process wrote to it while the repair ran; "
                f"nothing changed: stop the runs that use it, then run `{_repair_command(path)}`"
            )
        os.replace(temporary, path)  # atomic: a crash leaves the old file or the new one
    except BaseException:
        temporary.unlink(missing_ok=True)
        backup.unlink()
        raise
    return backup


class JournalLock(JournalFileSymlinkLock):
    """Optuna's journal lock, the symlink ``<journal>.lock`` every Optuna writer takes, with a
    safe takeover of one a writer killed mid-append left: a link older than STALE_LOCK seconds
    (an append holds it for milliseconds). A writer's lock (``mend``) also mends a cut end each
    time it is taken.

    Why not Optuna's own (5.1, optuna/storages/journal/_file.py; its takeover: optuna#5971): it
    ages a lock by ``os.stat``, which follows the link; one made from a relative path (``optuna
    --storage reports/optuna-journal.log``) points nowhere, and waiters spin at full CPU forever
    (lines 172-174). Its ``release`` removes whatever lock is there (199-210), so a waiter past
    its grace period, or stopped by Ctrl-C (195-197), deletes a live writer's lock. This one
    removes only the link it judged stale, or its own.
    """

    def __init__(self, journal: Path, *, mend: bool = False) -> None:
        target = str(journal.resolve())  # absolute: Optuna's own waiters stat the link's target
        super().__init__(target, grace_period=STALE_LOCK)
        self.journal, self.target, self.file = journal, target, target + ".lock"
        self.mend = mend
        self._held: tuple[int, int] | None = None  # our link's identity while we hold it

    def acquire(self) -> bool:
        delay = 0.001
        while True:
            try:
                os.symlink(self.target, self.file)
            except FileExistsError:
                pass
            else:
                self._held = _identity(os.lstat(self.file))  # brand new: no one takes it over
                try:
                    if self.mend:
                        _mend_end(self.journal)
                except BaseException:
                    self.release()
                    raise
                return True
            try:
                seen = os.lstat(self.file)
            except FileNotFoundError:
                continue  # released meanwhile: try again at once
            age = time.time() - seen.st_mtime
            if age > STALE_LOCK:
                log.warning(
                    "journal lock %s left behind %.0f s ago by a writer that died; taking it "
                    "over", self.file, age,
                )  # fmt: skip
                _remove_if(self.file, _identity(seen))
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def renew(self) -> bool:
        """Whether we still hold the lock; if so its age starts again (no takeover for now)."""
        try:
            if self._held is None or _identity(os.lstat(self.file)) != self._held:
                return False
            os.utime(self.file, follow_symlinks=False)
            self._held = _identity(os.lstat(self.file))
        except FileNotFoundError:
            return False
        return True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            _remove_if(self.file, held)  # not when it was taken over: it is another's now

    def __enter__(self) -> JournalLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _identity(link: os.stat_result) -> tuple[int, int]:
    # not the inode alone: a fresh link may reuse the inode of one just removed
    return link.st_ino, link.st_mtime_ns


def _remove_if(lock_file: str, identity: tuple[int, int]) -> None:
    """Remove the lock link if it is still the one with ``identity``; else put it back."""
    moved = f"{lock_file}.{uuid.uuid4().hex}.stale"
    try:
        os.rename(lock_file, moved)  # atomic: what is checked below is what was taken
    except FileNotFoundError:
        return
    if _identity(os.lstat(moved)) == identity:
        os.unlink(moved)
    else:
        os.rename(moved, lock_file)


class _CtrlCSafeJournalFile(JournalFileBackend):
    """Optuna's journal file backend with Ctrl-C held back while it appends (else a record left
    half written would be moved aside), and a damaged line read as the one-line StorageError."""

    def __init__(self, lock: JournalLock) -> None:
        super().__init__(lock.target, lock_obj=lock)
        self.path = lock.journal

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        # all of it now: a damaged line raises here, before Optuna's replay applies any record
        try:
            records = list(super().read_logs(log_number_from))
        except ValueError:  # a line that is not JSON, with more lines after it
            raise _damaged_error(self.path) from None
        # JSON that is not a record ({}, null, an unknown op_code) would fail in Optuna's replay
        # with a KeyError or AssertionError: the same one line instead
        if not all(_is_record(r) for r in records):
            raise _damaged_error(self.path)
        return iter(records)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with _sigint_deferred():
            super().append_logs(logs)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be changed from the main thread
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, None)  # Python's default raises KeyboardInterrupt here
