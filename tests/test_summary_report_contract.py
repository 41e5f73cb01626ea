"""The terminal summary and the HTML report describe a study from one extract, so they agree:
a real tiny study, with a trial that failed after training (as a Ctrl-C leaves one), then
``build_report``; the report's pruning ledger and best trial equal the CLI summary's."""

from __future__ import annotations

import html
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from reports import build_report
from search.cli import main
from studies import trial_record as rec
from studies.storage import open_storage

TINY = [
    "--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "3",
    "--width", "4", "--depth", "1", "--hidden", "16", "--batch-size", "64",
    "--device", "cpu", "--threads", "1", "--no-report", "--quiet", "--seed", "2",
]  # fmt: skip


def _fail_after_training(journal: Path, epochs: int) -> None:
    """A trial that trained ``epochs`` epochs and then failed, recorded as the objective and
    the trial loop record an interrupted one (FAIL, epochs_run, max_epochs, fail_reason)."""
    storage, _ = open_storage(str(journal))
    study = optuna.load_study(study_name="synthetic-accuracy", storage=storage)
    trial = study.ask()
    for step in range(1, epochs + 1):
        trial.report(0.5, step)
    trial.set_user_attr(rec.MAX_EPOCHS, 3)
    trial.set_user_attr(rec.EPOCHS_RUN, epochs)
    trial.set_user_attr(rec.FAIL_REASON, "interrupted by the user (SIGINT)")
    study.tell(trial, state=TrialState.FAIL)


def _kpis(html: str, card: str) -> dict[str, str]:
    """Label -> value of the KPI boxes inside the card with id ``card``."""
    body = html.split(f'id="{card}"', 1)[1].split('<div class="card"', 1)[0]
    found = re.findall(r'<div class="v">([^<]*)</div><div class="l">([^<]*)</div>', body)
    return {label: value for value, label in found}


def _intervals(html: str, card: str) -> list[str]:
    """The interval lines under the KPI boxes of the card with id ``card``."""
    body = html.split(f'id="{card}"', 1)[1].split('<div class="card"', 1)[0]
    return re.findall(r'<div class="ci">([^<]*)</div>', body)


def test_the_summary_and_the_report_agree_after_a_failed_trial(tmp_path, capsys) -> None:
    journal = tmp_path / "journal.log"
    assert main([*TINY, "--n-trials", "5", "--storage", str(journal)]) == 0
    _fail_after_training(journal, epochs=2)
    # the study has its 6 trials: the rerun trains nothing and prints the summary again
    assert main([*TINY, "--n-trials", "6", "--storage", str(journal)]) == 0
    summary = capsys.readouterr().out.split("study 'synthetic-accuracy'")[-1]

    build_report(storage=str(journal), benchmarks_dir=tmp_path, out_dir=tmp_path / "out")
    page = (tmp_path / "out" / "studies" / "synthetic-accuracy.html").read_text()

    # the pruning ledger: the failed trial's 2 epochs count in neither; both print epochs
    # with format_epochs ("13", or "0.33" for trials pruned within an epoch)
    spent, without = re.search(r"epochs trained: ([\d.]+) of ([\d.]+) ", summary).groups()
    ledger = page.split('id="pruning-ledger"', 1)[1].split('<div class="card"', 1)[0]
    if "No trial was pruned" in ledger:
        assert f"{spent} epochs trained over" in ledger
        assert float(spent) == float(without)
    else:
        kpis = _kpis(page, "pruning-ledger")
        assert (kpis["epochs trained"], kpis["without pruning"]) == (spent, without)

    # the best trial: number, val and test accuracy, each with its split size and interval
    number = re.search(r"^trial\s+(\d+)$", summary, re.MULTILINE).group(1)
    shown = r"\s+([\d.]+)% \(n=([\d,]+), ([\d.]+%)–([\d.]+%)\)$"
    val, n_val, *val_ci = re.search("^val accuracy" + shown, summary, re.MULTILINE).groups()
    test, n_test, *test_ci = re.search("^test accuracy" + shown, summary, re.MULTILINE).groups()
    epochs = re.search(r"^epochs\s+(\S+)$", summary, re.MULTILINE).group(1)
    best = _kpis(page, "best")
    # one way to print an accuracy: a percentage, its epoch named beside it
    assert best[f"val accuracy (trial {number}, epoch {epochs})"] == f"{val}%"
    assert best["test accuracy"] == f"{test}%"
    intervals = _intervals(page, "best")
    assert intervals == [f"n={n_val} · 95 % {val_ci[0]}–{val_ci[1]}",
                         f"n={n_test} · 95 % {test_ci[0]}–{test_ci[1]}"]  # fmt: skip


def test_the_summary_and_the_report_show_the_same_confirmation(tmp_path, capsys) -> None:
    journal = tmp_path / "journal.log"
    assert main([*TINY, "--n-trials", "4", "--confirm", "2:3", "--storage", str(journal)]) == 0
    summary = capsys.readouterr().out
    build_report(storage=str(journal), benchmarks_dir=tmp_path, out_dir=tmp_path / "out")
    page = (tmp_path / "out" / "studies" / "synthetic-accuracy.html").read_text()

    # the winner and its spread over seeds
    winner, spread = re.search(
        r"^confirmed winner: trial (\d+)'s configuration, val (.+)$", summary, re.MULTILINE
    ).groups()
    card = html.unescape(page.split('id="confirmation"', 1)[1])
    assert f"confirmed winner: trial {winner}'s configuration" in card
    assert _intervals(page, "confirmation")[0] == spread
    # the winner's curse, in points
    curse = re.search(r"^winner's curse: the search's best val is ([\d.]+) points (\w+)",
                      summary, re.MULTILINE)  # fmt: skip
    points = float(curse.group(1)) * (1 if curse.group(2) == "above" else -1)
    kpis = _kpis(page, "confirmation")
    label = next(k for k in kpis if html.unescape(k).startswith("winner's curse"))
    assert float(kpis[label]) == pytest.approx(points, abs=0.006)
