"""Nothing lost when a file is damaged: a journal whose last record was cut off or that holds a
damaged line, a report folder that cannot be written, a run whose training diverges.

Journals are real files written through the project's opener (studies/storage.py, which hands
the journal to studies/journal.py); the entry points run as real subprocesses.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection

from mnistcore.errors import NonFiniteLossError, UserError
from studies.journal import JournalLock, JournalOperation, parse_record
from studies.repair import plan_repair, repair
from studies.storage import StorageError, open_storage, read_storage

ROOT = Path(__file__).resolve().parents[1]
STUDY = "s"
# Tiny and fast: 300 synthetic images, a one-block net of width 4, two epochs per trial.
TINY = [
    "--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "2",
    "--width", "4", "--depth", "1", "--hidden", "16", "--batch-size", "64",
    "--device", "cpu", "--threads", "1", "--no-report", "--quiet",
]  # fmt: skip
CREATE_TRIAL = JournalOperation.CREATE_TRIAL
SET_TRIAL_INTERMEDIATE_VALUE = JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE


def run(module: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNISTCORE_NO_DOWNLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def write_journal(path: Path) -> None:
    """A study of three finished trials, written as the search writes: through open_storage."""
    storage, _ = open_storage(str(path))
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    study.set_user_attr("objectives", ["accuracy"])
    for value in (0.5, 0.9, 0.7):
        trial = study.ask()
        trial.suggest_float("lr", 1e-3, 1.0, log=True)
        trial.report(value / 2, 1)
        trial.report(value, 2)
        trial.set_user_attr("seed", 0)
        study.tell(trial, value)
    study.set_user_attr("done", True)  # the last record: cutting it leaves every trial whole


def trials(path: Path, name: str = STUDY) -> dict[int, tuple[Any, ...]]:
    """Every trial of the study, read by Optuna's own journal reader."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.load_study(study_name=name, storage=storage)
    return {
        t.number: (t.state, t.params, t.values, t.intermediate_values, t.user_attrs)
        for t in study.trials
    }


def line_of(path: Path, op_code: int, nth: int = 0, **fields: Any) -> int:
    """The number (from 1) of the ``nth`` line holding a record of ``op_code`` and ``fields``."""
    found = [
        n
        for n, line in enumerate(path.read_bytes().split(b"\n"), start=1)
        if (r := parse_record(line)) and r["op_code"] == op_code
        and all(r.get(k) == v for k, v in fields.items())
    ]  # fmt: skip
    return found[nth]


def replace_line(path: Path, number: int, new: bytes) -> bytes:
    """Put ``new`` in place of line ``number``; returns the line it replaced."""
    lines = path.read_bytes().split(b"\n")
    old, lines[number - 1] = lines[number - 1], new
    path.write_bytes(b"\n".join(lines))
    return old


def beside(path: Path, kind: str) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.{kind}-*"))


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "journal.log"
    write_journal(path)
    return path


@pytest.fixture
def reports_log() -> Iterator[list[logging.LogRecord]]:
    """The records of the "studies" logger (the search's setup may stop its propagation)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("studies")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal of two trials written by the real ``python -m search.study``."""
    path = tmp_path_factory.mktemp("search") / "journal.log"
    done = run("search.study", *TINY, "--n-trials", "2", "--storage", str(path))
    assert done.returncode == 0, done.stderr
    return path


# ---------------------------------------------------------------------------------------------
# a cut end: the last record lost its end (a writer killed mid-append, a full disk)


def test_a_writer_moves_a_cut_end_aside_and_keeps_every_trial(journal, reports_log) -> None:
    before = trials(journal)
    data = journal.read_bytes()
    journal.write_bytes(data[:-20])
    cut = data[data.rindex(b"\n", 0, len(data) - 1) + 1 : -20]

    storage, _ = open_storage(str(journal))

    # the cut bytes moved, exactly, to one side file; the journal ends on a whole record
    (side,) = beside(journal, "cut")
    assert side.read_bytes() == cut
    assert journal.read_bytes() == data[: -20 - len(cut)]
    assert trials(journal) == before
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3
    # one warning naming the journal, the side file and the bytes moved
    (record,) = reports_log
    message = record.getMessage()
    assert str(journal) in message and str(side) in message and f"{len(cut)} bytes" in message


def test_a_reader_leaves_a_cut_end_alone_and_warns(journal) -> None:
    before = trials(journal)
    journal.write_bytes(journal.read_bytes()[:-20])
    damaged = journal.read_bytes()

    with pytest.warns(UserWarning, match="without a newline") as caught:
        storage = read_storage(str(journal))

    # the report reads every trial; the file is not touched, no side file is made
    assert len(caught) == 1 and str(journal) in str(caught[0].message)
    assert trials(journal) == before
    assert len(optuna.load_study(study_name=STUDY, storage=storage).trials) == 3
    assert journal.read_bytes() == damaged and not beside(journal, "cut")


def test_a_whole_last_record_that_lacks_its_newline_gets_it(journal, reports_log) -> None:
    data = journal.read_bytes()
    journal.write_bytes(data[:-1])

    storage, _ = open_storage(str(journal))

    # nothing was cut: the record is kept and no side file made
    assert journal.read_bytes() == data and not beside(journal, "cut")
    assert optuna.load_study(study_name=STUDY, storage=storage).user_attrs["done"] is True
    assert len(reports_log) == 1


def test_a_record_appended_after_a_writer_died_mid_append_starts_a_line(journal) -> None:
    storage, _ = open_storage(str(journal))
    study = optuna.load_study(study_name=STUDY, storage=storage)
    partial = b'{"op_code":8,"worker_id":"dead","trial_id":0,"user_a'
    with journal.open("ab") as f:  # another writer, killed inside its append
        f.write(partial)

    study.set_user_attr("after", 1)

    # Optuna alone would glue the record onto the cut one: one damaged line, unreadable
    assert all(parse_record(line) for line in journal.read_bytes().splitlines())
    (side,) = beside(journal, "cut")
    assert side.read_bytes() == partial
    fresh = optuna.load_study(study_name=STUDY, storage=read_storage(str(journal)))
    assert fresh.user_attrs["after"] == 1


def test_a_file_that_is_no_journal_is_refused_not_cut(tmp_path) -> None:
    other = tmp_path / "notes.txt"
    other.write_bytes(b"some notes, no newline")

    # no whole line and not the start of a record: some other file, left as it is
    with pytest.raises(StorageError, match="holds no journal record"):
        open_storage(str(other))
    assert other.read_bytes() == b"some notes, no newline" and not beside(other, "cut")


# ---------------------------------------------------------------------------------------------
# a damaged line: a whole line that is not a record


# JSON that is no record ({}, null, an unknown op_code) would fail in Optuna's replay with a
# KeyError; a damaged last line Optuna skips silently, until a record appended after it
@pytest.mark.parametrize(
    "line, last",
    [(b"not a record", False), (b"{garbage", True), (b"{}", False), (b"null", False),
     (b'{"op_code":99}', False), (b'{"op_code":"x"}', True)],
)  # fmt: skip
def test_a_damaged_line_is_one_error_naming_it(journal, line, last) -> None:
    number = len(journal.read_bytes().splitlines()) if last else 11
    replace_line(journal, number, line)
    damaged = journal.read_bytes()

    for open_it in (open_storage, read_storage):
        with pytest.raises(StorageError) as info:
            open_it(str(journal))
        message = str(info.value)
        assert f"line {number} is not a journal record" in message
        assert f"python -m studies.repair {journal}" in message and "\n" not in message
    assert journal.read_bytes() == damaged  # neither opener changed the file


# ---------------------------------------------------------------------------------------------
# python -m studies.repair


def test_repair_drops_a_damaged_line_after_a_backup(journal) -> None:
    before = trials(journal)
    number = line_of(journal, SET_TRIAL_INTERMEDIATE_VALUE, trial_id=1)
    replace_line(journal, number, b"not a record")
    damaged = journal.read_bytes()

    done = run("studies.repair", str(journal), timeout=60)

    assert done.returncode == 0, done.stderr
    assert f"line {number}: dropped" in done.stdout
    (backup,) = beside(journal, "bak")
    assert backup.read_bytes() == damaged and str(backup) in done.stdout
    after = trials(journal)
    # trials 0 and 2 are whole; trial 1 lost only the value of that line (its first report)
    assert after[0] == before[0] and after[2] == before[2]
    state, params, values, intermediate, attrs = before[1]
    assert after[1] == (state, params, values, {2: intermediate[2]}, attrs)
    assert read_storage(str(journal)) is not None


def test_repair_puts_back_a_trial_whose_creating_line_was_lost(journal) -> None:
    before = trials(journal)
    number = line_of(journal, CREATE_TRIAL, 1)
    replace_line(journal, number, b"\x00\x00\x00")
    # Dropping the line alone renumbers the later trials: the records of trial 1 and 2 then
    # change the wrong trial or none, and both are lost.
    lines = journal.read_bytes().splitlines(keepends=True)
    naive = journal.with_name("naive.log")
    naive.write_bytes(b"".join(lines[: number - 1] + lines[number:]))
    assert trials(naive)[1] != before[1] and 2 not in trials(naive)

    done = repair(journal)

    assert done.backup is not None
    assert any(f"line {number}: unreadable, but it created trial 1" in n for n in done.notes)
    # every trial is whole again: parameters, values, reports, attributes, numbers
    assert trials(journal) == before


def test_repair_puts_back_a_study_whose_creating_line_was_lost(journal) -> None:
    before = trials(journal)
    replace_line(journal, 1, b"{broken")

    repair(journal)

    # its name is lost; its trials and its direction (from its objectives) are not
    (summary,) = optuna.get_all_study_summaries(JournalStorage(JournalFileBackend(str(journal))))
    assert summary.study_name == "repaired-study-0"
    assert summary.direction == StudyDirection.MAXIMIZE
    assert trials(journal, "repaired-study-0") == before


def test_repair_keeps_a_whole_record_written_onto_a_cut_one(journal) -> None:
    # what Optuna's own writer leaves after a writer died mid-append: the next record glued on
    before = trials(journal)
    number = line_of(journal, SET_TRIAL_INTERMEDIATE_VALUE, trial_id=1)
    lines = journal.read_bytes().split(b"\n")
    lines[number - 2] = lines[number - 2][:30] + lines[number - 1]  # line before: cut, glued
    del lines[number - 1]
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(StorageError, match=f"line {number - 1} is not"):
        read_storage(str(journal))

    done = repair(journal)

    assert any("kept the whole record at its end" in note for note in done.notes)
    assert done.dropped == [number - 1]  # the cut bytes
    # the glued record (trial 1's first report) is back; only the cut record is gone
    assert trials(journal)[1][3] == before[1][3]


def test_repair_puts_back_a_cut_record_that_created_a_trial(journal) -> None:
    # the record creating trial 1 was cut mid-append and the next record glued onto it
    before = trials(journal)
    number = line_of(journal, CREATE_TRIAL, 1)
    lines = journal.read_bytes().split(b"\n")
    lines[number - 1] = lines[number - 1][:50] + lines[number]
    del lines[number]
    journal.write_bytes(b"\n".join(lines))

    repair(journal)

    # trial 1 comes back as a stand-in its later records fill in, and trial 2 keeps its number
    after = trials(journal)
    assert sorted(after) == sorted(before)
    assert after[2] == before[2]


def test_repair_of_a_sound_journal_changes_nothing(journal) -> None:
    data = journal.read_bytes()

    done = run("studies.repair", str(journal), timeout=60)

    assert done.returncode == 0 and "nothing to repair" in done.stdout
    assert journal.read_bytes() == data and not beside(journal, "bak")


def test_repair_refuses_a_file_that_is_no_journal(tmp_path) -> None:
    other = tmp_path / "notes.txt"
    other.write_bytes(b"not a journal\nat all\n")

    done = run("studies.repair", str(other), timeout=60)

    # repairing would empty it: one line, exit 2, nothing written
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and "none of its lines" in line
    assert other.read_bytes() == b"not a journal\nat all\n" and not beside(other, "bak")


def test_repair_refuses_when_a_writer_took_its_lock_over_and_appended(journal, monkeypatch):
    # a repair slower than the stale-lock takeover (5 s): a writer takes its lock over and
    # appends; replacing the file would drop the record, releasing would delete its lock
    replace_line(journal, 11, b"bad")
    damaged = journal.read_bytes()
    late = b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"late":1}}\n'
    lock_file, writer = Path(f"{journal.resolve()}.lock"), JournalLock(journal)

    def slow_plan(data: bytes):
        past = time.time() - 60  # the repair has held its lock for a minute
        os.utime(lock_file, (past, past), follow_symlinks=False)
        writer.acquire()  # takes the lock over, as stale
        with journal.open("ab") as f:
            f.write(late)
        return plan_repair(data)

    monkeypatch.setattr("studies.repair.plan_repair", slow_plan)
    with pytest.raises(StorageError, match=f"cannot repair {journal}: another process wrote"):
        repair(journal)

    # nothing changed: the late record is kept, no backup is left, the writer keeps its lock
    assert journal.read_bytes() == damaged + late and not beside(journal, "bak")
    assert lock_file.is_symlink()
    writer.release()
    assert not lock_file.is_symlink()


def test_repair_drops_a_cut_end() -> None:
    plan = plan_repair(b'{"op_code":0,"worker_id":"w","study_name":"a","directions":[1]}\n{"op_')

    assert plan.kept == 1 and plan.content.count(b"\n") == 1
    assert plan.notes == [
        "end: dropped 5 bytes after the last newline, a record cut off mid-append"
    ]


# ---------------------------------------------------------------------------------------------
# the entry points on damaged journals, end to end


@pytest.mark.slow
def test_the_search_resumes_a_journal_whose_last_record_was_cut(searched, tmp_path) -> None:
    journal = tmp_path / "journal.log"
    journal.write_bytes(searched.read_bytes()[:-20])
    with pytest.warns(UserWarning, match="without a newline"):
        storage = read_storage(str(journal))
    study = optuna.load_study(study_name="synthetic-accuracy", storage=storage)
    finished = {t.number: t.values for t in study.trials if t.state.is_finished()}
    assert finished  # what the cut journal still holds

    done = run("search.study", *TINY, "--n-trials", "3", "--storage", str(journal))

    assert done.returncode == 0, done.stderr
    (side,) = beside(journal, "cut")
    (warning,) = [line for line in done.stderr.splitlines() if str(side) in line]
    assert str(journal) in warning and "bytes" in warning
    resumed = read_storage(str(journal))
    study = optuna.load_study(study_name="synthetic-accuracy", storage=resumed)
    # every trial finished before is there, unchanged, and the study went on to its total
    assert {t.number: t.values for t in study.trials if t.number in finished} == finished
    assert sum(t.state.is_finished() for t in study.trials) >= 3


def test_the_report_reads_a_cut_journal_and_leaves_it(searched, tmp_path) -> None:
    journal = tmp_path / "journal.log"
    journal.write_bytes(searched.read_bytes()[:-20])
    damaged = journal.read_bytes()

    done = run("reports", "--storage", str(journal), "--out", str(tmp_path / "out"), timeout=60)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "index.html").is_file()
    (warning,) = [line for line in done.stderr.splitlines() if "without a newline" in line]
    assert warning.startswith("warning: ") and str(journal) in warning
    assert journal.read_bytes() == damaged


@pytest.mark.slow
def test_a_damaged_line_stops_search_and_report_with_one_line(searched, tmp_path) -> None:
    journal = tmp_path / "journal.log"
    journal.write_bytes(searched.read_bytes())
    replace_line(journal, 5, b'{"op_code":2,"worker_id"')

    search = run("search.study", *TINY, "--n-trials", "3", "--storage", str(journal))
    report = run("reports", "--storage", str(journal), "--out", str(tmp_path / "out"), timeout=60)

    for done in (search, report):
        assert done.returncode == 2
        (line,) = done.stderr.splitlines()
        assert line.startswith("error: ") and "line 5 is not a journal record" in line
        assert f"python -m studies.repair {journal}" in line
    # the documented way out: repair, then the report reads it
    assert run("studies.repair", str(journal), timeout=60).returncode == 0
    out = str(tmp_path / "out")
    assert run("reports", "--storage", str(journal), "--out", out, timeout=60).returncode == 0


# ---------------------------------------------------------------------------------------------
# a report folder that cannot be written; a run that diverges


def test_an_output_folder_under_a_file_is_one_error_line(journal, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "report"

    done = run("reports", "--storage", str(journal), "--out", str(out), timeout=60)

    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and str(out) in line and "--out" in line
    assert f"{blocker} is a file" in line


def test_a_diverging_run_is_one_error_line_naming_epoch_step_and_lr() -> None:
    done = run(
        "mnistcore", "--dataset", "synthetic", "--lr", "1e6", "--epochs", "1",
        "--device", "cpu", "--threads", "1", "--quiet",
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: training diverged: non-finite training loss")
    assert "at epoch 1, step " in line and "lower --lr" in line


def test_a_divergence_keeps_its_fields_and_is_a_user_error() -> None:
    error = NonFiniteLossError(2, 50, float("inf"), lr=0.5)

    # the search reads the fields and the message; the entry points print it as a user error
    assert (error.epoch, error.step, error.loss, error.lr) == (2, 50, float("inf"), 0.5)
    assert isinstance(error, UserError) and isinstance(error, RuntimeError)
    assert str(error) == (
        "training diverged: non-finite training loss inf at epoch 2, step 50; lower --lr (now 0.5)"
    )
