"""Find a recipe that reaches a target accuracy fast: an Optuna study whose objective is the
training seconds until the VALIDATION accuracy reaches the target plus a margin.

    python -m bench.tune_time_to_accuracy --dataset fashion-mnist --target 0.89 \\
        --n-trials 200 --timeout 720 --threads 1 --out bench/recipes/fashion-mnist-89.toml
    python -m bench.tune_time_to_accuracy --dataset mnist-5k --target 0.97 --max-epochs 12 \\
        --n-trials 200 --timeout 240 --threads 1 --out bench/recipes/mnist-5k-97.toml

(the commands that made the recipes kept in bench/recipes/: about 13 and 5 minutes on the
2-core CPU, study and confirmation).

The benchmark (bench/test_time_to_accuracy.py) measures recipes against the TEST accuracy; the
study never sees the test split. The two splits differ, so the study asks for ``target + margin``
on the validation split (DEFAULT_MARGINS), from val - test measured here at the epoch ends of
random configurations of this space (seeds 0-9, outside any study):

- Fashion-MNIST (6,000 validation images): +0.49 points on average (sd 0.34, 0.06 to 1.40) over
  23 checkpoints above 85 % of 12 configurations: validation runs above test. Margin 0.008
  (mean + 1 sd), so the median seed's test accuracy lands above the target.
- mnist-5k (400 validation images, one image = 0.25 points): -0.77 points (sd 0.94, -2.3 to
  +1.8) over 47 checkpoints above 95 % of 10 configurations: validation runs below test. Margin 0:
  the test accuracy then lands above the target by about the gap, room for the seeds' spread.

Each trial trains one configuration (seed 0) with ``fit`` and checks the validation accuracy after
each epoch (``bench.time_to_accuracy.run_to_target``, the loop the benchmark runs). Its value:

- reached: the training seconds up to that epoch (evaluation excluded);
- not reached within its epochs (10 for a constant lr): NOT_REACHED_S plus NOT_REACHED_S per unit
  of accuracy it fell short, so worse than any trial that reached it, ordered by how close it got;
- pruned: it had trained as long as the best trial so far without reaching the target (it cannot
  win; stopped between epochs).

Seconds are wall-clock training time on a machine others may share: a busy neighbour slows
a trial, and the study cannot tell that from a slow configuration. Measured here with other
programs on the two cores: 8,192 images took 5-10 s with two torch threads, 0.6-0.9 s with one;
hence ``--threads 1`` on a shared machine (the benchmark runs on every core: its seconds are
lower). The best few trials are trained again on ``--confirm-seeds`` seeds and the recipe is the
one with the lowest median; each trial records the load average it ran under.

The recipe is written with ``mnistcore.write_recipe``; its header holds this command, the date,
the machine and the confirmed seconds and validation accuracies.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
import torch

from bench.time_to_accuracy import SeedRun, median_seconds, run_to_target
from mnistcore import (
    DATASETS,
    Dataset,
    NonFiniteLossError,
    TrainConfig,
    UserError,
    configure_threads,
    device_name,
    load_dataset,
    resolve_device,
    write_recipe,
)

COMMAND = "python -m bench.tune_time_to_accuracy"
# validation accuracy asked for = target + margin, from the val - test gap measured here over
# random configurations of this space (the module docstring)
DEFAULT_MARGINS = {"fashion-mnist": 0.008, "mnist-5k": 0.0}
NOT_REACHED_S = 1000.0  # a trial that does not reach the target scores at least this
# start points: the tutorial's recipe, and a one-block net with batch norm and one-cycle
START_POINTS = (
    {
        "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-6, "schedule": "constant", "epochs": 1,
        "width": 10, "depth": 1, "hidden": 128, "batch_norm": False, "batch_size": 64,
    },
    {
        "lr": 0.2, "momentum": 0.9, "weight_decay": 1e-6, "schedule": "onecycle", "epochs": 2,
        "width": 16, "depth": 1, "hidden": 128, "batch_norm": True, "batch_size": 128,
    },
)  # fmt: skip
BATCH_SIZES = (32, 64, 128, 256, 512)


def suggest(trial: optuna.trial.BaseTrial, base: TrainConfig, max_epochs: int = 4) -> TrainConfig:
    """The search space: one ``TrainConfig`` per trial (``base`` gives the other fields).

    ``epochs`` is the planned schedule length (a constant lr ignores it and may train up to
    10 epochs); ``weight_decay`` from 1e-6 (as good as none) to 1e-2."""
    return base.replace(
        lr=trial.suggest_float("lr", 0.005, 1.0, log=True),
        momentum=trial.suggest_float("momentum", 0.5, 0.98),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        schedule=trial.suggest_categorical("schedule", ["onecycle", "cosine", "constant"]),
        epochs=trial.suggest_int("epochs", 1, max_epochs),
        width=trial.suggest_int("width", 4, 32, log=True),
        depth=trial.suggest_int("depth", 1, 2),
        hidden=trial.suggest_int("hidden", 32, 256, log=True),
        batch_norm=trial.suggest_categorical("batch_norm", [True, False]),
        batch_size=trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
    )


def trial_value(run: SeedRun, val_target: float) -> float:
    """A finished trial's value: its seconds when it reached ``val_target``, else the penalty."""
    if run.reached:
        return run.seconds
    best = max(run.accuracies, default=0.0)
    return NOT_REACHED_S * (1 + max(val_target - best, 0.0))


@dataclass(frozen=True)
class Settings:
    dataset: str
    target: float  # test accuracy the recipe is for
    margin: float  # asked of the validation split on top of target
    n_trials: int
    timeout: float  # seconds for the study (0: none); the confirmation comes on top
    seed: int  # the sampler's
    max_epochs: int
    confirm_top: int
    confirm_seeds: int
    threads: int
    device: str
    data_dir: str
    out: Path

    @property
    def val_target(self) -> float:
        return self.target + self.margin


class Objective:
    """One trial: train ``suggest``'s configuration until the validation target (seed 0)."""

    def __init__(self, settings: Settings, data: Dataset, base: TrainConfig) -> None:
        self.settings, self.data, self.base = settings, data, base
        self.best = math.inf  # seconds of the best trial that reached the target so far

    def __call__(self, trial: optuna.trial.Trial) -> float:
        config = suggest(trial, self.base, self.settings.max_epochs)
        trial.set_user_attr("load_before", os.getloadavg()[0])
        try:
            run = run_to_target(
                config, self.data, self.settings.val_target, split="val", max_seconds=self.best
            )
        except NonFiniteLossError as e:
            trial.set_user_attr("diverged", str(e))
            return NOT_REACHED_S * 2
        trial.set_user_attr("seconds", run.seconds)
        trial.set_user_attr("epochs_trained", run.epochs)
        trial.set_user_attr("val_accuracy", list(run.accuracies))
        trial.set_user_attr("reached", run.reached)
        trial.set_user_attr("load_after", os.getloadavg()[0])
        if run.gave_up:
            raise optuna.TrialPruned(f"{run.seconds:.1f} s without reaching the target")
        if run.reached:
            self.best = min(self.best, run.seconds)
        return trial_value(run, self.settings.val_target)


def print_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    attrs, p = trial.user_attrs, trial.params
    curve = " ".join(f"{a:.4f}" for a in attrs.get("val_accuracy", []))
    if trial.state == optuna.trial.TrialState.PRUNED:
        outcome = f"pruned at {attrs.get('seconds', 0):.1f} s"
    elif attrs.get("reached"):
        outcome = f"{trial.value:.1f} s"
    else:
        outcome = "diverged" if "diverged" in attrs else "not reached"
    print(
        f"trial {trial.number:3d} {outcome:<16} val {curve:<30} "
        f"{p['schedule']} lr={p['lr']:.3g} m={p['momentum']:.2f} wd={p['weight_decay']:.1e} "
        f"ep={p['epochs']} w={p['width']} d={p['depth']} h={p['hidden']} "
        f"bn={int(p['batch_norm'])} bs={p['batch_size']} load={attrs.get('load_before', 0):.1f}",
        flush=True,
    )


def confirm(
    settings: Settings, data: Dataset, candidates: list[TrainConfig]
) -> list[tuple[TrainConfig, list[SeedRun]]]:
    """Train each candidate on seeds 0..confirm_seeds-1 to the validation target."""
    results = []
    for config in candidates:
        runs = [
            _confirm_run(config.replace(seed=s), data, settings.val_target)
            for s in range(settings.confirm_seeds)
        ]
        median = median_seconds(runs)
        print(
            f"confirm {describe(config)}: "
            + ", ".join(f"{r.seconds:.1f} s{'' if r.reached else ' (not reached)'}" for r in runs)
            + (f"; median {median:.1f} s" if median is not None else "; median not reached"),
            flush=True,
        )
        results.append((config, runs))
    return results


def _confirm_run(config: TrainConfig, data: Dataset, target: float) -> SeedRun:
    """One confirmation seed; a seed that diverges did not reach the target (the study's
    other results stay)."""
    try:
        return run_to_target(config, data, target, split="val")
    except NonFiniteLossError:
        return SeedRun(config.seed, False, NOT_REACHED_S * 2, config.epochs, ())


def describe(config: TrainConfig) -> str:
    return (
        f"{config.schedule} lr={config.lr:.3g} momentum={config.momentum:.3g} "
        f"wd={config.weight_decay:.2g} epochs={config.epochs} width={config.width} "
        f"depth={config.depth} hidden={config.hidden} batch_norm={config.batch_norm} "
        f"batch={config.batch_size}"
    )


def run(settings: Settings, argv: list[str]) -> int:
    device = resolve_device(settings.device)
    threads = configure_threads(settings.threads)
    data = load_dataset(settings.dataset, data_dir=settings.data_dir)
    base = TrainConfig(dataset=data.name, device=settings.device, threads=settings.threads)
    print(f"data: {data.describe()}", flush=True)
    print(
        f"objective: training seconds until validation accuracy >= {settings.val_target:.4f} "
        f"(target {settings.target:g} + margin {settings.margin:g}); "
        f"{device_name(device)}, {threads} torch threads",
        flush=True,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=settings.seed)
    )
    for point in START_POINTS:
        study.enqueue_trial({**point, "epochs": min(point["epochs"], settings.max_epochs)})
    load_before = os.getloadavg()
    started = time.perf_counter()
    study.optimize(
        Objective(settings, data, base),
        n_trials=settings.n_trials,
        timeout=settings.timeout or None,
        callbacks=[print_trial],
    )
    study_seconds = time.perf_counter() - started
    trials = study.get_trials(deepcopy=False)
    reached = sorted(
        (t for t in trials if t.user_attrs.get("reached") and t.value is not None),
        key=lambda t: t.value,
    )
    states = {s: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    counts = (
        f"{len(trials)} trials in {study_seconds:.0f} s: {len(reached)} reached the target, "
        f"{states[optuna.trial.TrialState.COMPLETE] - len(reached)} did not, "
        f"{states[optuna.trial.TrialState.PRUNED]} pruned (slower than the best)"
    )
    print(counts, flush=True)
    if not reached:
        print(f"no trial reached validation accuracy {settings.val_target:.4f}", file=sys.stderr)
        return 1
    candidates, seen = [], set()
    for t in reached:  # the best distinct configurations
        config = suggest(optuna.trial.FixedTrial(t.params), base, settings.max_epochs)
        if config not in seen:
            seen.add(config)
            candidates.append(config)
        if len(candidates) == settings.confirm_top:
            break
    confirmed = [
        (config, runs, median_seconds(runs))
        for config, runs in confirm(settings, data, candidates)
    ]
    confirmed = [c for c in confirmed if c[2] is not None]
    if not confirmed:
        print(
            f"none of the best {len(candidates)} trials reached validation accuracy "
            f"{settings.val_target:.4f} on most of {settings.confirm_seeds} seeds",
            file=sys.stderr,
        )
        return 1
    config, runs, median = min(confirmed, key=lambda c: c[2])
    load_after = os.getloadavg()
    header = [
        f"Time to {settings.target:.0%} test accuracy on {data.name}: tuned by an Optuna study "
        "(TPE) minimizing the training seconds",
        f"until the VALIDATION accuracy reaches {settings.val_target:.4f} (target "
        f"{settings.target:g} + margin {settings.margin:g}, the val-test gap); "
        "never tuned on test.",
        f"made by: {COMMAND} {shlex.join(argv)}",
        f"date: {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; machine: {device_name(device)}, "
        f"{threads} torch threads, torch {torch.__version__}",
        f"study: {counts}; best trial {reached[0].number}: {reached[0].value:.1f} s; "
        f"trial 0, the tutorial's recipe: {_outcome(trials[0])}",
        f"confirmed on seeds 0-{settings.confirm_seeds - 1} (validation): "
        + ", ".join(
            f"{r.seconds:.1f} s / {r.epochs} epochs / val {r.accuracy:.4f}"
            + ("" if r.reached else " (not reached)")
            for r in runs
        )
        + f"; median {median:.1f} s",
        f"load average (1, 5, 15 min) before the study {_load(load_before)}, at the end "
        f"{_load(load_after)}: seconds on a shared machine carry its neighbours' noise",
    ]
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    write_recipe(settings.out, config.replace(seed=0, device="auto", threads=0), header)
    print(f"recipe: {describe(config)}; median {median:.1f} s to validation target", flush=True)
    print(f"wrote {settings.out}", flush=True)
    return 0


def _outcome(trial: optuna.trial.FrozenTrial) -> str:
    seconds = trial.user_attrs.get("seconds")
    if seconds is None:
        return "diverged" if "diverged" in trial.user_attrs else str(trial.state.name).lower()
    if trial.user_attrs.get("reached"):
        return f"{seconds:.1f} s"
    return f"not reached in {seconds:.1f} s ({trial.user_attrs.get('epochs_trained')} epochs)"


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def parse_args(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Tune a recipe for time to a target accuracy (on the validation split) "
        "and write it as a TOML recipe.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    parser.add_argument("--target", type=float, required=True, help="test accuracy, e.g. 0.89")
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        help="asked of the validation split above --target (default: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_MARGINS.items())
        + ", else 0)",
    )
    parser.add_argument("--n-trials", type=int, default=200, help="trials at most")
    parser.add_argument(
        "--timeout", type=float, default=720, help="seconds for the study; 0: no limit"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument(
        "--max-epochs", type=int, default=4, help="longest planned schedule searched"
    )
    parser.add_argument("--confirm-top", type=int, default=3, help="best trials retrained")
    parser.add_argument("--confirm-seeds", type=int, default=3, help="seeds each is retrained on")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: all cores")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", type=Path, required=True, help="the recipe file to write")
    a = parser.parse_args(argv)
    margin = DEFAULT_MARGINS.get(a.dataset, 0.0) if a.margin is None else a.margin
    problems = [
        (not 0 < a.target < 1, f"--target must be in (0, 1), got {a.target}"),
        (
            not 0 < a.target + margin < 1,
            f"--margin must keep target + margin in (0, 1), got {margin}",
        ),
        (a.n_trials < 1, f"--n-trials must be >= 1, got {a.n_trials}"),
        (a.timeout < 0, f"--timeout must be >= 0, got {a.timeout}"),
        (a.max_epochs < 1, f"--max-epochs must be >= 1, got {a.max_epochs}"),
        (a.confirm_top < 1, f"--confirm-top must be >= 1, got {a.confirm_top}"),
        (a.confirm_seeds < 1, f"--confirm-seeds must be >= 1, got {a.confirm_seeds}"),
        (a.threads < 0, f"--threads must be >= 0, got {a.threads}"),
        (a.out.suffix != ".toml", f"--out must name a .toml file, got {a.out}"),
    ]
    for bad, message in problems:
        if bad:
            parser.exit(2, f"{COMMAND}: {message}\n")
    return Settings(
        a.dataset, a.target, margin, a.n_trials, a.timeout, a.seed, a.max_epochs,
        a.confirm_top, a.confirm_seeds, a.threads, a.device, a.data_dir, a.out,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = parse_args(argv)
    try:
        return run(settings, argv)
    except UserError as e:
        print(f"{COMMAND}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{COMMAND}: interrupted, no recipe written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
