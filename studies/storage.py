"""Open an Optuna storage from ``--storage``, a journal file path or a database URL: the one
opener of the project. The search opens its storage to write (``open_storage``), the report to
read (``read_storage``, which never creates a journal or SQLite file). Default: Optuna's journal
file, which several local processes share and ``optuna-dashboard`` and the ``optuna`` CLI open
by its path; SQLite serves one process; PostgreSQL/MySQL URLs use Optuna's RDB storage with
heartbeats, for workers on several machines. The journal's format, damage and lock: journal.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalStorage

from studies.journal import StorageError, is_sqlite, open_journal

log = logging.getLogger("studies")

# The journal file, not SQLite: with several worker processes writing trials at once, SQLite's
# waiting writers run out of their lock timeout ("database is locked"); the journal appends
# each change as one record under a file lock, so any number of local processes share it.
DEFAULT_JOURNAL = Path("reports/optuna-journal.log")
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
CONNECT_TIMEOUT = 10  # seconds to reach a database server before giving up
HEARTBEAT_INTERVAL = 60  # seconds between "still alive" writes of a running trial (RDB only)
GRACE_FACTOR = 3  # a trial silent for 3 heartbeats is stale: two heartbeats may be late
# server-side TCP keepalive of each PostgreSQL connection (ignored over a Unix socket): first
# probe after 10 s idle, then every 5 s, dead after 3 unanswered. A vanished machine's session,
# and with it its study lock (search/locks.py), is then gone in ~25 s instead of ~2 hours.
KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}
_URL_FORMS = (
    "use sqlite:///path.db, postgresql://user:pass@host/db, mysql://user:pass@host/db or a "
    "journal file path"
)

StaleTrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def open_storage(
    spec: str | None = None,
    *,
    heartbeat: int | None = None,
    on_stale_trial: StaleTrialCallback | None = None,
) -> tuple[BaseStorage, str]:
    """The storage for ``spec`` (None: the default journal file), created when missing, and the
    string that names it for other tools (``optuna-dashboard``, ``optuna --storage``, the report).
    RDB only: a running trial writes a heartbeat every ``heartbeat`` seconds (HEARTBEAT_INTERVAL);
    one silent for GRACE_FACTOR times that is failed by the next worker, which calls
    ``on_stale_trial(study, trial)`` (the search retries it there)."""
    spec = spec or str(DEFAULT_JOURNAL)
    _check_not_half_a_url(spec)
    if "://" in spec:
        return _open_rdb(spec, create=True, heartbeat=heartbeat, on_stale=on_stale_trial), spec
    return _open_journal(Path(spec), create=True), spec


def read_storage(spec: str | None) -> BaseStorage | None:
    """The storage to read, or None when none was named and the default journal is absent. A
    storage named must exist (Optuna does create its tables in an empty PostgreSQL or MySQL
    database)."""
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
    if path.is_file() and is_sqlite(path):
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
    new = create and not path.is_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = open_journal(path, writer=create)
    except OSError as e:
        raise StorageError(
            f"cannot open journal file {str(path)!r}: {e.strerror or e}; "
            "choose a writable path with --storage"
        ) from None
    except StorageError:
        raise
    except ValueError as e:  # a record Optuna cannot replay (a StorageError is a ValueError too)
        raise StorageError(f"cannot read Optuna journal {path}: {first_line(e)}") from None
    if new:  # on its own line: a mistyped file name in an existing folder starts afresh
        (log.info if default else log.warning)("new study in a new journal %s", path)
    return storage


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
    elif backend == "sqlite" and parsed.database and parsed.database != ":memory:":
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
    # workers opening a fresh PostgreSQL database together
    lock = schema_lock(url, engine_kwargs) if backend == "postgresql" else contextlib.nullcontext()
    try:
        with lock:
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
    workers opening a fresh database at once race in CREATE TABLE ("duplicate key value violates
    unique constraint pg_type_typname_nsp_index"). Closing its connection releases it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool, **engine_kwargs)  # NullPool: close = end
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_KEY})
            conn.commit()  # not left idle in a transaction while Optuna works
            yield
    finally:
        engine.dispose()


def first_line(error: BaseException) -> str:
    """The first line of an error's message (a database error's own, without SQLAlchemy's)."""
    text = str(getattr(error, "orig", None) or error).strip() or type(error).__name__
    return text.splitlines()[0]
