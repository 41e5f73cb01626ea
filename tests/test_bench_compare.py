"""The regression gate ``python -m bench.compare``, on synthetic pytest-benchmark JSON files."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest

from bench import compare
from bench.timing import Budget

CASE = "test_data_epoch[cpu-mnistcore]"


def run_file(path: Path, rounds: dict[str, list[float]], *, with_data: bool = True) -> Path:
    """A pytest-benchmark JSON file with one benchmark per case, timed in ``rounds`` seconds."""
    benchmarks = []
    for name, data in rounds.items():
        stats: dict[str, object] = {"median": statistics.median(data), "rounds": len(data)}
        if with_data:
            stats["data"] = data
        benchmarks.append({"name": name, "fullname": f"bench/x.py::{name}", "stats": stats})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": benchmarks}))
    return path


def noisy(n: int, *, centre: float = 1.0, seed: int = 0) -> list[float]:
    g = random.Random(seed)
    return [centre * g.uniform(0.9, 1.1) for _ in range(n)]


def test_identical_distributions_do_not_fail(tmp_path, capsys):
    base = run_file(tmp_path / "base.json", {CASE: noisy(5, seed=1), "test_b": noisy(5, seed=2)})
    new = run_file(tmp_path / "new.json", {CASE: noisy(5, seed=3), "test_b": noisy(5, seed=4)})
    # Same distribution, different draws: no regression, and nothing listed.
    assert compare.main([str(base), str(new)]) == 0
    out = capsys.readouterr().out
    assert "ok: no regression in 2 cases" in out and CASE not in out
    # The same file against itself, too.
    assert compare.main([str(base), str(base)]) == 0


def test_a_clear_2x_slowdown_fails_and_the_table_names_it(tmp_path, capsys):
    base = run_file(tmp_path / "base.json", {CASE: noisy(5), "test_b": noisy(5, seed=1)})
    new = run_file(tmp_path / "new.json", {CASE: noisy(5, centre=2.0), "test_b": noisy(5, seed=2)})
    assert compare.main([str(base), str(new), "--threshold", "25%"]) == 1
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("case"))
    for column in ("base median", "new median", "change", "min-max", "p", "verdict"):
        assert column in header
    # One row, for the slowed case only: ~+100 %, the smallest p 5 vs 5 rounds can give.
    (row,) = [line for line in lines if CASE in line]
    assert "REGRESSED" in row and "+1" in row and f"{1 / 252:.3f}" in row
    assert not any("test_b" in line for line in lines)
    assert lines[-1].startswith("FAIL: 1 of 2 cases regressed")


def test_two_rounds_never_fail_but_say_so(tmp_path, capsys):
    base = run_file(tmp_path / "base.json", {CASE: [1.0, 1.01]})
    new = run_file(tmp_path / "new.json", {CASE: [10.0, 10.1]})
    # 10x slower, but 2 vs 2 rounds can never give p <= 0.05 (at best 1/6): reported, not failed.
    assert compare.main([str(base), str(new)]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if CASE in line]
    assert "too few rounds (2 vs 2: p >= 0.167)" in row
    assert "not judged" in out.splitlines()[-1]


def test_slower_median_with_overlapping_rounds_is_not_a_regression(tmp_path, capsys):
    # The median is 30 % up, but the rounds interleave: noise, not a regression.
    base = run_file(tmp_path / "base.json", {CASE: [1.0, 1.1, 1.2, 1.6, 1.7]})
    new = run_file(tmp_path / "new.json", {CASE: [1.05, 1.15, 1.56, 1.65, 1.75]})
    assert compare.main([str(base), str(new)]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if CASE in line]
    assert row.endswith(compare.NOT_SIGNIFICANT)


def test_exact_mann_whitney_p_values():
    # Fully separated, 5 vs 5: only 1 of the C(10, 5) = 252 rank orders is as extreme.
    assert compare.p_slower([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(1 / 252)
    assert compare.smallest_p(5, 5) == pytest.approx(1 / 252)
    # Fully separated the other way round: every order is at least as extreme.
    assert compare.p_slower([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == 1.0
    # 3 vs 2: U = 5 of 6 (one new round below one baseline round); P(U >= 5) = 2/10.
    assert compare.u_statistic([1, 2, 4], [3, 5]) == 5
    assert compare.p_slower([1, 2, 4], [3, 5]) == pytest.approx(2 / 10)
    # The null distribution counts every rank order once.
    for m, n in [(1, 1), (2, 3), (5, 5), (7, 4), (30, 50)]:
        assert sum(compare.u_counts(m, n)) == math.comb(m + n, m)


def test_p_values_match_scipy_where_installed():
    stats = pytest.importorskip("scipy.stats")
    g = random.Random(0)
    for _ in range(50):
        base = [g.random() for _ in range(g.randint(1, 12))]
        new = [g.random() + 0.2 for _ in range(g.randint(1, 12))]
        expected = stats.mannwhitneyu(new, base, alternative="greater", method="exact").pvalue
        assert compare.p_slower(base, new) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("budget", [Budget(), Budget.quick()], ids=["full", "quick"])
def test_every_budget_gives_the_rank_test_enough_rounds(budget):
    # A run compared with one of the same budget can reach p <= 0.05 in every case.
    for rounds in (budget.cpu_rounds, budget.cuda_rounds, budget.epoch_rounds):
        assert compare.smallest_p(rounds, rounds) <= 0.05


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    good = run_file(tmp_path / "good.json", {CASE: noisy(5)})
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    not_a_run = tmp_path / "list.json"
    not_a_run.write_text("[1, 2]")
    no_data = run_file(tmp_path / "no-data.json", {CASE: noisy(5)}, with_data=False)
    monkeypatch.setattr("pytest_benchmark.utils.get_machine_id", lambda: "Linux-test")
    cases = [
        ([str(tmp_path / "absent"), str(good)], "no such baseline"),
        ([str(tmp_path), str(good)], "no saved benchmark run under"),  # no machine folder
        ([str(broken), str(good)], "cannot read benchmark JSON"),
        ([str(good), str(broken)], "cannot read benchmark JSON"),
        ([str(not_a_run), str(good)], "not a pytest-benchmark file"),
        ([str(no_data), str(good)], "saved without --benchmark-save-data"),
        ([str(good)] * 2 + ["--threshold", "lots"], "--threshold must be a percentage"),
        ([str(good)] * 2 + ["--alpha", "5"], "--alpha must be between 0 and 1"),
        ([str(good)] * 3, "usage:"),
    ]
    for argv, message in cases:
        assert compare.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert message in captured.err and captured.err.count("\n") == 1, captured.err
        assert captured.out == ""


def test_a_folder_means_its_latest_run_for_this_machine(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pytest_benchmark.utils.get_machine_id", lambda: "Linux-test")
    run_file(tmp_path / "Linux-test" / "0001_abc_20240101.json", {CASE: noisy(5, centre=9.0)})
    latest = run_file(tmp_path / "Linux-test" / "0002_abc_20240102.json", {CASE: noisy(5)})
    run_file(tmp_path / "Other-machine" / "0003_abc_20240103.json", {CASE: noisy(5, centre=9)})
    assert compare.latest_run(tmp_path) == latest
    # With only the baseline: a check that it can be used (make bench-compare runs it first).
    assert compare.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"baseline {latest}: 1 cases with per-round timings\n"
    new = run_file(tmp_path / "new.json", {CASE: noisy(5, seed=5)})
    assert compare.main([str(tmp_path), str(new)]) == 0


def test_options_go_anywhere_and_failed_ids_lists_the_regressed(tmp_path, capsys):
    base = run_file(tmp_path / "base.json", {CASE: noisy(5), "test_b": noisy(5, seed=1)})
    new = run_file(tmp_path / "new.json", {CASE: noisy(5, centre=3.0), "test_b": noisy(5)})
    ids = tmp_path / "ids"
    # As make bench-compare calls it: options between BASELINE and NEW.json.
    argv = [str(base), "--threshold=25%", "--alpha", "0.05", str(new), "--failed-ids", str(ids)]
    assert compare.main(argv) == 1
    # The node ids of the regressed cases only, for pytest to run them again.
    assert ids.read_text() == f"bench/x.py::{CASE}\n"
    assert compare.main([str(base), str(base), "--failed-ids", str(ids)]) == 0
    assert ids.read_text() == ""
