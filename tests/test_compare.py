"""The search-strategy benchmark (issue 20 item 2): ``python -m search.compare`` runs each
strategy on each seed with the same budget, stores every run as a study (a rerun resumes), and
writes a page of best-so-far curves, bands, ranks and the winners' test accuracy. A real
2-strategy x 3-seed run on synthetic data, in-process."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import optuna
import pytest

from search.compare import main
from studies import compare_data as cmp
from studies.storage import read_storage

from .test_search_study import ROOT

COMMON = ["--", "--dataset", "synthetic", "--synthetic-size", "300", "--epochs", "2",
          "--width", "4", "--depth", "1", "--hidden", "16", "--device", "cpu", "--threads", "1",
          "--pruner", "none"]  # fmt: skip


def run(a, b, budget, journal, out, capsys=None):
    return main([
        "--strategy", f"tpe={a}", "--strategy", f"random={b}", "--seeds", "0,1,2",
        "--budget", str(budget), "--name", "t", "--storage", str(journal), "--out", str(out),
        *COMMON,
    ])  # fmt: skip


def test_two_strategies_three_seeds_same_budget_a_page_and_a_resumable_rerun(tmp_path, capsys):
    journal, out = tmp_path / "c.log", tmp_path / "site"
    assert run("", "--sampler random", 4, journal, out) == 0
    printed = capsys.readouterr()
    assert "[6/6] random seed 2" in printed.err and "mean rank at the budget" in printed.out
    storage = read_storage(str(journal))
    runs = cmp.read_runs(storage, "t")
    assert [(r.strategy, r.seed) for r in runs] == [
        ("random", 0), ("random", 1), ("random", 2), ("tpe", 0), ("tpe", 1), ("tpe", 2)
    ]  # fmt: skip
    for r in runs:  # each searched within its budget and found an answer
        assert r.done and r.trials >= 2 and r.test is not None
        assert r.seconds[-1] <= 4 * 1.5 and np.all(np.diff(r.seconds) >= 0)
        assert np.all(np.diff(r.best[~np.isnan(r.best)]) >= 0)  # best-so-far never drops
    sampler = optuna.load_study(study_name="t/random/seed1", storage=storage)
    assert sampler.user_attrs[cmp.STRATEGY_FLAGS] == "--sampler random"
    page = (out / "compare.html").read_text()
    for key in ("plot-best-seconds", "plot-best-epochs", "plot-ranks", "tpe", "random"):
        assert key in page
    table = cmp.summary_table(runs)
    assert set(table["mean rank at the budget"]) <= {1.0, 1.5, 2.0, 1 + 1 / 3, 1 + 2 / 3}
    assert table["mean rank at the budget"].sum() == pytest.approx(3.0)  # ranks 1 and 2
    # a rerun finds every run done: it trains nothing and changes nothing
    counts = [r.trials for r in runs]
    start = time.monotonic()
    assert run("", "--sampler random", 4, journal, out) == 0
    assert time.monotonic() - start < 20
    assert [r.trials for r in cmp.read_runs(storage, "t")] == counts


def test_ranks_and_bands_from_known_runs() -> None:
    def made(strategy, seed, best):
        x = np.arange(1.0, len(best) + 1)
        return cmp.Run(strategy, "", seed, x, x, np.array(best), 0.9, len(best), True, 3.0)

    runs = [made("good", s, [0.5, 0.8, 0.9]) for s in range(3)]
    runs += [made("bad", s, [np.nan, 0.6, 0.7 + 0.01 * s]) for s in range(3)]
    grid = np.array([0.5, 1.0, 2.0, 3.0])
    ranks = cmp.mean_ranks(runs, "seconds", grid)
    assert list(ranks["good"]) == [1.5, 1.0, 1.0, 1.0]  # nobody has a value at 0.5: a tie
    assert list(ranks["bad"]) == [1.5, 2.0, 2.0, 2.0]
    mean, low, high = cmp.band([r for r in runs if r.strategy == "bad"], "seconds", grid)
    assert np.isnan(mean[1]) and mean[3] == pytest.approx(0.71)
    assert low[3] < 0.71 < high[3] and low[3] > 0.7 - 1e-9 and high[3] < 0.72 + 1e-9


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "no-equals-sign"], "--strategy 'no-equals-sign': write NAME=FLAGS"),
        (["--seeds", "0,0"], "--seeds '0,0': write distinct integers"),
        (["--budget", "0"], "--budget 0.0: give the seconds per run"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(tmp_path, args, message) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "search.compare", *args, "--storage", str(tmp_path / "c.log")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip() == f"error: {done.stderr.strip()[7:]}"
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
