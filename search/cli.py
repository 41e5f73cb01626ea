"""The command line of ``python -m search.study``: ``StudySettings`` (every flag defined once, as
a field), the parser generated from it, and ``main``.

Examples::

    python -m search.study                                   # defaults: ~4 min on a 2-core CPU
    python -m search.study --dataset fashion-mnist --timeout 360
    python -m search.study --lr 1e-3:0.3 --width 8:64 --momentum 0.9 --n-trials 50
    python -m search.study --objectives accuracy,throughput  # Pareto front, no pruning
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from mnistcore import DATASETS, PRECISIONS, TrainConfig
from mnistcore.cli import OneLineParser, field_help
from search.artifacts import KEEP_BEST
from search.confirm import (
    AUTO,
    AUTO_MAX_TOP,
    AUTO_SEEDS,
    BUDGET_SHARE,
    TUTORIAL,
    Baseline,
    ConfirmSpec,
    parse_baseline,
    parse_confirm,
)
from search.console import setup_logging
from search.objective import OBJECTIVES, REDUCTION, RUNG_IMAGES
from search.run import run_study
from search.setup import (
    DEFAULT_PRUNER,
    LARGE_SET,
    LARGE_SET_EPOCHS,
    PRUNERS,
    SAMPLERS,
    SMALL_SET_EPOCHS,
    TPE_STARTUP_TRIALS,
    StudyError,
)
from search.space import DEFAULT_SPACE, SEARCHABLE, SearchSpace, build_space
from search.workers import run_workers
from studies.storage import DEFAULT_JOURNAL, HEARTBEAT_INTERVAL


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    # a Ctrl-C outside the trial loop (loading data, say) ends in mnistcore.cli.run_main
    settings = StudySettings.from_args(args)
    if settings.workers > 1:
        return run_workers(settings, list(sys.argv[1:] if argv is None else argv))
    return run_study(settings)


def _at_least(low: int, kind: type = int, unit: str = "") -> Callable[[str], Any]:
    """An argparse type: a ``kind`` (int or float) of at least ``low``."""
    what = "an integer" if kind is int else f"a number of{unit}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not value >= low:  # NaN too
            raise argparse.ArgumentTypeError(f"must be >= {low}{unit}, got {text!r}")
        return value

    return parse


def _argtype(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` as an argparse type: its ValueError (a UserError too) is the one-line error."""

    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return wrapped


def _objectives(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if names not in (OBJECTIVES[:1], OBJECTIVES):
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose accuracy or accuracy,throughput (from {', '.join(OBJECTIVES)})"
        )
    return names


def _flag(default: Any, help: str, *, shown: Any = "%(default)s", **argparse_keywords: Any) -> Any:
    """A setting and its flag: ``help`` ends with ``(default: shown)`` (not for a switch)."""
    if shown is not None and argparse_keywords.get("action") != "store_true":
        help = f"{help} (default: {shown})"
    return field(default=default, metadata={"help": help, **argparse_keywords})


@dataclass(frozen=True)
class StudySettings:
    """Everything a run needs, parsed and validated before any data is loaded. Every field but
    ``space`` is the flag of its name (``data_dir`` is ``--data-dir``); defaults were measured
    on a 2-core CPU with mnist-5k: about two minutes, most trials pruned, ~98 % test accuracy."""

    dataset: str = _flag(
        "mnist",
        "data to tune on; mnist falls back to mnist-5k when the full set is neither on disk "
        "nor downloadable",
        choices=DATASETS,
    )
    data_dir: str = _flag("data", "where dataset files are found or downloaded")
    device: str = _flag("auto", "auto | cpu | cuda | cuda:N")
    threads: int = _flag(0, "CPU threads per trial; 0 = one per available core", type=_at_least(0))
    n_trials: int = _flag(
        30,
        "total trials of the study, counting those already in storage (complete, pruned or "
        "failed): a rerun only runs the missing ones",
        type=_at_least(1),
    )
    timeout: float = _flag(
        240.0,
        "seconds for this run, confirmation included: a trial starts only while the longest so "
        "far and the least confirmation (2 seeds of the best) fit in what is left, and the "
        "confirmation is cut to fit; 0 = no limit",
        type=_at_least(0, float, " seconds"),
    )
    epochs: int | None = _flag(
        None,
        "max epochs per trial; pruning stops bad trials earlier",
        shown=f"{SMALL_SET_EPOCHS}, or {LARGE_SET_EPOCHS} for sets of {LARGE_SET:,}+ training "
        "images such as full mnist and fashion-mnist",
        type=_at_least(1),
    )
    sampler: str = _flag(
        "tpe",
        "how trials pick parameters, seeded by --seed: tpe (Tree-structured Parzen "
        "Estimator), random, cmaes, gp (Gaussian process), qmc (Sobol)",
        choices=SAMPLERS,
    )
    pruner: str | None = _flag(
        None,
        "how bad trials are stopped early: sha (successive halving: past rungs 1, 3, 9... only "
        "the top third go on), hyperband (several such brackets), median, percentile (bottom "
        "25%%), none. Two-objective studies never prune",
        shown=DEFAULT_PRUNER,
        choices=PRUNERS,
    )
    objectives: tuple[str, ...] = _flag(
        "accuracy",
        "accuracy (maximize validation accuracy) or accuracy,throughput (also training img/s: "
        "a Pareto front, never pruned: Optuna cannot prune multi-objective studies)",
        type=_objectives,
    )
    storage: str | None = _flag(
        None,
        "journal file path, or sqlite:///file.db, postgresql://user:pass@host/db, "
        "mysql://user:pass@host/db",
        shown=DEFAULT_JOURNAL,
    )
    study_name: str | None = _flag(
        None,
        "name of the study in storage; the same name resumes it",
        shown="DATASET-OBJECTIVES, e.g. mnist-5k-accuracy",
    )
    seed: int = _flag(
        0,
        "seeds the sampler and every trial's training; a resumed study seeds its sampler "
        "with seed + trials already stored, so it draws new points",
        type=_at_least(0),
    )
    workers: int = _flag(
        1,
        "worker processes on this machine sharing the study; each gets its own sampler seed "
        "(SEED*1000+i) and CPU cores / N threads; --n-trials stays the study's total. "
        "Parallel runs are not bit-reproducible",
        type=_at_least(1),
    )
    heartbeat: int | None = _flag(
        None,
        "database storage only: a running trial writes a heartbeat every SECONDS; one silent "
        "for 3x that (its worker died) is failed and run again once by another worker",
        shown=HEARTBEAT_INTERVAL,
        type=_at_least(1),
        metavar="SECONDS",
    )
    reduction: int = _flag(
        REDUCTION,
        "sha/hyperband: rungs at steps 1, R, R^2, ... and only the top 1/R go on past each",
        type=_at_least(2),
        metavar="R",
    )
    rung_images: int = _flag(
        RUNG_IMAGES,
        "training images per report step at most: a large set's epoch is several steps, so "
        "trials are judged within their first epoch",
        type=_at_least(1),
        metavar="N",
    )
    startup_trials: int = _flag(
        TPE_STARTUP_TRIALS,
        "tpe/gp: random trials before the sampler starts modelling (split over hyperband's "
        "brackets)",
        type=_at_least(1),
        metavar="N",
    )
    precision: str = _flag(
        "auto",
        "auto | fp32 | bf16 (autocast) for every trial and the confirmation; auto: bf16 where "
        "the device runs it fast (CUDA with bf16, a CPU with AVX512-BF16 or AMX), else fp32",
        choices=PRECISIONS,
    )
    population: int = _flag(
        1,
        "trials trained together as one fused model: K asked at once (TPE as a constant liar, "
        "so they differ), those of one architecture trained as one population, each pruned on "
        "its own; 1: one at a time. Two-objective studies use 1 (a trial's speed is an objective)",
        type=_at_least(1),
        metavar="K",
    )
    confirm: ConfirmSpec = _flag(
        AUTO,
        "after the search, retrain the TOP configurations by val accuracy with SEEDS new seeds "
        "each (alone, as a recipe retrains them): mean, spread, 95%% interval; the winner is "
        f"the best mean. auto: {AUTO_SEEDS} seeds, as many of the top {AUTO_MAX_TOP} as fit in "
        f"{BUDGET_SHARE * 100:.0f}%% of the search's time (the best always); 0: off. Stored in "
        "the study: a rerun does not redo them",
        type=_argtype(parse_confirm),
        metavar="TOP:SEEDS",
    )
    baseline: Baseline | None = _flag(
        TUTORIAL,
        "the recipe the confirmed winner is compared with, trained on the winner's seeds, data "
        "and epochs (its cost counts in the confirmation's budget): tutorial (the PyTorch MNIST "
        "tutorial's recipe), a recipe FILE.toml, or none",
        type=_argtype(parse_baseline),
        metavar="RECIPE",
    )
    artifacts: str | None = _flag(
        None,
        f"artifact store folder for trained weights (the best {KEEP_BEST} trials when they end, "
        "every confirmation seed), one all machines see when workers run on several; none: keep "
        "no weights",
        shown="beside the storage file, e.g. reports/optuna-journal-artifacts",
        metavar="DIR",
    )
    no_report: bool = _flag(False, "do not build the HTML report at the end", action="store_true")
    quiet: bool = _flag(
        False, "no progress bar, no per-trial lines; the summary still prints", action="store_true"
    )
    synthetic_size: int = _flag(
        2000, "images generated for --dataset synthetic (tests)", type=_at_least(1)
    )
    space: SearchSpace = field(default_factory=lambda: dict(DEFAULT_SPACE))

    def __post_init__(self) -> None:
        if self.sampler == "cmaes" and len(self.objectives) > 1:
            raise StudyError(
                "--sampler cmaes handles one objective only; use --sampler tpe, gp, random or "
                "qmc with --objectives accuracy,throughput"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StudySettings:
        base = TrainConfig(
            epochs=args.epochs or SMALL_SET_EPOCHS,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
        )
        texts = {name: getattr(args, f"space_{name}") for name in SEARCHABLE}
        overrides = {name: text for name, text in texts.items() if text is not None}
        space = build_space(overrides=overrides, toml_path=args.space, base=base)
        flags = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "space"}
        return cls(**flags, space=space)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m search.study",
        description="Search learning rate, momentum, width, batch norm and dropout of the CNN\n"
        "with Optuna: prune bad trials early, store every trial (a rerun resumes), print a\n"
        "summary and build the HTML report. The objective is validation accuracy; the test\n"
        "split only reports finished trials. Ctrl-C marks the running trial failed, prints the\n"
        "summary and exits with 130; rerun to resume.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Storage: by default every study lives in the journal file\n"
        f"{DEFAULT_JOURNAL}; open it with\n"
        f"  optuna-dashboard {DEFAULT_JOURNAL}\n"
        f"  optuna studies --storage {DEFAULT_JOURNAL}\n"
        "User errors exit with code 2, an interrupted run (Ctrl-C) with 130.",
    )
    for setting in fields(StudySettings):
        if setting.name != "space":
            flag = f"--{setting.name.replace('_', '-')}"
            parser.add_argument(flag, default=setting.default, **setting.metadata)
    group = parser.add_argument_group(
        "search space",
        "LOW:HIGH is a range (append :log or :linear to choose the scale), A,B a choice,\n"
        "one value pins the parameter; --space FILE.toml sets them from a file.",
    )
    group.add_argument(
        "--space", metavar="FILE.toml", help="search-space file (TOML); flags below override it"
    )
    for name in SEARCHABLE:
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"space_{name}",
            metavar="SPEC",
            help=f"{field_help(name)} (default: {DEFAULT_SPACE[name].describe()})",
        )
    return parser
