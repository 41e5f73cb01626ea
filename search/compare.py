"""``python -m search.compare``: the same study under several search strategies, over several
seeds, each with the same wall budget; then a report page of best-so-far validation accuracy
against wall time and epochs (mean and 95 % bootstrap band over seeds), the winners' test
accuracy with intervals and the mean rank per budget (studies/compare_data.py reads it back).

A strategy is a name and the ``search.study`` flags it adds (sampler, pruner, --reduction,
--population, --precision...); flags after ``--`` go to every run. Each (strategy, seed) is
one study (``COMPARISON/STRATEGY/seedN``) in the comparison's storage: a stopped comparison
keeps its finished trials, and a rerun resumes each run with what is left of its budget.

    python -m search.compare --budget 60 --seeds 0,1,2 -- --dataset mnist-5k
    python -m search.compare --strategy tpe-sha= --strategy random="--sampler random"
"""

from __future__ import annotations

import contextlib
import io
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import optuna

from mnistcore.cli import INTERRUPTED_EXIT, OneLineParser, run_main
from mnistcore.errors import UserError
from search.console import setup_logging
from studies import compare_data as cmp
from studies import formatting as fmt
from studies import trial_record as rec
from studies.storage import open_storage

log = logging.getLogger("search")

DEFAULT_STORAGE = "reports/compare-journal.log"
DEFAULT_OUT = Path("reports/compare")
# the defaults against one change each: the sampler, pruning off, a gentler halving, a larger
# first rung
DEFAULT_STRATEGIES = (
    "defaults=",
    "random=--sampler random",
    "no-pruning=--pruner none",
    "halving-2=--reduction 2",
)
# every run: no confirmation or baseline (the comparison is of searches), quiet, stored
RUN_FLAGS = ("--confirm", "0", "--baseline", "none", "--no-report", "--quiet")


def parse_strategy(text: str) -> tuple[str, list[str]]:
    name, sep, flags = text.partition("=")
    if not sep or not name.strip() or "/" in name:
        raise UserError(
            f"--strategy {text!r}: write NAME=FLAGS, e.g. random='--sampler random' (NAME "
            "without '/'; FLAGS may be empty for the defaults)"
        )
    return name.strip(), shlex.split(flags)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: write distinct integers, e.g. 0,1,2")
    return seeds


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="python -m search.compare", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--strategy",
        action="append",
        metavar="NAME=FLAGS",
        help=f"a strategy (repeat it); default: {'; '.join(DEFAULT_STRATEGIES)}",
    )
    p.add_argument("--seeds", default="0,1,2", help="seeds of every strategy (default: 0,1,2)")
    p.add_argument(
        "--budget",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wall seconds of search per strategy and seed (default: 60)",
    )
    p.add_argument("--name", default="compare", help="the comparison's name (default: compare)")
    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"where its studies live (default: {DEFAULT_STORAGE})",
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"report folder (default: {DEFAULT_OUT})"
    )
    p.add_argument("--no-report", action="store_true", help="print the table only")
    p.add_argument(
        "common",
        nargs="*",
        metavar="-- FLAGS",
        help="search.study flags for every run, e.g. -- --dataset mnist-5k",
    )
    return p  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=False)
    return compare(args)


def compare(args) -> int:
    if not args.budget > 0:
        raise UserError(f"--budget {args.budget}: give the seconds per run, e.g. --budget 60")
    strategies = [parse_strategy(s) for s in args.strategy or DEFAULT_STRATEGIES]
    if len({n for n, _ in strategies}) != len(strategies):
        raise UserError("--strategy: two strategies have the same NAME; name each once")
    seeds = parse_seeds(args.seeds)
    storage, _ = open_storage(args.storage)
    runs = [(seed, name, flags) for seed in seeds for name, flags in strategies]
    start = time.monotonic()
    for i, (seed, name, flags) in enumerate(runs, 1):  # seed by seed: a stop leaves whole seeds
        line = run_one(args, storage, name, flags, seed)
        elapsed = time.monotonic() - start  # on stderr: each run's --quiet mutes the log
        print(f"[{i}/{len(runs)}] {name} seed {seed}: {line} ({elapsed:.0f} s so far)",
              file=sys.stderr, flush=True)  # fmt: skip
    table = cmp.summary_table(cmp.read_runs(storage, args.name))
    print(table_text(table))
    print(
        f"{len(runs)} runs of {args.budget:.0f} s; this command: {time.monotonic() - start:.0f} s"
    )
    if not args.no_report:
        from reports import build_report  # plotly: only when a page is written

        index = build_report(storage=args.storage, out_dir=args.out)
        print(f"report: {index.parent / 'compare.html'}")
    return 0


def run_one(args, storage, name: str, flags: list[str], seed: int) -> str:
    """Run (or resume) one strategy on one seed for what is left of its budget."""
    from search.cli import main as study_main

    study_name = f"{args.name}/{name}/seed{seed}"
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                load_if_exists=True)  # fmt: skip
    attrs = {cmp.COMPARISON: args.name, cmp.STRATEGY: name, cmp.STRATEGY_FLAGS: shlex.join(flags),
             cmp.BUDGET: args.budget, rec.SEED: seed}  # fmt: skip
    for key, value in attrs.items():
        if study.user_attrs.get(key) not in (None, value):
            raise UserError(
                f"study {study_name!r} ran with {key}={study.user_attrs[key]!r}, not {value!r}: "
                "keep the comparison's settings to resume it, or give a new --name"
            )
        study.set_user_attr(key, value)
    left = args.budget - rec.search_seconds(study.trials)
    if not study.user_attrs.get(cmp.DONE) and left > 0:
        argv = [
            *args.common,
            *flags,
            *RUN_FLAGS,
            "--seed",
            str(seed),
            "--timeout",
            f"{left:.1f}",
            "--n-trials",
            "100000",
            "--storage",
            args.storage,
            "--study-name",
            study_name,
        ]
        with contextlib.redirect_stdout(io.StringIO()):  # each run's summary: the page has it
            code = study_main(argv)
        if code == INTERRUPTED_EXIT:
            raise KeyboardInterrupt
        study.set_user_attr(cmp.DONE, True)
    run = cmp.run_of(study.trials, study.user_attrs)
    best = fmt.percent(run.best[-1]) if run.trials else "no trial"
    return f"{run.trials} trials, best val {best}, its test {fmt.percent(run.test)}"


def table_text(table) -> str:
    shown = table.drop(columns=["flags"]).copy()
    for column in shown.columns:
        if "accuracy" in column:
            shown[column] = [fmt.percent(v) for v in shown[column]]
        elif "rank" in column:
            shown[column] = [f"{v:.2f}" if v is not None else "-" for v in shown[column]]
    return shown.to_string(index=False)


if __name__ == "__main__":
    run_main(main)
