"""``python -m studies.repair FILE``: mend a damaged Optuna journal file, keeping every record
that can be read (the search and the report refuse a journal with a line that is no record).
Holding the journal's lock, it copies the file to ``FILE.bak-<date>-<time>``, keeps every record
line, keeps the whole record at the end of a damaged line (one appended onto a record cut off
mid-append), and drops the other damaged lines and a cut end, except that

* a dropped line that created a trial or a study is put back as a stand-in record: Optuna
  numbers studies and trials in the order their creating records come, and later records name
  them by that number (dropping the line that created trial 5 would turn trial 6 into trial 5).
  A stand-in trial is RUNNING and empty, filled in by its later records; one whose end was lost
  is failed and retried by the next ``python -m search.study``, as any trial whose worker died.

Stop the runs that use the file first: a running worker keeps positions in the file in memory.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from studies import trial_record as rec
from studies.journal import (
    RECORD_HEAD,
    JournalLock,
    StorageError,
    is_sqlite,
    parse_record,
    replace_journal,
)
from studies.journal import JournalOperation as Op
from studies.storage import DEFAULT_JOURNAL, read_storage

REPAIR_WORKER = "studies.repair"  # the worker id of stand-in records
JOURNAL_REPAIR = "journal_repair"  # system attribute of a stand-in trial: why it is there

_RECORD_START = re.compile(re.escape(RECORD_HEAD))
_OP_CODE = re.compile(re.escape(RECORD_HEAD) + rb"(\d+)[,}]")
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
    note: str | None = None  # what the repair did to its line, when it salvaged a record


@dataclass
class Plan:
    """The repaired journal and what changed, line by line."""

    content: bytes
    notes: list[str] = field(default_factory=list)  # one per change; none: nothing to repair
    kept: int = 0  # records in ``content``
    dropped: list[int] = field(default_factory=list)  # numbers of the lines left out
    backup: Path | None = None  # where ``repair`` copied the original; None: nothing written


def plan_repair(data: bytes) -> Plan:
    """What ``repair`` writes for journal ``data`` (pure: reads and writes nothing)."""
    *whole, tail = data.split(b"\n")
    items: list[_Item] = []
    for number, line in enumerate(whole, start=1):
        record = parse_record(line)
        items += [_Item(number, line, record)] if record is not None else _salvage(number, line)
    end = parse_record(tail) if tail else None
    if end is not None:
        note = f"line {len(whole) + 1}: a whole record without its newline: added it"
        items.append(_Item(len(whole) + 1, tail, end, note))
    lines, notes, dropped = _rebuild(items)
    if tail and end is None:
        notes.append(
            f"end: dropped {len(tail)} bytes after the last newline, a record cut off mid-append"
        )
    return Plan(b"".join(line + b"\n" for line in lines), notes, len(lines), dropped)


def _salvage(number: int, line: bytes) -> list[_Item]:
    """The items of a damaged line: the whole record at its end, written onto a record cut off
    mid-append, or two records run together where a newline was lost (both kept)."""
    for match in _RECORD_START.finditer(line, 1):
        head, rest = line[: match.start()], line[match.start() :]
        record = parse_record(rest)
        if record is None:
            continue
        first = parse_record(head)
        if first is not None:
            note = f"line {number}: two records run together (a lost newline): split"
            return [_Item(number, head, first, note), _Item(number, rest, record)]
        note = (
            f"line {number}: kept the whole record at its end; the {len(head)} bytes before it "
            "are a record cut off mid-append"
        )
        # the cut bytes stay an unreadable item: if they created a trial or a study that later
        # records refer to, _rebuild puts a stand-in in their place, else drops them
        return [_Item(number, head, None, note), _Item(number, rest, record)]
    return [_Item(number, line, None)]


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
        if op == Op.CREATE_STUDY and record.get("study_name") not in self.studies.values():
            self.studies[self.n_studies] = str(record.get("study_name"))
            self.trials_of[self.n_studies] = 0
            self.n_studies += 1
        elif op == Op.DELETE_STUDY:
            self.studies.pop(study, None)  # type: ignore[arg-type]
        elif op == Op.CREATE_TRIAL and study in self.studies:
            self.n_trials += 1
            self.trials_of[study] += 1
            self.last_study = study

    def gap(self, record: dict[str, Any]) -> str | None:
        """Which kind ("study" or "trial") of id ``record`` names that is not created yet; None
        when there is none."""
        study, trial = record.get("study_id"), record.get("trial_id")
        if record["op_code"] != Op.CREATE_STUDY and type(study) is int and study >= self.n_studies:
            return "study"
        if type(trial) is int and trial >= self.n_trials:  # not a bool
            return "trial"
        return None


def _may_create(raw: bytes) -> bool:
    """False for a damaged line whose op code survived and creates nothing."""
    match = _OP_CODE.match(raw)
    return match is None or int(match.group(1)) in (Op.CREATE_STUDY, Op.CREATE_TRIAL)


def _rebuild(items: list[_Item]) -> tuple[list[bytes], list[str], list[int]]:
    """The repaired journal's lines, the notes in line order, the numbers of the lines dropped.

    A record that refers to a study or a trial not created yet is explained by the last
    unreadable line before it that may have created one: that line becomes a stand-in, and the
    replay starts again, so that the ids always follow Optuna's order."""
    creates: dict[int, str] = {}  # id(item) -> "study" or "trial": the lines that created one
    while True:
        ids = _Ids()
        lines: list[bytes] = []
        notes: list[str] = []
        dropped: list[int] = []
        pending: list[_Item] = []  # unreadable lines that may have created one
        for k, item in enumerate(items):
            notes += [item.note] if item.note else []
            if item.record is not None:
                kind = ids.gap(item.record)
                if kind is not None and pending:
                    creates[id(pending[-1])] = kind
                    break
                lines.append(item.raw)
                ids.apply(item.record)
                continue
            kind = creates.get(id(item))
            stand_in = None
            note = f"line {item.number}: dropped ({len(item.raw)} bytes, no record)"
            if kind == "study":
                stand_in, note = _stand_in_study(item, ids, items[k + 1 :])
            elif kind == "trial":
                stand_in, note = _stand_in_trial(item, ids, items[k + 1 :])
            elif _may_create(item.raw):
                pending.append(item)
            if stand_in is not None:
                lines.append(json.dumps(stand_in, separators=(",", ":")).encode())
                ids.apply(stand_in)
            else:
                dropped.append(item.number)
            notes.append(note)
        else:
            return lines, notes, dropped


def _stand_in_study(item: _Item, ids: _Ids, later: list[_Item]) -> tuple[dict[str, Any], str]:
    study = ids.n_studies
    match = _STUDY_NAME.search(item.raw)
    try:
        name = json.loads(match.group(1)) if match else None
    except ValueError:  # a cut escape
        name = None
    said = isinstance(name, str) and name not in ids.studies.values()
    if not said:
        name = f"repaired-study-{study}"
        while name in ids.studies.values():
            name += "-"
    directions, how = _directions(study, item.raw, later)
    record = {
        "op_code": Op.CREATE_STUDY,
        "worker_id": REPAIR_WORKER,
        "study_name": name,
        "directions": directions,
    }
    named = "" if said else " (its name was lost)"
    return record, (
        f"line {item.number}: unreadable, but it created study {study}, which later records "
        f"use: put back as study {name!r}{named}{how}"
    )


def _directions(study: int, raw: bytes, later: list[_Item]) -> tuple[list[int], str]:
    """A lost study's directions: as its line says; else every objective of this project's
    search is maximized; a study that does not say its objectives gets Optuna's default."""
    found = _DIRECTIONS.search(raw)
    if found:
        return [int(d) for d in found.group(1).split(b",")], ""
    for item in later:
        record = item.record or {}
        if record.get("op_code") == Op.SET_STUDY_USER_ATTR and record.get("study_id") == study:
            objectives = record.get("user_attr", {}).get(rec.OBJECTIVES)
            if isinstance(objectives, list) and objectives:
                return [StudyDirection.MAXIMIZE.value] * len(objectives), ""
    return [StudyDirection.MINIMIZE.value], ", direction unknown: minimize (Optuna's default)"


def _stand_in_trial(
    item: _Item, ids: _Ids, later: list[_Item]
) -> tuple[dict[str, Any] | None, str]:
    # its study: as the line says, else the last trial's, the next trial's, the newest one
    said = _STUDY_ID.search(item.raw)
    creates = (i.record for i in later if i.record and i.record["op_code"] == Op.CREATE_TRIAL)
    guesses = [said and int(said.group(1)), ids.last_study, next(creates, {}).get("study_id")]
    study = next((s for s in guesses if s in ids.studies), max(ids.studies, default=None))
    if study is None:
        return None, f"line {item.number}: unreadable, it created a trial of a lost study: dropped"
    found = _DATETIME.search(item.raw)
    started = found.group(1).decode() if found else ids.last_time
    record = {
        "op_code": Op.CREATE_TRIAL,
        "worker_id": REPAIR_WORKER,
        "study_id": study,
        "datetime_start": started,
        "state": TrialState.RUNNING.value,
        "system_attrs": {JOURNAL_REPAIR: f"put back for line {item.number}, which was unreadable"},
    }
    number = ids.trials_of[study]
    return record, (
        f"line {item.number}: unreadable, but it created trial {number} of study "
        f"{ids.studies[study]!r}, which later records fill in: put back as an empty trial"
    )


def repair(path: Path) -> Plan:
    """Repair the journal file ``path`` in place (see the module's docstring)."""
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "no such file"
        raise StorageError(f"cannot repair {path}: {kind}; give the path of a journal file")
    if is_sqlite(path):
        raise StorageError(f"{path} is a SQLite database, not a journal file: nothing to repair")
    with JournalLock(path) as lock:  # no writer appends meanwhile
        data = path.read_bytes()
        plan = plan_repair(data)
        if not plan.notes:
            return plan
        if not plan.kept:  # a file of some other kind: repairing would empty it
            raise StorageError(
                f"cannot repair {path}: none of its lines is an Optuna journal record; is it "
                "the right file? Nothing changed"
            )
        plan.backup = replace_journal(path, data, plan.content, lock)
        return plan


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
    for note in done.notes:
        print(note)
    dropped = ", ".join(map(str, done.dropped))
    lost = f", dropped line{'s' if ',' in dropped else ''} {dropped}" if dropped else ""
    print(f"repaired {path}: kept {done.kept} records{lost}; the original is in {done.backup}")
    # what it holds now, read back as the search and the report read it
    held = optuna.get_all_study_summaries(read_storage(str(path)), include_best_trial=False)
    shown = ", ".join(f"{one.study_name!r} ({one.n_trials} trials)" for one in held) or "none"
    print(f"it now holds {len(held)} stud{'y' if len(held) == 1 else 'ies'}: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
