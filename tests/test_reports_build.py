"""Robustness of the report builder and its CLI: missing, empty, damaged or wrong inputs."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from markupsafe import escape
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from reports import build_report
from reports.build import rebuild_command
from reports.cli import main
from search.export import main as export_main
from studies.formatting import export_command, train_command
from studies.storage import StorageError
from tests.reports_fixtures import (
    add_confirmation,
    config_of,
    make_empty,
    make_only_failed,
    make_single_objective,
    make_two_objective,
)

ROOT = Path(__file__).resolve().parents[1]


def _journal(path: Path) -> JournalStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def test_nothing_stored_yet_still_builds_and_says_how(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no reports/optuna-journal.log here
    index = build_report(storage=None, benchmarks_dir=Path(".benchmarks"), out_dir=Path("out"))
    html = index.read_text()
    assert 'id="no-studies"' in html and "python -m search.study" in html
    assert 'id="no-benchmarks"' in html and "pytest bench/ --benchmark-autosave" in html
    assert (tmp_path / "out" / "benchmarks.html").is_file()
    assert (tmp_path / "out" / "plotly.min.js").stat().st_size > 1_000_000
    # Reading must not create a storage as a side effect.
    assert not (tmp_path / "reports").exists()


def test_default_journal_and_rebuild_from_scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    journal = Path("reports/optuna-journal.log")
    storage = _journal(journal)
    make_empty(storage, "keep")
    make_empty(storage, "drop me")
    build_report(storage=None)
    studies = tmp_path / "reports" / "studies"
    assert sorted(p.name for p in studies.iterdir()) == ["drop-me.html", "keep.html"]
    (tmp_path / "reports" / "notes.txt").write_text("mine")

    build_report(storage=None, study_names=["keep"])
    # The old page is gone; the journal and files the report did not write stay.
    assert sorted(p.name for p in studies.iterdir()) == ["keep.html"]
    assert journal.is_file() and optuna.get_all_study_names(_journal(journal)) == [
        "keep",
        "drop me",
    ]
    assert (tmp_path / "reports" / "notes.txt").read_text() == "mine"


def test_empty_and_only_failed_studies_show_what_is_missing(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    make_empty(url, "empty")
    make_only_failed(url, "all-failed")
    index = build_report(storage=url, benchmarks_dir=tmp_path, out_dir=tmp_path / "out")
    assert "No trials yet" in index.read_text()
    assert "all 3 trials failed" in index.read_text()
    failed = (tmp_path / "out" / "studies" / "all-failed.html").read_text()
    assert "trial 2: boom 2" in failed
    assert "these need complete trials and the study has none yet" in failed
    assert "<code>python -m search.study</code>" in failed
    assert "plotly-graph-div" in failed  # the timeline still draws the failed trials
    empty = (tmp_path / "out" / "studies" / "empty.html").read_text()
    assert "plotly-graph-div" not in empty and "no trials yet" in empty.lower()


def test_unknown_study_name_is_one_line_and_exit_2(tmp_path, capsys):
    journal = tmp_path / "j.log"
    make_empty(_journal(journal), "real")
    make_empty(_journal(journal), "other")
    out = tmp_path / "out"
    assert main(["--storage", str(journal), "--study", "real", "--study", "typo",
                 "--out", str(out)]) == 2  # fmt: skip
    # One line naming the study, the storage, what it holds and the fix; nothing written.
    assert capsys.readouterr().err == (
        f"error: study 'typo' is not in {journal}; it holds: 'real', 'other' "
        "(use --study with one of them)\n"
    )
    assert not out.exists()


def test_a_benchmark_folder_that_does_not_exist_is_one_line_and_exit_2(tmp_path, capsys):
    typo = tmp_path / ".benchmark"
    assert main(["--benchmarks", str(typo), "--out", str(tmp_path / "out")]) == 2
    # a typo must not give a report without benchmarks in silence
    assert capsys.readouterr().err == (
        f"error: there is no benchmark folder {typo}: pass --benchmarks the folder `pytest "
        "bench/ --benchmark-autosave` writes (.benchmarks by default), or leave it out\n"
    )
    assert not (tmp_path / "out").exists()


def test_unknown_study_names_in_an_empty_or_absent_storage(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(url)  # a database with Optuna's tables and no study
    with pytest.raises(
        StorageError,
        match=r"^studies 'a', 'b' are not in sqlite:///.*empty\.db; "
        r"it holds no study \(run `python -m search\.study` first",
    ):
        build_report(storage=url, study_names=["a", "b"], out_dir=tmp_path / "out")
    monkeypatch.chdir(tmp_path)  # no default journal here
    with pytest.raises(StorageError, match="there is no journal file at reports/optuna-journal"):
        build_report(storage=None, study_names=["a"], out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "reports").exists()


def test_every_page_says_the_command_that_rebuilds_it(tmp_path):
    journal = tmp_path / "j.log"
    make_empty(_journal(journal), "real")
    make_empty(_journal(journal), "other")
    out = tmp_path / "out"
    build_report(storage=str(journal), study_names=["real"], benchmarks_dir=tmp_path / "b",
                 out_dir=out)  # fmt: skip
    command = (f"python -m reports --storage {journal} --study real --benchmarks {tmp_path / 'b'}"
               f" --out {out}")  # fmt: skip
    pages = sorted(out.rglob("*.html"))
    assert [p.relative_to(out).as_posix() for p in pages] == [
        "benchmarks.html", "index.html", "studies/real.html",
    ]  # fmt: skip
    for page in pages:
        assert f'<code class="rebuild">{escape(command)}</code>' in page.read_text(), page


def test_rebuild_command_names_only_what_differs_from_the_defaults():
    default = {"storage": None, "study_names": None, "benchmarks_dir": Path(".benchmarks"),
               "out_dir": Path("reports")}  # fmt: skip
    assert rebuild_command(**default) == "python -m reports"
    # The default journal named explicitly (as the search names it) is still the default.
    same = {**default, "storage": "reports/optuna-journal.log"}
    assert rebuild_command(**same) == "python -m reports"
    url = {**default, "storage": "postgresql://me:s3cret@db.lan:5433/optuna",
           "study_names": ["fashion lr"]}  # fmt: skip
    # The password is hidden; words a shell would split or expand are quoted.
    assert rebuild_command(**url) == (
        "python -m reports --storage 'postgresql://me:***@db.lan:5433/optuna' --study 'fashion lr'"
    )


def test_the_export_command_names_the_storage_and_the_study():
    # --study-name always (right however many studies the storage holds); --storage unless it
    # is the default journal, a database URL with its password hidden
    assert export_command(storage=None, study_name="s") == (
        "python -m search.export --out DIR --study-name s"
    )
    assert export_command(storage="reports/optuna-journal.log", study_name="s") == (
        "python -m search.export --out DIR --study-name s"
    )
    assert export_command(storage="postgresql://me:s3cret@db.lan/optuna", study_name="a b") == (
        "python -m search.export --out DIR --storage 'postgresql://me:***@db.lan/optuna' "
        "--study-name 'a b'"
    )


def test_the_study_page_gives_the_export_command_that_works(tmp_path):
    journal = tmp_path / "j.log"
    add_confirmation(make_single_objective(_journal(journal), "fashion lr"))
    make_empty(_journal(journal), "other")  # a bare `--out DIR` fails with two studies
    build_report(storage=str(journal), benchmarks_dir=tmp_path, out_dir=tmp_path / "out")
    page = (tmp_path / "out" / "studies" / "fashion-lr.html").read_text()
    command = export_command(storage=str(journal), study_name="fashion lr")
    assert f"Export it: <code>{escape(command)}</code>" in page
    words = shlex.split(command.replace("DIR", str(tmp_path / "exported")))
    assert export_main(words[3:]) == 0
    assert [p.suffix for p in (tmp_path / "exported").iterdir()] == [".toml"]


def test_best_trial_shows_its_whole_config_and_how_to_train_it_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make_single_objective(url)
    make_two_objective(url)  # its trials recorded no config (an older study)
    index = build_report(storage=url, benchmarks_dir=tmp_path, out_dir=tmp_path / "out")
    best = study.best_trial.number
    command = str(escape(train_command(config_of(best))))
    page = (tmp_path / "out" / "studies" / "fashion-lr.html").read_text()
    card = page.split('id="best"', 1)[1].split('<div class="card"', 1)[0]
    assert f'<pre class="command"><code>{command}</code></pre>' in card
    # searched parameters bold, pinned ones plain
    assert '<code class="searched"><b>width=' in card and "<code>depth=2</code>" in card
    assert "<code>schedule=onecycle</code>" in card and "<code>hidden=128</code>" in card
    assert command in index.read_text()
    pareto = (tmp_path / "out" / "studies" / "mnist-pareto.html").read_text()
    assert "python -m mnistcore" not in pareto and "no <code>config</code>" in pareto


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("nosuchdialect://host/db", "cannot open storage 'nosuchdialect://host/db'"),
        ("sqlite:///{tmp}/missing.db", "no SQLite database at"),
        ("{tmp}/missing-journal.log", "no Optuna journal file at"),
        ("{tmp}/real.db", "is a SQLite database, not a journal file: pass --storage sqlite:///"),
        ("{tmp}/garbage.log", "cannot read Optuna journal"),
    ],
)
def test_unreadable_storage_is_one_line_and_exit_2(tmp_path, capsys, storage, message):
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'real.db'}")
    (tmp_path / "garbage.log").write_text("not a journal\n{\n")
    storage = storage.format(tmp=tmp_path)
    assert main(["--storage", storage, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    # Nothing written, nothing created.
    assert not (tmp_path / "out").exists() and not (tmp_path / "missing.db").exists()


def test_python_m_reports_runs_without_torch(tmp_path):
    journal = tmp_path / "j.log"
    make_only_failed(_journal(journal), "failed")
    (tmp_path / ".benchmarks" / "m").mkdir(parents=True)
    (tmp_path / ".benchmarks" / "m" / "0001_bad.json").write_text("{")
    # -X importtime lists every module the run imports, on stderr.
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "reports",
            "--storage",
            str(journal),
            "--out",
            "out",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert "report written: file://" in done.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "optuna" in imported and "torch" not in imported
    # of the core, only its torch-free modules: the error types (StorageError is a UserError)
    # and TrainConfig (whose machine defaults train_command leaves out)
    core = {"mnistcore", "mnistcore.errors", "mnistcore.config"}
    assert {m for m in imported if m.startswith("mnistcore")} <= core
    # The damaged benchmark file is named in a one-line warning.
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "0001_bad.json" in warnings[0]
