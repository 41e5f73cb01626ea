"""Open an Optuna storage from ``--storage``: a journal file path or a database URL.

The one opener of the project: the search opens its storage to write (``open_storage``), the
report to read (``read_storage``, which never creates a journal or SQLite file).
Torch-free, so ``python -m reports`` stays light.

Default: Optuna's journal file ``reports/optuna-journal.log``. Several processes on one machine
share it (appends are locked), it resumes, and both ``optuna-dashboard`` and the ``optuna`` CLI
open it by its path. SQLite works for one process; PostgreSQL/MySQL URLs use Optuna's RDB
storage with heartbeats, for workers on several machines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import (
    JournalFileBackend,
    JournalFileSymlinkLock,
    JournalStorage,
)
from optuna.storages.journal._storage import JournalOperation

from mnistcore.errors import UserError  # torch-free: mnistcore imports its modules lazily

__all__ = [
    "DEFAULT_JOURNAL",
    "HEARTBEAT_INTERVAL",
    "StorageError",
    "advisory_key",
    "damaged_lines",
    "first_line",
    "journal_lock",
    "open_storage",
    "parse_record",
    "read_storage",
    "repair_command",
    "schema_lock",
    "write_beside",
]

# The journal file, not SQLite: SQLite locks the whole database file for each write, and with
# several worker processes writing trials at once the waiting writers run out of their lock
# timeout and fail with "database is locked". The journal appends each change as one record
# under a file lock, so any number of local processes (--workers N) share it safely.
DEFAULT_JOURNAL = Path("reports/optuna-journal.log")
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
CONNECT_TIMEOUT = 10  # seconds to reach a database server before giving up
HEARTBEAT_INTERVAL = 60  # seconds between "still alive" writes of a running trial (RDB only)
GRACE_FACTOR = 3  # a trial silent for 3 heartbeats is stale: two heartbeats may be late
# server-side TCP keepalive of each PostgreSQL connection (ignored over a Unix socket): first
# probe after 10 s idle, then every 5 s, dead after 3 unanswered. A vanished machine's session,
# and with it its study lock (search/locks.py), is then gone in ~25 s instead of ~2 hours.
KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}
STALE_JOURNAL_LOCK = 5  # seconds: a journal lock older than this was left by a dead writer
_SQLITE_HEADER = b"SQLite format 3\x00"
_URL_FORMS = (
    "use sqlite:///path.db, postgresql://user:pass@host/db, mysql://user:pass@host/db or a "
    "journal file path"
)

log = logging.getLogger("studies")

StaleTrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


class StorageError(UserError):
    """The storage URL or path is malformed, unsupported, missing or unreachable, or does not
    hold a study the user named; the message is one line naming it and the fix."""


def open_storage(
    spec: str | None = None,
    *,
    heartbeat: int | None = None,
    on_stale_trial: StaleTrialCallback | None = None,
) -> tuple[BaseStorage, str]:
    """The storage for ``spec`` (None: the default journal file), created when missing, and the
    string that names it for other tools (``optuna-dashboard``, ``optuna --storage``, the report).

    RDB storage only: a running trial writes a heartbeat every ``heartbeat`` seconds (default
    HEARTBEAT_INTERVAL); one silent for GRACE_FACTOR times that is failed by the next worker,
    which then calls ``on_stale_trial(study, trial)`` (the search retries it there).
    """
    spec = spec or str(DEFAULT_JOURNAL)
    _check_not_half_a_url(spec)
    if "://" in spec:
        return _open_rdb(spec, create=True, heartbeat=heartbeat, on_stale=on_stale_trial), spec
    return _open_journal(Path(spec), create=True), spec


def read_storage(spec: str | None) -> BaseStorage | None:
    """The storage to read, or None when none was named and the default journal is absent.

    A storage named explicitly must exist: a report never creates an empty journal or SQLite
    file as a side effect of being built (Optuna does create its tables in an existing but empty
    PostgreSQL or MySQL database).
    """
    if spec is None:
        return _open_journal(DEFAULT_JOURNAL, create=False) if DEFAULT_JOURNAL.is_file() else None
    _check_not_half_a_url(spec)
    if "://" in spec:
        return _open_rdb(spec, create=False)
    return _open_journal(Path(spec), create=False)


_HALF_URL = re.compile(r"^(sqlite|postgres(?:ql)?|mysql)(\+\w+)?:(?!//)(.*)$")


def _check_not_half_a_url(spec: str) -> None:
    """``sqlite:/tmp/x.db`` is neither a path nor a URL (those have ``://``): name the URL."""
    match = _HALF_URL.match(spec)
    if match is None:
        return
    scheme, rest = spec[: spec.index(":")], match.group(3)
    # sqlite keeps the path whole (sqlite:////tmp/x.db is the absolute /tmp/x.db)
    meant = f"sqlite:///{rest}" if scheme == "sqlite" else f"{scheme}://{rest.lstrip('/')}"
    raise StorageError(
        f"--storage {spec!r} is not a database URL (a URL has '://' after the scheme); "
        f"did you mean --storage {meant}?"
    )


def _open_journal(path: Path, *, create: bool) -> JournalStorage:
    if path.is_dir():
        raise StorageError(
            f"--storage {str(path)!r} is a directory; give a journal file path such as "
            f"{path / 'optuna-journal.log'}"
        )
    if path.is_file() and _starts_with(path, _SQLITE_HEADER):
        raise StorageError(
            f"{path} is a SQLite database, not a journal file: pass --storage sqlite:///{path}"
        )
    if not path.is_file() and not create:
        raise StorageError(
            f"no Optuna journal file at {path}: run `python -m search.study` first, "
            "or pass --storage with an existing journal file or database URL"
        )
    if path.suffix in (".db", ".sqlite", ".sqlite3") and not path.is_file():
        raise StorageError(
            f"--storage {str(path)!r} looks like an SQLite file name but has no scheme; use "
            f"--storage sqlite:///{path}, or a .log name for a journal file"
        )
    # only the default's folder is made: a mistyped folder must not start a fresh study
    default = create and path.resolve() == DEFAULT_JOURNAL.resolve()
    if not path.parent.is_dir() and not default:
        raise StorageError(
            f"--storage {str(path)!r}: folder {str(path.parent)!r} does not exist; create it or "
            "use another path"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = str(path.resolve())
        # a writer's lock mends a record cut off at the end before each append (_JournalLock)
        lock = _JournalLock(journal, mend=create)
        if path.is_file():
            _check_end(path, reader=not create)
            if create:
                with journal_lock(path, lock):  # taking it mends the end now, before reading
                    pass
        storage = JournalStorage(_CtrlCSafeJournalFile(journal, lock_obj=lock))
    except OSError as e:
        raise StorageError(
            f"cannot open journal file {str(path)!r}: {e.strerror or e}; "
            "choose a writable path with --storage"
        ) from None
    except StorageError:
        raise
    except ValueError as e:  # a record Optuna cannot replay (a StorageError is a ValueError too)
        raise StorageError(f"cannot read Optuna journal {path}: {first_line(e)}") from None
    return storage


# ---------------------------------------------------------------------------------------------
# a damaged journal file
#
# Optuna appends each record as one JSON line under the journal's lock. Two kinds of damage:
# * a cut end: the last line has no newline (a writer killed mid-append, a full disk, a power
#   cut). Optuna's reader skips such a line, but its next append would glue a record onto it,
#   and that line would stop every later read. A writer (open_storage) moves the cut bytes to a
#   side file, holding the lock, before it reads and before each append (_mend_end); a reader
#   (read_storage) leaves the file alone: it warns, and Optuna skips the bytes in memory.
# * a damaged line: a whole (newline-ended) line that is not a record. Nothing can tell what it
#   held, so no opener guesses: the error names the line and `python -m studies.repair`.

_BLOCK = 1 << 16  # bytes read at a time when looking for the last lines of a journal
_RECORD_HEAD = b'{"op_code":'  # how Optuna starts every record it writes
_OP_CODES = frozenset(op.value for op in JournalOperation)  # what its replay understands


def parse_record(line: bytes) -> dict[str, Any] | None:
    """The journal record on ``line`` (one JSON object with an integer ``op_code``), or None."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    if not isinstance(record, dict):
        return None
    op = record.get("op_code")
    return record if _op_code_ok(op) else None


def _op_code_ok(op: object) -> bool:
    return isinstance(op, int) and not isinstance(op, bool) and op in _OP_CODES


def damaged_lines(data: bytes) -> list[int]:
    """The numbers (from 1) of the whole lines of journal ``data`` that are not records; a cut
    end (the bytes after the last newline) is not a line."""
    lines = data.split(b"\n")[:-1]
    return [n for n, line in enumerate(lines, start=1) if parse_record(line) is None]


def repair_command(path: Path | str) -> str:
    return f"python -m studies.repair {shlex.quote(str(path))}"


def _damaged_error(path: Path) -> StorageError:
    """The one-line error for a journal holding lines that are not records."""
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    bad = damaged_lines(data)
    if bad and len(bad) == data.count(b"\n"):
        return StorageError(
            f"cannot read Optuna journal {path}: none of its lines is a journal record; pass "
            "--storage an Optuna journal file or database URL"
        )
    if not bad:  # changed since Optuna read it: say what Optuna saw
        where = "a line is not a journal record"
    else:
        rest = bad[1:]
        more = (
            f" (nor {'are lines' if len(rest) > 1 else 'is line'} {_numbers(rest)})"
            if rest
            else ""
        )
        where = f"line {bad[0]} is not a journal record{more}"
    return StorageError(
        f"cannot read Optuna journal {path}: {where}; run `{repair_command(path)}` to keep "
        "every readable record (it backs the file up first)"
    )


def _numbers(numbers: list[int], shown: int = 5) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (", ..." if len(numbers) > shown else "")


def _line_ends(f: BinaryIO, size: int, count: int) -> list[int]:
    """The offsets just past the file's last ``count`` newlines, the last first (fewer when the
    file holds fewer)."""
    ends: list[int] = []
    pos = size
    while pos > 0 and len(ends) < count:
        start = max(0, pos - _BLOCK)
        f.seek(start)
        block = f.read(pos - start)
        i = len(block)
        while len(ends) < count and (i := block.rfind(b"\n", 0, i)) >= 0:
            ends.append(start + i + 1)
        pos = start
    return ends


def _check_end(path: Path, *, reader: bool) -> None:
    """Raise the damaged-journal error when the last whole line is not a record (Optuna skips
    it silently, until a record appended after it makes every read fail), or when the file has
    no whole line and does not start as a record does (some other file, not to be cut aside);
    as a ``reader``, warn about a cut end, which Optuna leaves out."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        ends = _line_ends(f, size, 2)
        tail = ends[0] if ends else 0
        last = ends[1] if len(ends) > 1 else 0
        f.seek(last)
        line = f.read(tail - last)
        head = f.read(len(_RECORD_HEAD))
    if line and parse_record(line) is None:
        raise _damaged_error(path)
    if not ends and size and not _RECORD_HEAD.startswith(head):
        raise StorageError(
            f"cannot read Optuna journal {path}: it holds no journal record; pass --storage an "
            "Optuna journal file or database URL"
        )
    if reader and size > tail:
        warnings.warn(
            f"journal {path} ends with {size - tail} bytes without a newline (a record cut off "
            "mid-append, or one being appended right now): left out; the next "
            f"`python -m search.study --storage {shlex.quote(str(path))}` moves them aside",
            stacklevel=2,
        )


def _mend_end(path: Path) -> None:
    """Make the journal end with a newline, so that the next record starts a line of its own.
    Call it holding the journal's lock: no writer is mid-append then, so a last line without
    a newline was cut off for good. Its bytes move to a side file, unless they are a whole
    record that only lacks its newline (added then)."""
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        ends = _line_ends(f, size, 1)
        start = ends[0] if ends else 0
        f.seek(start)
        tail = f.read()
        if os.fstat(f.fileno()).st_size != size:
            return  # another writer appended meanwhile (it took a stale lock over): not cut
        if parse_record(tail) is not None:
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            log.warning("journal %s: its last record lacked a newline; added it", path)
            return
        side = write_beside(path, "cut", tail)
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


def write_beside(path: Path, kind: str, data: bytes) -> Path:
    """Write ``data`` to a new file ``<path>.<kind>-<date>-<time>`` beside ``path`` (never over
    an existing one), synced to disk; returns its path."""
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


@contextlib.contextmanager
def journal_lock(path: Path, lock: JournalFileSymlinkLock | None = None) -> Iterator[None]:
    """Hold the lock Optuna's writers of the journal ``path`` take for each append."""
    lock = lock or _JournalLock(str(path.resolve()))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _open_rdb(
    url: str,
    *,
    create: bool,
    heartbeat: int | None = None,
    on_stale: StaleTrialCallback | None = None,
) -> RDBStorage:
    # sqlalchemy is a dependency of optuna; imported here as only URLs need it
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # ValueError: a port that is no number
        masked = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)  # never print a password
        raise StorageError(f"--storage {masked!r} is not a database URL; {_URL_FORMS}") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in RDB_SCHEMES:
        raise StorageError(
            f"cannot open storage {shown!r}: unsupported scheme {backend!r}; {_URL_FORMS}"
        )
    engine_kwargs: dict[str, Any] = {}
    if backend in ("postgresql", "mysql"):
        # without it an unreachable host hangs for the OS's TCP timeout (minutes)
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    if backend == "postgresql":
        keepalive = " ".join(f"-c {name}={value}" for name, value in KEEPALIVE.items())
        given = parsed.query.get("options")  # the URL's own ?options=... come after ours
        engine_kwargs["connect_args"]["options"] = f"{keepalive} {given}" if given else keepalive
    elif parsed.database and parsed.database != ":memory:":
        file = Path(parsed.database)
        if not create and not file.is_file():
            raise StorageError(
                f"no SQLite database at {file} (from --storage {shown!r}): "
                "run `python -m search.study` with this storage first, or fix the path"
            )
        if not file.parent.is_dir():
            raise StorageError(
                f"--storage {shown!r}: folder {str(file.parent)!r} does not exist; create it or "
                "use another path (sqlite:///relative.db, sqlite:////absolute.db)"
            )
    heartbeat_kwargs: dict[str, Any] = {}
    if create:
        interval = heartbeat or HEARTBEAT_INTERVAL
        heartbeat_kwargs = {
            "heartbeat_interval": interval,
            "grace_period": interval * GRACE_FACTOR,
            "heartbeat_stale_trial_callback": on_stale,
        }
    try:
        with schema_lock(url, engine_kwargs):  # workers opening a fresh database together
            storage = RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat_kwargs)
            storage.get_all_studies()  # reads now, so a bad URL fails here with one line
            return storage
    except ImportError as e:
        driver = {"postgresql": "psycopg[binary]", "mysql": "PyMySQL (then mysql+pymysql://)"}
        raise StorageError(
            f"--storage {shown!r}: no database driver for {backend} ({e.__cause__ or e}); "
            f"pip install {driver.get(backend, 'the driver')}"
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as e:
        where = f"{parsed.host or 'localhost'}:{parsed.port or 'default port'}"
        if backend == "sqlite":
            where = parsed.database or ":memory:"
        raise StorageError(
            f"cannot open storage {shown!r} at {where}: {first_line(e)}; start the database "
            "server or fix host, port, user, password and database name in --storage"
        ) from None


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (a signed bigint) for ``name``."""
    return int.from_bytes(
        hashlib.sha256(f"search.study:{name}".encode()).digest()[:8], "big", signed=True
    )


SCHEMA_KEY = advisory_key("")  # no study is named "" (Optuna refuses empty names)


@contextlib.contextmanager
def schema_lock(url: str, engine_kwargs: dict[str, Any]) -> Iterator[None]:
    """Held while Optuna opens a PostgreSQL database: on first open it creates its tables, and
    workers opening a fresh database at the same moment race in CREATE TABLE ("duplicate key
    value violates unique constraint pg_type_typname_nsp_index"). Other databases: no lock."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    if make_url(url).get_backend_name() != "postgresql":
        yield
        return
    engine = create_engine(url, poolclass=NullPool, **engine_kwargs)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_KEY})
                conn.commit()
    finally:
        engine.dispose()


class _JournalLock(JournalFileSymlinkLock):
    """Optuna's journal lock (a symlink ``<journal>.lock``, the one any Optuna writer of the
    file takes), with a working takeover of a lock left behind by a writer killed inside an
    append (SIGKILL, power loss).

    Optuna's own takeover judges the lock's age by ``os.stat``, which follows the link: for a
    relative journal path (our default ``reports/...``) the link resolves to nothing, and the
    waiters spin forever at full CPU. This one reads the link's own age (``os.lstat``) and
    takes over a lock older than STALE_JOURNAL_LOCK seconds; an append holds it milliseconds.

    A writer's lock (``mend=True``) also mends the journal's end each time it is taken, before
    the append it guards: a record cut off by a writer killed mid-append moves to a side file
    instead of having the next record glued onto it (``_mend_end``).
    """

    def __init__(self, filepath: str, *, mend: bool = False) -> None:
        super().__init__(filepath, grace_period=STALE_JOURNAL_LOCK)
        self.mends = mend  # a writer's lock: each acquire mends a cut end first (_mend_end)

    def acquire(self) -> bool:
        delay = 0.001
        while True:
            try:
                os.symlink(self._lock_target_file, self._lock_file)
            except FileExistsError:
                pass
            else:
                if self.mends:
                    self._mend()
                return True
            try:
                held = os.lstat(self._lock_file)
            except FileNotFoundError:
                continue  # released meanwhile: try again at once
            age = time.time() - held.st_mtime
            if age > self.grace_period:
                log.warning(
                    "journal lock %s left behind %.0f s ago by a writer that died; taking it "
                    "over", self._lock_file, age,
                )  # fmt: skip
                self._take_over(held.st_ino)
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _mend(self) -> None:
        try:
            _mend_end(Path(self._lock_target_file))
        except BaseException:
            self.release()
            raise

    def _take_over(self, stale_inode: int) -> None:
        """Remove the stale lock, unless another waiter removed it and took a fresh one."""
        moved = f"{self._lock_file}.{uuid.uuid4().hex}.stale"
        try:
            os.rename(self._lock_file, moved)
        except FileNotFoundError:
            return
        if os.lstat(moved).st_ino == stale_inode:
            os.unlink(moved)
        else:  # a fresh lock another waiter took in between: put it back
            os.rename(moved, self._lock_file)


class _CtrlCSafeJournalFile(JournalFileBackend):
    """The journal file backend with Ctrl-C held back while it reads or appends: an interrupt
    inside its file lock would leave the lock behind (the next run then fails on it) or a
    record half written. The KeyboardInterrupt comes right after the operation instead. A
    damaged line read ends as the one-line StorageError naming it, not a JSONDecodeError."""

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        with _sigint_deferred():  # a generator: read it all while Ctrl-C is held back
            try:
                records = list(super().read_logs(log_number_from))
            except ValueError:  # a line that is not JSON, with more lines after it
                raise _damaged_error(Path(self._file_path)) from None
            # JSON that is not a record ({}, null, an unknown op_code) would fail in Optuna's
            # replay with a KeyError or AssertionError: the same one line instead
            if not all(isinstance(r, dict) and _op_code_ok(r.get("op_code")) for r in records):
                raise _damaged_error(Path(self._file_path))
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


def _starts_with(path: Path, header: bytes) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(header)) == header
    except OSError:
        return False


def first_line(error: BaseException) -> str:
    """The first line of an error's message (a database error's own, without SQLAlchemy's)."""
    text = str(getattr(error, "orig", None) or error).strip() or type(error).__name__
    return text.splitlines()[0]
