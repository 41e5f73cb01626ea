"""Open an Optuna storage for reading: an RDB URL or a journal file path."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

__all__ = ["DEFAULT_JOURNAL", "StorageError", "open_storage"]

# Where `python -m search.study` keeps its trials unless told otherwise.
DEFAULT_JOURNAL = Path("reports/optuna-journal.log")

_SQLITE_MAGIC = b"SQLite format 3\x00"


class StorageError(Exception):
    """A storage the user named cannot be read; the message is one line naming it and a fix."""


def open_storage(storage: str | None) -> BaseStorage | None:
    """The storage to read, or None when no storage was named and the default journal is absent.

    A storage the user named explicitly must exist: a report must never create an empty
    database or journal as a side effect of being built.
    """
    if storage is None:
        if not DEFAULT_JOURNAL.is_file():
            return None
        return _open_journal(DEFAULT_JOURNAL)
    if "://" in storage:
        return _open_rdb(storage)
    return _open_journal(Path(storage))


def _open_rdb(url: str) -> BaseStorage:
    sqlite_path = _sqlite_file(url)
    if sqlite_path is not None and not sqlite_path.is_file():
        raise StorageError(
            f"no SQLite database at {sqlite_path} (from --storage {url!r}): "
            "run `python -m search.study` with this storage first, or fix the path"
        )
    try:
        storage = RDBStorage(url)
        storage.get_all_studies()  # reads now, so a bad URL fails here with one line
        return storage
    except Exception as error:  # any driver or URL failure is the user's to fix
        raise StorageError(
            f"cannot open storage {url!r}: {_first_line(error)} "
            "(expected e.g. sqlite:///reports/study.db or postgresql://user@host/db)"
        ) from error


def _open_journal(path: Path) -> BaseStorage:
    if not path.is_file():
        raise StorageError(
            f"no Optuna journal file at {path}: run `python -m search.study` first, "
            "or pass --storage with an existing journal file or database URL"
        )
    with path.open("rb") as handle:
        if handle.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC:
            raise StorageError(
                f"{path} is a SQLite database, not a journal file: "
                f"pass --storage sqlite:///{path}"
            )
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        storage.get_all_studies()
        return storage
    except Exception as error:  # a damaged journal is the user's to fix
        raise StorageError(
            f"cannot read Optuna journal {path}: {_first_line(error)}"
        ) from error


def _sqlite_file(url: str) -> Path | None:
    # sqlite:///relative.db and sqlite:////absolute.db; in-memory sqlite has no file.
    prefix, _, rest = url.partition(":///")
    if not prefix.startswith("sqlite") or not rest or rest == ":memory:":
        return None
    return Path(rest.split("?", 1)[0])


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def study_names(storage: BaseStorage) -> list[str]:
    return [study.study_name for study in storage.get_all_studies()]


def load_study(storage: BaseStorage, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)
