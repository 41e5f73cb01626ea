"""``python -m studies.repair FILE``: mend a damaged Optuna journal file, keeping every record
that can be read.

The search and the report refuse a journal with a line that is not a record (studies/storage.py
names the line); this command is the way out. Holding the journal's lock, it

1. copies the file, byte for byte, to ``FILE.bak-<date>-<time>`` beside it;
2. keeps every line that is a record, unchanged;
3. keeps the whole record at the end of a damaged line: a record appended onto one cut off
   mid-append (by a writer without this project's opener) is saved, the cut bytes dropped;
4. drops the other damaged lines and a cut end (bytes after the last newline), except that
5. a dropped line that created a trial or a study is put back as a stand-in record.

Why stand-ins: Optuna numbers studies and trials in the order their creating records come, and
later records name them by that number. Dropping the line that created trial 5 would turn
trial 6 into trial 5, and every later record of trial 5 or 6 would change the wrong trial. A
line created one when later records refer to one more trial (or study) than the readable lines
create. A stand-in trial is RUNNING and empty: its own later records fill it in (parameters,
values, its end). One whose end was lost stays RUNNING, and the next ``python -m search.study``
fails it and queues its retry, as for any trial whose worker died.

Stop the runs that use the file first: a running worker keeps positions in the file in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies import trial_record as rec
from studies.storage import (
    _RECORD_HEAD,
    _SQLITE_HEADER,
    DEFAULT_JOURNAL,
    StorageError,
    _starts_with,
    journal_lock,
    parse_record,
    read_storage,
    write_beside,
)

__all__ = ["Plan", "main", "plan_repair", "repair"]

REPAIR_WORKER = "studies.repair"  # the worker id of stand-in records
JOURNAL_REPAIR = "journal_repair"  # system attribute of a stand-in trial: why it is there
# Optuna's journal op codes (optuna.storages.journal._storage.JournalOperation) and states
CREATE_STUDY, DELETE_STUDY, CREATE_TRIAL = 0, 1, 4
RUNNING = 0  # TrialState.RUNNING
MINIMIZE, MAXIMIZE = 1, 2  # StudyDirection

_RECORD_START = re.compile(re.escape(_RECORD_HEAD))
_OP_CODE = re.compile(re.escape(_RECORD_HEAD) + rb"(\d+)[,}]")
_STUDY_ID = re.compile(rb'"study_id":(\d+)[,}]')
_STUDY_NAME = re.compile(rb'"study_name":("(?:[^"\\]|\\.)*")')
_DIRECTIONS = re.compile(rb'"directions":\[([12](?:,[12])*)\]')
_DATETIME = re.compile(rb'"datetime_start":"([0-9T:. +-]+)"')


@dataclass
class _Item:
    """A line of the journal, or one of two records run together on one line."""

    number: int  # the line's number in the damaged file, from 1
    raw: bytes  # the line (or the part of it holding the record), without its newline
    record: dict[str, Any] | None  # None: unreadable


@dataclass
class Plan:
    """The repaired journal and what changed, line by line."""

    content: bytes
    notes: list[str] = field(default_factory=list)  # one per change; none: nothing to repair
    kept: int = 0  # records in ``content``
    dropped: list[int] = field(default_factory=list)  # numbers of the lines left out


def plan_repair(data: bytes) -> Plan:
    """What ``repair`` writes for journal ``data`` (pure: reads and writes nothing)."""
    *whole, tail = data.split(b"\n")
    items: list[_Item] = []
    notes: list[str] = []
    for number, line in enumerate(whole, start=1):
        record = parse_record(line)
        if record is not None:
            items.append(_Item(number, line, record))
            continue
        salvaged, note = _salvage(number, line)
        items += salvaged or [_Item(number, line, None)]
        if note:
            notes.append(note)
    if tail:
        end = parse_record(tail)
        if end is not None:
            items.append(_Item(len(whole) + 1, tail, end))
            notes.append(f"line {len(whole) + 1}: a whole record without its newline: added it")
    lines, rebuilt, dropped = _rebuild(items, _lost_creates(items))
    notes += rebuilt
    if tail and parse_record(tail) is None:
        notes.append(
            f"end: dropped {len(tail)} bytes after the last newline, a record cut off mid-append"
        )
    content = b"".join(line + b"\n" for line in lines)
    return Plan(content, sorted(notes, key=_line_order), len(lines), dropped)


def _salvage(number: int, line: bytes) -> tuple[list[_Item], str | None]:
    """The whole records of a damaged line: one written onto a record cut off mid-append (the
    cut bytes go), or two run together where a newline was lost (both kept)."""
    for match in _RECORD_START.finditer(line, 1):
        record = parse_record(line[match.start() :])
        if record is None:
            continue
        head, rest = line[: match.start()], line[match.start() :]
        first = parse_record(head)
        if first is not None:
            note = f"line {number}: two records run together (a lost newline): split"
            return [_Item(number, head, first), _Item(number, rest, record)], note
        note = (
            f"line {number}: kept the whole record at its end; the {len(head)} bytes before it "
            "are a record cut off mid-append"
        )
        # the cut bytes stay an unreadable item: if they created a trial or a study that later
        # records refer to, _rebuild puts a stand-in in their place, else drops them
        return [_Item(number, head, None), _Item(number, rest, record)], note
    return [], None


class _Ids:
    """Study and trial ids as Optuna's replay gives them (JournalStorageReplayResult): in the
    order of the creating records; a study name already in use creates nothing, and neither
    does a trial of a study that does not exist."""

    def __init__(self) -> None:
        self.studies: dict[int, str] = {}  # live studies: id -> name
        self.n_studies = 0
        self.n_trials = 0
        self.trials_of: dict[int, int] = {}  # study id -> its trials so far
        self.last_study: int | None = None  # of the last trial created
        self.last_time: str | None = None  # the last datetime_start written

    def apply(self, record: dict[str, Any]) -> None:
        op, study = record["op_code"], record.get("study_id")
        if isinstance(record.get("datetime_start"), str):
            self.last_time = record["datetime_start"]
        if op == CREATE_STUDY and record.get("study_name") not in self.studies.values():
            self.studies[self.n_studies] = str(record.get("study_name"))
            self.trials_of[self.n_studies] = 0
            self.n_studies += 1
        elif op == DELETE_STUDY:
            self.studies.pop(study, None)  # type: ignore[arg-type]
        elif op == CREATE_TRIAL and study in self.studies:
            self.n_trials += 1
            self.trials_of[study] += 1
            self.last_study = study

    def gap(self, record: dict[str, Any]) -> str | None:
        """Which kind ("study" or "trial") of id ``record`` names that is not created yet; None
        when there is none."""
        study, trial = record.get("study_id"), record.get("trial_id")
        if record["op_code"] != CREATE_STUDY and _is_id(study) and study >= self.n_studies:
            return "study"
        if _is_id(trial) and trial >= self.n_trials:
            return "trial"
        return None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _lost_creates(items: list[_Item]) -> dict[int, str]:
    """The unreadable items that created a study or a trial (``id(item)`` -> "study" or
    "trial"): each record that refers to one not created yet is explained by the last
    unreadable line before it that may have created one. Replayed again after each find, so
    the ids always follow Optuna's order."""
    creates: dict[int, str] = {}
    while True:
        ids = _Ids()
        pending: list[_Item] = []
        for item in items:
            if item.record is None:
                if id(item) in creates:
                    _apply_stand_in(ids, creates[id(item)])
                elif _may_create(item.raw):
                    pending.append(item)
                continue
            kind = ids.gap(item.record)
            if kind is not None and pending:
                creates[id(pending[-1])] = kind
                break
            ids.apply(item.record)
        else:
            return creates


def _apply_stand_in(ids: _Ids, kind: str) -> None:
    if kind == "study":
        ids.apply({"op_code": CREATE_STUDY, "study_name": object()})  # a name no study has
    elif ids.studies:
        study = ids.last_study if ids.last_study in ids.studies else max(ids.studies)
        ids.apply({"op_code": CREATE_TRIAL, "study_id": study})


def _may_create(raw: bytes) -> bool:
    """False for a damaged line whose op code survived and creates nothing."""
    match = _OP_CODE.match(raw)
    return match is None or int(match.group(1)) in (CREATE_STUDY, CREATE_TRIAL)


def _rebuild(
    items: list[_Item], creates: dict[int, str]
) -> tuple[list[bytes], list[str], list[int]]:
    """The repaired journal's lines, a note per unreadable line, the numbers of those dropped."""
    ids = _Ids()
    lines: list[bytes] = []
    notes: list[str] = []
    dropped: list[int] = []
    for k, item in enumerate(items):
        if item.record is not None:
            lines.append(item.raw)
            ids.apply(item.record)
            continue
        kind = creates.get(id(item))
        stand_in, note = None, f"line {item.number}: dropped ({len(item.raw)} bytes, no record)"
        if kind == "study":
            stand_in, note = _stand_in_study(item, ids, items[k + 1 :])
        elif kind == "trial":
            stand_in, note = _stand_in_trial(item, ids, items[k + 1 :])
        if stand_in is not None:
            lines.append(json.dumps(stand_in, separators=(",", ":")).encode())
            ids.apply(stand_in)
        else:
            dropped.append(item.number)
        notes.append(note)
    return lines, notes, dropped


def _stand_in_study(item: _Item, ids: _Ids, later: list[_Item]) -> tuple[dict[str, Any], str]:
    study = ids.n_studies
    match = _STUDY_NAME.search(item.raw)
    name = _json(match.group(1)) if match else None
    said = isinstance(name, str) and name not in ids.studies.values()
    if not said:
        name = f"repaired-study-{study}"
        while name in ids.studies.values():
            name += "-"
    found = _DIRECTIONS.search(item.raw)
    if found:
        directions, how = [int(d) for d in found.group(1).split(b",")], ""
    else:
        directions, how = _directions(study, later)
    record = {
        "op_code": CREATE_STUDY,
        "worker_id": REPAIR_WORKER,
        "study_name": name,
        "directions": directions,
    }
    named = "" if said else " (its name was lost)"
    return record, (
        f"line {item.number}: unreadable, but it created study {study}, which later records "
        f"use: put back as study {name!r}{named}{how}"
    )


def _directions(study: int, later: list[_Item]) -> tuple[list[int], str]:
    """A lost study's directions: every objective of this project's search is maximized; a
    study that does not say its objectives gets Optuna's default."""
    for item in later:
        record = item.record or {}
        if record.get("op_code") == 2 and record.get("study_id") == study:  # SET_STUDY_USER_ATTR
            objectives = record.get("user_attr", {}).get(rec.OBJECTIVES)
            if isinstance(objectives, list) and objectives:
                return [MAXIMIZE] * len(objectives), ""
    return [MINIMIZE], ", direction unknown: minimize (Optuna's default)"


def _stand_in_trial(
    item: _Item, ids: _Ids, later: list[_Item]
) -> tuple[dict[str, Any] | None, str]:
    match = _STUDY_ID.search(item.raw)
    study: int | None = int(match.group(1)) if match else None
    if study not in ids.studies:
        study = ids.last_study
    if study not in ids.studies:
        next_trial = (i.record for i in later if i.record and i.record["op_code"] == CREATE_TRIAL)
        study = next((r.get("study_id") for r in next_trial), None)
    if study not in ids.studies:
        study = max(ids.studies, default=None)
    if study is None:
        return None, f"line {item.number}: unreadable, it created a trial of a lost study: dropped"
    found = _DATETIME.search(item.raw)
    started = found.group(1).decode() if found else ids.last_time
    record = {
        "op_code": CREATE_TRIAL,
        "worker_id": REPAIR_WORKER,
        "study_id": study,
        "datetime_start": started,
        "state": RUNNING,
        "system_attrs": {JOURNAL_REPAIR: f"put back for line {item.number}, which was unreadable"},
    }
    number = ids.trials_of[study]
    return record, (
        f"line {item.number}: unreadable, but it created trial {number} of study "
        f"{ids.studies[study]!r}, which later records fill in: put back as an empty trial"
    )


def _json(text: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _line_order(note: str) -> tuple[int, str]:
    head = note.split(":", 1)[0]
    return (int(head[5:]) if head.startswith("line ") else sys.maxsize, note)


# ---------------------------------------------------------------------------------------------
# the file and the command


@dataclass
class Repaired:
    plan: Plan
    backup: Path | None  # None: nothing to repair, the file is untouched


def repair(path: Path) -> Repaired:
    """Repair the journal file ``path`` in place (see the module's docstring)."""
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "no such file"
        raise StorageError(f"cannot repair {path}: {kind}; give the path of a journal file")
    if _starts_with(path, _SQLITE_HEADER):
        raise StorageError(f"{path} is a SQLite database, not a journal file: nothing to repair")
    with journal_lock(path):  # no writer appends meanwhile
        data = path.read_bytes()
        plan = plan_repair(data)
        if not plan.notes:
            return Repaired(plan, None)
        if not plan.kept:  # a file of some other kind: repairing would empty it
            raise StorageError(
                f"cannot repair {path}: none of its lines is an Optuna journal record; is it "
                "the right file? Nothing changed"
            )
        backup = write_beside(path, "bak", data)
        temporary = path.with_name(f".{path.name}.repair-{os.getpid()}")
        with temporary.open("wb") as f:
            f.write(plan.content)
            f.flush()
            os.fsync(f.fileno())
        shutil.copymode(path, temporary)
        os.replace(temporary, path)  # atomic: a crash leaves the old file or the new one
    return Repaired(plan, backup)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m studies.repair",
        description="Repair a damaged Optuna journal file: keep every readable record, drop "
        "the damaged lines (put back the trials and studies they created), after a backup "
        "copy FILE.bak-DATE-TIME. Stop the runs that use the file first.",
    )
    parser.add_argument(
        "journal",
        nargs="?",
        type=Path,
        default=DEFAULT_JOURNAL,
        metavar="FILE",
        help=f"the journal file (default: {DEFAULT_JOURNAL})",
    )
    path = parser.parse_args(argv).journal
    try:
        done = repair(path)
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot repair {path}: {error.strerror or error}", file=sys.stderr)
        return 2
    if done.backup is None:
        print(f"{path}: every line is a whole record; nothing to repair")
        return 0
    for note in done.plan.notes:
        print(note)
    dropped = done.plan.dropped
    lost = (
        f", dropped line{'s' if len(dropped) > 1 else ''} {_numbers(dropped)}" if dropped else ""
    )
    print(
        f"repaired {path}: kept {done.plan.kept} records{lost}; the original is in {done.backup}"
    )
    print(_contents(path))
    return 0


def _numbers(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _contents(path: Path) -> str:
    """What the repaired journal holds, read back as the search and the report read it."""
    storage = read_storage(str(path))
    assert storage is not None  # a named journal that exists
    studies = [
        f"{s.study_name!r} ({len(storage.get_all_trials(s._study_id, deepcopy=False))} trials)"
        for s in storage.get_all_studies()
    ]
    return f"it now holds {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}: " + (
        ", ".join(studies) or "none"
    )


if __name__ == "__main__":
    raise SystemExit(main())
