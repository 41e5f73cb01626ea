"""The terminal summary and the HTML report describe a study from one extract, so they agree:
a real tiny study, with a trial that failed after training (as a Ctrl-C leaves one), then
``build_report``; the report's pruning ledger and best trial equal the CLI summary's."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.trial import TrialState

from reports import build_report
from reports import trial_record as rec
from reports.storage import open_storage
from search.cli import main

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

    # the best trial: number, val and test accuracy
    number = re.search(r"^trial\s+(\d+)$", summary, re.MULTILINE).group(1)
    val = re.search(r"^val accuracy\s+([\d.]+)%$", summary, re.MULTILINE).group(1)
    test = re.search(r"^test accuracy\s+([\d.]+)%$", summary, re.MULTILINE).group(1)
    best = _kpis(page, "best")
    assert best[f"val accuracy (trial {number})"] == f"{float(val) / 100:.4f}"
    assert best["test accuracy"] == f"{float(test) / 100:.4f}"
