"""``python -m search.study``: an Optuna study over the CNN's hyperparameters.

Examples::

    python -m search.study                                   # defaults: ~4 min on a 2-core CPU
    python -m search.study --dataset fashion-mnist --timeout 360
    python -m search.study --lr 1e-3:0.3 --width 8:64 --momentum 0.9 --n-trials 50
    python -m search.study --objectives accuracy,throughput  # Pareto front, no pruning
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from mnistcore import DATASETS, TrainConfig, UserError, load_dataset, resolve_device
from mnistcore.cli import FIELD_HELP, INTERRUPTED_EXIT, run_main
from search.locks import study_lock
from search.objective import OBJECTIVES, Objective, run_stamps
from search.space import (
    DEFAULT_SPACE,
    SEARCHABLE,
    SearchSpace,
    build_space,
    check_compatible,
    describe_space,
    searched_names,
    start_params,
)
from search.storage import DEFAULT_STORAGE, HEARTBEAT_INTERVAL, open_storage
from search.summary import FINISHED, format_summary, summarize
from search.workers import Parent, SharedObjective, budget_left, optimize_shared

log = logging.getLogger("search")

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("hyperband", "sha", "median", "percentile", "none")

# Defaults measured on a 2-core CPU with mnist-5k (see search/README-snippet.md): about four
# minutes, a third or more of the trials pruned, best test accuracy around 98 %.
DEFAULT_N_TRIALS = 30
# Max epochs per trial unless --epochs: 9 on small sets (the pruners' rungs are then epochs 1, 3
# and 9), 5 on the 54k-image sets, whose epoch is 15x longer. Measured on 2 cores, fashion-mnist
# with --timeout 360: 9 epochs left time for only 3 complete trials (best 91.0 % test), 3 epochs
# capped trials at ~90 %.
SMALL_SET_EPOCHS = 9
LARGE_SET_EPOCHS = 5
LARGE_SET = 10_000  # training images from which a set counts as large
# Successive halving by default: Hyperband splits trials into brackets and its sampler learns
# from each bracket's trials alone, so 30 trials in 3 brackets would leave TPE mostly random.
DEFAULT_PRUNER = "sha"
REDUCTION_FACTOR = 3  # a trial goes on past a rung when in the top third of those there
TPE_STARTUP_TRIALS = 10  # random trials before TPE (and GP) start modelling
DEFAULT_TIMEOUT = 240.0  # seconds; no trial starts later, so a first run ends within 5 minutes
DATA_SPLIT_SEED = 0  # the validation split never moves with --seed, so studies stay comparable


class StudyError(UserError):
    """The study in storage does not match this run's settings."""


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
        f"mysql://user:pass@host/db (default: {DEFAULT_STORAGE})",
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


@dataclass
class StudySettings:
    """Everything a run needs, parsed and validated before any data is loaded."""

    dataset: str
    data_dir: str
    device: str
    threads: int
    n_trials: int
    timeout: float | None
    epochs: int | None  # None: chosen from the training set's size once it is loaded
    sampler: str
    pruner: str
    objectives: tuple[str, ...]
    storage: str | None
    study_name: str | None
    seed: int
    space: SearchSpace
    report: bool = True
    quiet: bool = False
    synthetic_size: int = 2000
    workers: int = 1
    heartbeat: int | None = None
    pruner_given: bool = field(default=False, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StudySettings:
        base = TrainConfig(
            epochs=args.epochs or SMALL_SET_EPOCHS,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
        )
        overrides = {
            name: getattr(args, f"space_{name}")
            for name in SEARCHABLE
            if getattr(args, f"space_{name}") is not None
        }
        space = build_space(overrides=overrides, toml_path=args.space, base=base)
        return cls(
            dataset=args.dataset,
            data_dir=args.data_dir,
            device=args.device,
            threads=args.threads,
            n_trials=args.n_trials,
            timeout=args.timeout or None,
            epochs=args.epochs,
            sampler=args.sampler,
            pruner=args.pruner or DEFAULT_PRUNER,
            objectives=args.objectives,
            storage=args.storage,
            study_name=args.study_name,
            seed=args.seed,
            space=space,
            report=not args.no_report,
            quiet=args.quiet,
            synthetic_size=args.synthetic_size,
            workers=args.workers,
            heartbeat=args.heartbeat,
            pruner_given=args.pruner is not None,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(quiet=args.quiet)
    try:
        settings = StudySettings.from_args(args)
        if settings.workers > 1:
            return run_workers(settings, list(sys.argv[1:] if argv is None else argv))
        return run_study(settings)
    except KeyboardInterrupt:  # before or after the trials (loading data, say)
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


def run_study(settings: StudySettings) -> int:
    """Run (or resume) the study of ``settings``; returns the exit code."""
    s = settings
    if s.sampler == "cmaes" and len(s.objectives) > 1:
        raise StudyError(
            "--sampler cmaes handles one objective only; use --sampler tpe, gp, random or qmc "
            "with --objectives accuracy,throughput"
        )
    device = resolve_device(s.device)  # fail fast on a missing GPU, before loading data
    storage, storage_name = open_storage(s.storage, heartbeat=s.heartbeat)
    data = load_dataset(
        s.dataset,
        data_dir=s.data_dir,
        seed=DATA_SPLIT_SEED,
        synthetic_size=s.synthetic_size,
    )
    name = s.study_name or f"{data.name}-{'+'.join(s.objectives)}"
    epochs = s.epochs or default_epochs(data.sizes["train"])
    n_existing = _count_finished(storage, name)
    prunes = len(s.objectives) == 1
    pruner = s.pruner if prunes else "none"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        # a resumed run draws fresh points instead of replaying the first run's random ones
        sampler=_sampler(s.sampler, seed=s.seed + n_existing, brackets=_brackets(pruner, epochs)),
        pruner=_pruner(pruner, epochs=epochs),
        directions=["maximize"] * len(s.objectives),
        load_if_exists=True,
    )
    _check_same_settings(study, dataset=data.name, epochs=epochs, objectives=s.objectives)
    check_compatible(s.space, study.get_trials(deepcopy=False), name)
    lock = study_lock(storage, storage_name, name)
    with lock.hold():  # workers starting together: only the first queues the start point
        if not study.get_trials(deepcopy=False):
            study.enqueue_trial(start_params(s.space))
    stamps = run_stamps(data, device=str(device))
    for key, value in {
        "dataset": data.name,
        "dataset_source": data.source,
        "max_epochs": epochs,
        "objectives": list(s.objectives),
        "device_name": stamps["device_name"],
    }.items():
        study.set_user_attr(key, value)

    log.info("data: %s", data.describe())
    log.info("storage: %s, study %r (%d finished trials so far)", storage_name, name, n_existing)
    log.info("space: %s", describe_space(s.space))
    if not searched_names(s.space):
        log.warning("every parameter is pinned: each trial trains the same configuration")
    if prunes:
        log.info("sampler %s, pruner %s, up to %d epochs per trial", s.sampler, s.pruner, epochs)
    else:
        log.info(
            "sampler %s; pruning disabled: Optuna cannot prune multi-objective studies%s",
            s.sampler,
            f" (--pruner {s.pruner} ignored)" if s.pruner_given else "",
        )

    base = TrainConfig(
        epochs=epochs, seed=s.seed, device=s.device, threads=s.threads, dataset=data.name
    )
    objective = Objective(data, s.space, base=base, objectives=s.objectives, stamps=stamps)
    remaining = budget_left(study, s.n_trials)  # running and waiting trials count too
    run = _optimize(study, SharedObjective(objective, s.n_trials, lock), remaining, settings=s)

    lines = run.lines(objective.compute_seconds)
    print(format_summary(summarize(study), run_lines=lines))
    if s.report and not run.interrupted:
        _build_report(storage_name, name)
    return INTERRUPTED_EXIT if run.interrupted else 0


def run_workers(settings: StudySettings, argv: list[str]) -> int:
    """``--workers N``: N child processes run this command with ``--workers 1`` on one study;
    this process supervises them, then prints the summary and builds the report once."""
    s = settings
    resolve_device(s.device)
    storage, storage_name = open_storage(s.storage, heartbeat=s.heartbeat)  # one-line errors
    # the children must agree on the study's name: resolve the default (mnist may fall back
    # to mnist-5k) here once and hand it to them
    data = load_dataset(
        s.dataset, data_dir=s.data_dir, seed=DATA_SPLIT_SEED, synthetic_size=s.synthetic_size
    )
    name = s.study_name or f"{data.name}-{'+'.join(s.objectives)}"
    del data
    parent = Parent(
        argv=[*argv, "--study-name", name],
        workers=s.workers,
        seed=s.seed,
        threads=s.threads,
        study=lambda: optuna.load_study(study_name=name, storage=storage),
        lock=study_lock(storage, storage_name, name),
    )
    log.info("%d workers on study %r in %s", s.workers, name, storage_name)
    start = time.perf_counter()
    code = parent.run()
    wall = time.perf_counter() - start
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return code or 1  # no child got as far as creating the study: it said why
    lines = [f"{s.workers} workers: {wall:.1f} s wall"]
    if parent.crashed:
        lines[0] += f"; {parent.crashed} crashed, their trials retried"
    print(format_summary(summarize(study), run_lines=lines))
    if s.report and code == 0:
        _build_report(storage_name, name)
    return code


@dataclass
class _Run:
    wall_seconds: float = 0.0
    trials: int = 0
    interrupted: bool = False

    def lines(self, compute_seconds: float) -> list[str]:
        if not self.trials:
            return []
        overhead = max(self.wall_seconds - compute_seconds, 0.0)
        share = overhead / self.wall_seconds if self.wall_seconds else 0.0
        return [
            f"this run: {self.trials} trial{'s' if self.trials != 1 else ''} in "
            f"{self.wall_seconds:.1f} s; Optuna's overhead "
            f"(sampler, pruner, storage) {overhead:.1f} s = {share:.1%} of it"
            + ("; interrupted" if self.interrupted else "")
        ]


def _optimize(
    study: optuna.Study, shared: SharedObjective, remaining: int, *, settings: StudySettings
) -> _Run:
    run = _Run()
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    # a RUNNING trial may be a dead worker's, to be retried: optimize_shared looks at it
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if remaining <= 0 and not waiting and not running:
        log.info(
            "the study already has %d or more finished trials (--n-trials counts them): "
            "nothing to run; raise --n-trials to continue",
            settings.n_trials,
        )
        return run
    names = searched_names(settings.space)
    bar = tqdm(
        total=max(remaining, len(waiting)),
        desc="trials",
        unit="trial",
        file=sys.stderr,
        # TQDM_DISABLE: set by --workers N for its children, whose bars would collide
        disable=settings.quiet or bool(os.environ.get("TQDM_DISABLE")),
        dynamic_ncols=True,
    )

    logged: set[int] = set()

    def on_trial_end(study: optuna.Study, trial: FrozenTrial) -> None:
        run.trials += 1
        logged.add(trial.number)
        bar.update(1)
        log.info("%s", _trial_line(trial, names))

    start = time.perf_counter()
    try:
        # with several workers on one storage, stop once the study as a whole has enough:
        # trials run one at a time while the study's count (running ones included) is short
        optimize_shared(study, shared, timeout=settings.timeout, callbacks=[on_trial_end])
    except KeyboardInterrupt:
        run.interrupted = True
        numbers = shared.objective.trial_numbers
        _fail_running(study, numbers)
        # Optuna calls no callback for the trial it was running when Ctrl-C came
        for number in set(numbers) - logged:
            on_trial_end(study, study.get_trials(deepcopy=False)[number])
        log.warning(
            "interrupted: a running trial is marked FAIL; rerun the same command to resume"
        )
    finally:
        run.wall_seconds = time.perf_counter() - start
        bar.close()
    return run


def _trial_line(trial: FrozenTrial, names: list[str]) -> str:
    attrs = trial.user_attrs
    epochs = (
        f"{attrs.get('epochs_run', len(trial.intermediate_values))}/"
        f"{attrs.get('max_epochs', '?')} epochs"
    )
    if trial.state == TrialState.COMPLETE and trial.values:
        value = f"val {trial.values[0]:.4f}"
        if len(trial.values) > 1:
            value += f" {trial.values[1]:,.0f} img/s"
        if "test_accuracy" in attrs:
            value += f" (test {attrs['test_accuracy']:.4f})"
    elif trial.intermediate_values:
        last = max(trial.intermediate_values)
        value = f"val {trial.intermediate_values[last]:.4f}"
    else:
        value = "no value"
    reason = f" [{attrs['fail_reason']}]" if "fail_reason" in attrs else ""
    params = " ".join(f"{n}={_short(trial.params[n])}" for n in names if n in trial.params)
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    return (
        f"trial {trial.number} {trial.state.name} {value}, {epochs}, {seconds:.1f} s: "
        f"{params}{reason}"
    )


def _fail_running(study: optuna.Study, numbers: list[int]) -> None:
    """Mark trials this process started and left RUNNING (interrupted outside the objective,
    e.g. while sampling) as FAIL, so none stays RUNNING for ever."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in numbers:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def _count_finished(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return sum(t.state in FINISHED for t in storage.get_all_trials(study_id, deepcopy=False))


def default_epochs(n_train: int) -> int:
    """Max epochs per trial when --epochs is not given, from the training set's size."""
    return LARGE_SET_EPOCHS if n_train >= LARGE_SET else SMALL_SET_EPOCHS


def _check_same_settings(
    study: optuna.Study, *, dataset: str, epochs: int, objectives: Sequence[str]
) -> None:
    stored = study.user_attrs
    wanted = {"dataset": dataset, "max_epochs": epochs, "objectives": list(objectives)}
    diff = {k: (stored[k], v) for k, v in wanted.items() if k in stored and stored[k] != v}
    if diff:
        was = ", ".join(f"{k}={old!r}" for k, (old, _) in diff.items())
        now = ", ".join(f"{k}={new!r}" for k, (_, new) in diff.items())
        raise StudyError(
            f"study {study.study_name!r} in storage was run with {was}, this run asks {now}; "
            "use the same settings to resume, or a new --study-name"
        )


def _sampler(kind: str, *, seed: int, brackets: int = 1) -> optuna.samplers.BaseSampler:
    # under Hyperband each bracket's sampler starts on its own: share the random start-up
    startup = max(3, math.ceil(TPE_STARTUP_TRIALS / brackets))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "gp":
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=startup, warn_independent_sampling=False
        )
    if kind == "qmc":
        return optuna.samplers.QMCSampler(
            seed=seed, scramble=True, warn_independent_sampling=False
        )
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def _pruner(kind: str, *, epochs: int) -> optuna.pruners.BasePruner:
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=REDUCTION_FACTOR
        )
    if kind == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=REDUCTION_FACTOR
        )
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if kind == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _brackets(pruner: str, epochs: int) -> int:
    """Hyperband's number of brackets, as Optuna computes it for min_resource=1; else 1."""
    if pruner != "hyperband":
        return 1
    return math.floor(math.log(epochs, REDUCTION_FACTOR) + 1e-9) + 1


def _build_report(storage_name: str, study_name: str) -> None:
    try:
        from reports import build_report
    except (ImportError, AttributeError):
        log.info("report builder not available: no report written (python -m reports later)")
        return
    try:
        index = build_report(
            storage=storage_name,
            study_names=[study_name],
            benchmarks_dir=Path(".benchmarks"),
            out_dir=Path("reports"),
        )
    except UserError as e:
        log.warning("report not built: %s", e)
        return
    log.info("report: %s", index)


def _setup_logging(*, quiet: bool) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("search", "mnistcore"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
        logger.propagate = False
    # our own line per trial replaces Optuna's; its warnings still show
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for optuna_handler in logging.getLogger("optuna").handlers:
        optuna_handler.addFilter(_HideInterrupt())
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class _HideInterrupt(logging.Filter):
    """Drops Optuna's two warnings (one with a traceback) about a trial failed by Ctrl-C: the
    study reports the interruption itself, and a traceback would suggest a bug."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.interrupted = True
            return False
        return not (self.interrupted and "failed with value" in record.getMessage())


class _TqdmHandler(logging.Handler):
    """Writes log lines above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _epilog() -> str:
    return (
        "Storage: by default every study lives in the journal file\n"
        f"{DEFAULT_STORAGE}; open it with\n"
        f"  optuna-dashboard {DEFAULT_STORAGE}\n"
        f"  optuna studies --storage {DEFAULT_STORAGE}\n"
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


def _objectives(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if names not in (("accuracy",), ("accuracy", "throughput")):
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose accuracy or accuracy,throughput (from {', '.join(OBJECTIVES)})"
        )
    return names


if __name__ == "__main__":
    run_main(main)
