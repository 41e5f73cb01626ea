"""The command line of ``python -m search.study``: flags, their validation, and ``main``.

Examples::

    python -m search.study                                   # defaults: ~4 min on a 2-core CPU
    python -m search.study --dataset fashion-mnist --timeout 360
    python -m search.study --lr 1e-3:0.3 --width 8:64 --momentum 0.9 --n-trials 50
    python -m search.study --objectives accuracy,throughput  # Pareto front, no pruning
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from mnistcore import DATASETS
from mnistcore.cli import FIELD_HELP
from search.artifacts import KEEP_BEST
from search.confirm import AUTO, AUTO_MAX_TOP, AUTO_SEEDS, BUDGET_SHARE, ConfirmSpec, parse_confirm
from search.console import setup_logging
from search.objective import OBJECTIVES
from search.run import run_study, run_workers
from search.setup import (
    DEFAULT_PRUNER,
    LARGE_SET,
    LARGE_SET_EPOCHS,
    PRUNERS,
    SAMPLERS,
    SMALL_SET_EPOCHS,
    StudySettings,
)
from search.space import DEFAULT_SPACE, SEARCHABLE
from studies.storage import DEFAULT_JOURNAL, HEARTBEAT_INTERVAL

# Defaults measured on a 2-core CPU with mnist-5k (README, "Hyperparameter search"): about two
# minutes on an idle machine, most trials pruned, best test accuracy around 98 %.
DEFAULT_N_TRIALS = 30
DEFAULT_TIMEOUT = 240.0  # seconds; no trial starts later, so a first run ends within 5 minutes
DEFAULT_POPULATION = 1  # trials per fused population (--population)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    # a Ctrl-C outside the trial loop (loading data, say) ends in mnistcore.cli.run_main
    settings = StudySettings.from_args(args)
    if settings.workers > 1:
        return run_workers(settings, list(sys.argv[1:] if argv is None else argv))
    return run_study(settings)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, as for every other user error (argparse would print the usage first)
        self.exit(2, f"error: {message} (see python -m search.study --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m search.study",
        description="Search learning rate, momentum, width, batch norm and dropout of the CNN\n"
        "with Optuna: prune bad trials early, store every trial (a rerun resumes), print a\n"
        "summary and build the HTML report. The objective is validation accuracy; the test\n"
        "split only reports finished trials. Ctrl-C marks the running trial failed, prints the\n"
        "summary and exits with 130; rerun to resume.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_epilog(),
    )
    a = parser.add_argument
    a(
        "--dataset",
        default="mnist",
        choices=DATASETS,
        help="data to tune on; mnist falls back to mnist-5k when the full set is neither on "
        "disk nor downloadable (default: %(default)s)",
    )
    a(
        "--data-dir",
        default="data",
        help="where dataset files are found or downloaded (default: %(default)s)",
    )
    a("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    a(
        "--threads",
        type=_non_negative_int,
        default=0,
        help="CPU threads per trial; 0 = one per available core (default: %(default)s)",
    )
    a(
        "--n-trials",
        type=_positive_int,
        default=DEFAULT_N_TRIALS,
        help="total trials of the study, counting those already in storage (complete, pruned "
        "or failed): a rerun only runs the missing ones (default: %(default)s)",
    )
    a(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        help="stop starting trials after this many seconds of this run; 0 = no limit "
        "(default: %(default)s)",
    )
    a(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"max epochs per trial; pruning stops bad trials earlier (default: "
        f"{SMALL_SET_EPOCHS}, or {LARGE_SET_EPOCHS} for sets of {LARGE_SET:,}+ training images "
        "such as full mnist and fashion-mnist)",
    )
    a(
        "--sampler",
        choices=SAMPLERS,
        default="tpe",
        help="how trials pick parameters, seeded by --seed: tpe (Tree-structured Parzen "
        "Estimator), random, cmaes, gp (Gaussian process), qmc (Sobol) (default: %(default)s)",
    )
    a(
        "--pruner",
        choices=PRUNERS,
        default=None,
        help="how bad trials are stopped after an epoch: sha (successive halving: continue "
        "past epochs 1, 3, 9... only in the top third), hyperband (several such brackets), "
        "median, percentile (bottom 25%%), none. Two-objective studies never prune "
        f"(default: {DEFAULT_PRUNER})",
    )
    a(
        "--objectives",
        default="accuracy",
        type=_objectives,
        help="accuracy (maximize validation accuracy) or accuracy,throughput (also maximize "
        "training img/s: a Pareto front; pruning is then disabled, as Optuna cannot prune "
        "multi-objective studies) (default: %(default)s)",
    )
    a(
        "--storage",
        default=None,
        help="journal file path, or sqlite:///file.db, postgresql://user:pass@host/db, "
        f"mysql://user:pass@host/db (default: {DEFAULT_JOURNAL})",
    )
    a(
        "--study-name",
        default=None,
        help="name of the study in storage; the same name resumes it "
        "(default: DATASET-OBJECTIVES, e.g. mnist-5k-accuracy)",
    )
    a(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seeds the sampler and every trial's training; a resumed study seeds its sampler "
        "with seed + trials already stored, so it draws new points (default: %(default)s)",
    )
    a(
        "--space",
        metavar="FILE.toml",
        default=None,
        help="search-space file (TOML); flags below override it",
    )
    a(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes on this machine sharing the study; each gets its own sampler "
        "seed (SEED*1000+i) and CPU cores / N threads; --n-trials stays the study's total. "
        "Parallel runs are not bit-reproducible (default: %(default)s)",
    )
    a(
        "--heartbeat",
        type=_positive_int,
        default=None,
        metavar="SECONDS",
        help="database storage only: a running trial writes a heartbeat every SECONDS; one "
        "silent for 3x that (its worker died) is failed and run again once by another worker "
        f"(default: {HEARTBEAT_INTERVAL})",
    )
    a(
        "--population",
        type=_positive_int,
        default=DEFAULT_POPULATION,
        metavar="K",
        help="trials trained together as one fused model: each worker asks K trials at once "
        "(TPE as a constant liar, so they differ), trains those of one architecture as one "
        "population and prunes each on its own; 1 trains one trial at a time. Two-objective "
        "studies always use 1 (each trial's own speed is an objective) (default: %(default)s)",
    )
    a(
        "--confirm",
        type=_confirm,
        default=AUTO,
        metavar="TOP:SEEDS",
        help="after the search, retrain the TOP configurations by val accuracy with SEEDS new "
        "seeds each and report mean, spread and 95%% interval; the winner is the best mean. "
        f"auto: {AUTO_SEEDS} seeds, as many of the top {AUTO_MAX_TOP} as fit in "
        f"{BUDGET_SHARE * 100:.0f}%% of the search's time (the best always); 0: off. Stored "
        "in the study: a rerun does not redo them (default: %(default)s)",
    )
    a(
        "--artifacts",
        metavar="DIR",
        default=None,
        help="folder of the artifact store that keeps trained weights (the best "
        f"{KEEP_BEST} trials when they end, every confirmation run); give a folder every "
        "machine sees when workers run on several; none: keep no weights (default: beside "
        "the storage file, e.g. reports/optuna-journal-artifacts)",
    )
    a("--no-report", action="store_true", help="do not build the HTML report at the end")
    a(
        "--quiet",
        action="store_true",
        help="no progress bar and no per-trial lines; the summary is still printed",
    )
    a(
        "--synthetic-size",
        type=_positive_int,
        default=2000,
        help="images generated for --dataset synthetic (tests) (default: %(default)s)",
    )

    group = parser.add_argument_group(
        "search space",
        "LOW:HIGH is a range (append :log or :linear to choose the scale), A,B a choice,\n"
        "one value pins the parameter; --space FILE.toml sets them from a file.",
    )
    for name in SEARCHABLE:
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"space_{name}",
            metavar="SPEC",
            default=None,
            help=f"{FIELD_HELP[name]} (default: {DEFAULT_SPACE[name].describe()})",
        )
    return parser


def _epilog() -> str:
    return (
        "Storage: by default every study lives in the journal file\n"
        f"{DEFAULT_JOURNAL}; open it with\n"
        f"  optuna-dashboard {DEFAULT_JOURNAL}\n"
        f"  optuna studies --storage {DEFAULT_JOURNAL}\n"
        "User errors exit with code 2, an interrupted run (Ctrl-C) with 130."
    )


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text!r}")
    return value


def _confirm(text: str) -> ConfirmSpec:
    try:
        return parse_confirm(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _objectives(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if names not in (("accuracy",), ("accuracy", "throughput")):
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose accuracy or accuracy,throughput (from {', '.join(OBJECTIVES)})"
        )
    return names
