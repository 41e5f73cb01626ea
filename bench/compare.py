"""The regression gate: compare a benchmark run with a baseline, case by case, over the rounds.

    python -m bench.compare BASELINE NEW.json [--threshold 25%] [--alpha 0.05] [--all]
                                              [--failed-ids FILE]
    python -m bench.compare BASELINE     # only check that BASELINE is usable (make bench-compare)

A case regressed when its median seconds per call is more than ``threshold`` above the
baseline's AND an exact one-sided Mann-Whitney U test over the two runs' per-round timings says
the new rounds are slower, at ``alpha`` (asv and Bencher judge a regression with a statistical
test, not one median ratio: on a noisy machine a median of 2 rounds moves 30 %). A case with
too few rounds for any outcome to reach ``alpha`` (2 vs 2: p >= 1/6) is reported, not failed.

BASELINE is a pytest-benchmark JSON file or a folder like ``.benchmarks`` (then the latest run
saved for this machine). Both files need per-round timings, ``stats.data``: ``--benchmark-json``
always writes them, ``--benchmark-autosave`` only with ``--benchmark-save-data``.
``--failed-ids FILE`` writes the regressed cases' pytest node ids there, one a line, so that
``make bench-compare`` can run them again: a case's rounds run back to back, so one burst of a
neighbour's work can slow them all, and a regression must show in two runs.

Exit status: 0 no regression, 1 at least one, 2 a usage error or an unreadable file (one line).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pytest_benchmark.utils

from mnistcore.cli import OneLineParser
from studies.bench_data import read_run

USAGE = (
    "usage: python -m bench.compare BASELINE [NEW.json] [--threshold 25%] [--alpha 0.05] "
    "[--all] [--failed-ids FILE]"
)
REGRESSED = "REGRESSED"
NOT_SIGNIFICANT = "not significant"  # slower than the threshold, but the rounds overlap
TOO_FEW_ROUNDS = "too few rounds"
NO_DATA = "no per-round data"
OK = "ok"


class UsageError(Exception):
    """A wrong command line or a file that is not a saved run: one line, exit code 2."""


class Case(NamedTuple):
    node: str  # pytest node id: bench/test_data_path.py::test_data_epoch[cpu-mnistcore]
    name: str  # pytest-benchmark's name: test_data_epoch[cpu-mnistcore]
    rounds: tuple[float, ...]  # seconds per call, one per timed round (empty: not saved)
    median: float  # seconds per call, as pytest-benchmark computed it
    load: float | None = None  # 1-minute load average when it ran (extra_info.cpu_load_1min)


class Verdict(NamedTuple):
    base: Case
    new: Case
    change: float  # new median / baseline median - 1 (0.31: 31 % slower)
    p_value: float | None  # one-sided "new is slower"; None when not computed
    status: str  # REGRESSED, NOT_SIGNIFICANT, TOO_FEW_ROUNDS, NO_DATA or OK


# --- the test ----------------------------------------------------------------------------------


def u_statistic(base: Sequence[float], new: Sequence[float]) -> float:
    """Mann-Whitney U of ``new`` over ``base``: pairs with the new round slower, ties half."""
    return sum((n > b) + 0.5 * (n == b) for b in base for n in new)


def u_counts(m: int, n: int) -> list[int]:
    """How many of the C(m+n, m) equally likely rank orders give U = 0, 1, ..., m*n: the
    coefficients of the Gaussian binomial prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i)."""
    size = m * n + 1
    counts = [1] + [0] * (size - 1)
    for i in range(1, m + 1):
        for k in range(size - 1, n + i - 1, -1):  # times (1 - q^(n+i))
            counts[k] -= counts[k - n - i]
        for k in range(i, size):  # divided by (1 - q^i)
            counts[k] += counts[k - i]
    return counts


def p_slower(base: Sequence[float], new: Sequence[float]) -> float:
    """Exact one-sided p-value that ``new``'s rounds are stochastically larger than ``base``'s
    (ties count half in U; the null distribution assumes none: timings rarely tie)."""
    counts = u_counts(len(base), len(new))
    u = math.ceil(u_statistic(base, new))
    return sum(counts[u:]) / sum(counts)


def smallest_p(m: int, n: int) -> float:
    """The smallest p-value ``p_slower`` can give with m and n rounds: every new round slower."""
    return 1 / math.comb(m + n, m)


def judge(base: Case, new: Case, *, threshold: float, alpha: float) -> Verdict:
    change = new.median / base.median - 1
    m, n = len(base.rounds), len(new.rounds)
    judged = m > 0 and n > 0 and smallest_p(m, n) <= alpha
    p = p_slower(base.rounds, new.rounds) if judged else None
    if change <= threshold:
        status = OK
    elif not m or not n:
        status = NO_DATA
    elif p is None:
        status = TOO_FEW_ROUNDS
    else:
        status = REGRESSED if p <= alpha else NOT_SIGNIFICANT
    return Verdict(base, new, change, p, status)


# --- reading runs ------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict]:
    """The rows of a saved run, read through studies.bench_data as the report reads them."""
    if not path.is_file():
        raise UsageError(f"no such benchmark JSON: {path}")
    try:
        return read_run(path)[1]
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"cannot read benchmark JSON {path}: {reason}") from None


def read_cases(path: Path) -> dict[str, Case]:
    """fullname -> Case for each benchmark of a pytest-benchmark JSON file that has stats."""
    cases = {}
    for row in read_rows(path):
        median = row["median_s"]
        if median is None or not median > 0:
            continue
        rounds = row["round_seconds"]
        if any(t is None for t in rounds):
            raise UsageError(f"bad per-round timings (stats.data) of {row['name']} in {path}")
        node = str(row["fullname"])
        cases[node] = Case(node, row["name"], rounds, median, row["cpu_load_1min"])
    if not cases:
        raise UsageError(f"no benchmark with timings in {path}")
    return cases


def latest_run(folder: Path) -> Path:
    """The latest run pytest-benchmark saved in ``folder`` for this machine (highest NNNN)."""
    machine = folder / pytest_benchmark.utils.get_machine_id()  # as pytest-benchmark names it
    runs = sorted(machine.glob("[0-9][0-9][0-9][0-9]_*.json"))
    if not runs:
        raise UsageError(f"no saved benchmark run under {machine}: run make bench first")
    return runs[-1]


# --- output ------------------------------------------------------------------------------------


def _number(value: float) -> str:
    """3 significant digits at most, never an exponent: 0.123, 1.23, 12.3, 123, 1234."""
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}" if value else "0"


def _spread(case: Case, factor: float) -> str:
    if not case.rounds:
        return "-"
    low, high = _number(min(case.rounds) * factor), _number(max(case.rounds) * factor)
    return f"{low}-{high} ({len(case.rounds)})"


def _load(v: Verdict) -> str:
    return "/".join("?" if c.load is None else f"{c.load:.1f}" for c in (v.base, v.new))


def format_table(verdicts: list[Verdict]) -> str:
    """Case, medians, change, min-max of the rounds (and their number), p-value, the machine's
    1-minute load average in each run (a busy machine slows every case), verdict."""
    header = (
        f"{'case':<42} {'base median':>11} {'new median':>11} {'change':>7} "
        f"{'base min-max (n)':>17} {'new min-max (n)':>17} {'p':>6} {'load b/n':>9}  verdict"
    )
    lines = [header]
    for v in verdicts:
        prefix, factor = pytest_benchmark.utils.time_unit(v.base.median)
        unit = f"{prefix}s"
        p = "-" if v.p_value is None else f"{v.p_value:.3f}" if v.p_value >= 1e-3 else "<0.001"
        status = v.status
        if v.status == TOO_FEW_ROUNDS:
            m, n = len(v.base.rounds), len(v.new.rounds)
            status = f"{TOO_FEW_ROUNDS} ({m} vs {n}: p >= {smallest_p(m, n):.3g})"
        base, new = _number(v.base.median * factor), _number(v.new.median * factor)
        lines.append(
            f"{v.base.name:<42} {base:>8} {unit:<2} {new:>8} {unit:<2} {v.change:>+7.0%} "
            f"{_spread(v.base, factor):>17} {_spread(v.new, factor):>17} {p:>6} {_load(v):>9}  "
            f"{status}"
        )
    return "\n".join(lines)


def report(verdicts: list[Verdict], *, threshold: float, alpha: float, show_all: bool) -> str:
    shown = verdicts if show_all else [v for v in verdicts if v.status != OK]
    regressed = sum(v.status == REGRESSED for v in verdicts)
    rule = f"median > {threshold * 100:g}% slower and Mann-Whitney p <= {alpha:g}"
    if regressed:
        last = (
            "(a busy machine slows every case: check the load column, and rerun on an idle "
            f"machine before bisecting)\nFAIL: {regressed} of {len(verdicts)} cases regressed "
            f"({rule})"
        )
    else:
        last = f"ok: no regression in {len(verdicts)} cases ({rule})"
    unjudged = [v for v in verdicts if v.status in (TOO_FEW_ROUNDS, NO_DATA)]
    if unjudged:
        last += f"; {len(unjudged)} slower but not judged ({unjudged[0].status})"
    return "\n".join(([format_table(shown)] if shown else []) + [last])


# --- command line ------------------------------------------------------------------------------


def _fraction(text: str) -> float:
    """``25%`` or ``25`` -> 0.25."""
    try:
        value = float(text.removesuffix("%")) / 100
    except ValueError:
        raise UsageError(f"--threshold must be a percentage like 25%, but got {text!r}") from None
    if not value >= 0:
        raise UsageError(f"--threshold must be >= 0%, but got {text!r}")
    return value


def _alpha(text: str) -> float:
    try:
        return pytest_benchmark.utils.parse_fraction(text)
    except argparse.ArgumentTypeError:
        raise UsageError(f"--alpha must be between 0 and 1, but got {text!r}") from None


def parse(argv: list[str]) -> argparse.Namespace:
    """baseline (a JSON file, or a folder: its latest run for this machine), new (None: only
    check the baseline), threshold (0.25: 25 % slower), alpha, show_all, failed_ids."""
    parser = OneLineParser(prog="python -m bench.compare", add_help=False)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--threshold", type=_fraction, default=0.25)
    parser.add_argument("--alpha", type=_alpha, default=0.05)
    parser.add_argument("--all", action="store_true", dest="show_all")
    parser.add_argument("--failed-ids", type=Path)
    args = parser.parse_intermixed_args(argv)
    if len(args.paths) > 2:
        raise UsageError(USAGE)
    args.baseline, args.new = args.paths[0], args.paths[1] if len(args.paths) == 2 else None
    if not args.baseline.exists():
        raise UsageError(f"no such baseline: {args.baseline} (run make bench first)")
    return args


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        args = parse(argv)
        base_path = latest_run(args.baseline) if args.baseline.is_dir() else args.baseline
        base = read_cases(base_path)
        if not any(case.rounds for case in base.values()):
            raise UsageError(
                f"{base_path} holds no per-round timings (saved without --benchmark-save-data): "
                "run make bench again"
            )
        if args.new is None:
            print(f"baseline {base_path}: {len(base)} cases with per-round timings")
            return 0
        new = read_cases(args.new)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    verdicts = [  # one per case in both runs, in the new run's order
        judge(base[key], case, threshold=args.threshold, alpha=args.alpha)
        for key, case in new.items()
        if key in base
    ]
    if not verdicts:
        print(f"no case of {args.new} is in {base_path}: nothing to compare", file=sys.stderr)
        return 2
    print(f"baseline {base_path}\nnew      {args.new}")
    print(report(verdicts, threshold=args.threshold, alpha=args.alpha, show_all=args.show_all))
    regressed = [v.new.node for v in verdicts if v.status == REGRESSED]
    if args.failed_ids is not None:
        args.failed_ids.write_text("".join(f"{node}\n" for node in regressed))
    return 1 if regressed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
