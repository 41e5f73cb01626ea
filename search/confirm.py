"""Confirmation: after the search, retrain the configurations it ranked best with new seeds.

The search's best value is the best of many noisy single runs, so it overstates its
configuration (the winner's curse). ``--confirm TOP:SEEDS`` retrains the TOP distinct
configurations by validation accuracy with SEEDS new seeds each (the trial's seed + 1, + 2,
...), the whole epoch budget, no pruning, and stores each seed's val and test accuracy and
curve (study user attribute ``confirmed:<trial>``, read by studies/confirmation.py). The
winner is the best mean. ``auto`` (the default): 3 seeds, as many of the top 3 as fit in 30 %
of the search's time counting earlier confirmations (the best always); a rerun redoes nothing.

A baseline (``--baseline``: the tutorial's recipe, a recipe file, or none) then trains on the
winner's seeds, data and epoch budget, so the winner can be compared with it paired over seeds
(study user attribute ``baseline``); the plan counts the best configuration's seeds twice.

Every seed trains alone through ``mnistcore.fit``, so a recipe with that seed retrains it
exactly. One process confirms at a time, holding the study's lock: the others on the same
study (workers, machines) then find its records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from mnistcore import Dataset, NonFiniteLossError, TrainConfig, evaluate, fit, preset, read_recipe
from search.artifacts import upload_weights
from search.locks import StudyLock
from studies import trial_record as rec
from studies.confirmation import BUDGET_SHARE, config_key, extract_confirmation, stored_records
from studies.intervals import format_spread, seed_spread

log = logging.getLogger("search")

AUTO = "auto"
AUTO_SEEDS = 3  # the fewest seeds whose t-interval is finite and not absurdly wide
AUTO_MAX_TOP = 3
MIN_SEEDS = 2  # what --timeout may cut the best configuration's seeds to: still a spread
PARENT_CONFIRMS = "SEARCH_PARENT_CONFIRMS"  # env of a --workers child: its parent's --confirm
RUNS = ("seeds", "val", "test", "weights", "curves")  # a record's lists, one item per seed
TUTORIAL = "tutorial"  # --baseline: the PyTorch MNIST tutorial's recipe (mnistcore preset seed)
# the winner's fields a baseline recipe takes, so both train on the same data and budget
SHARED_FIELDS = ("dataset", "synthetic_size", "epochs", "precision")


@dataclass(frozen=True)
class Baseline:
    name: str  # "tutorial" or the recipe file's name
    config: TrainConfig
    seed_seconds: float | None = None  # one seed's training here, if timed (search/deadline.py)


def parse_baseline(text: str) -> Baseline | None:
    """``--baseline``: ``tutorial``, ``none`` or a recipe file (RecipeError, one line, when it
    cannot be read)."""
    if text.strip().lower() in ("none", "0", "off"):
        return None
    if text.strip().lower() == TUTORIAL:
        return Baseline(TUTORIAL, preset("seed"))
    return Baseline(text, read_recipe(text))


@dataclass(frozen=True)
class ConfirmSpec:
    top: int  # configurations to confirm (auto: at most); 0 turns confirmation off
    seeds: int  # new seeds per configuration
    auto: bool = False

    def __str__(self) -> str:
        return AUTO if self.auto else f"{self.top}:{self.seeds}" if self.top else "0"


def parse_confirm(text: str) -> ConfirmSpec:
    """``auto``, ``0`` (off) or ``TOP:SEEDS``; ValueError naming the value otherwise."""
    text = text.strip().lower()
    if text == AUTO:
        return ConfirmSpec(AUTO_MAX_TOP, AUTO_SEEDS, auto=True)
    if text in ("0", "off", "none"):
        return ConfirmSpec(0, 0)
    top, sep, seeds = text.partition(":")
    if not sep or not top.isdigit() or not seeds.isdigit():
        raise ValueError(f"--confirm {text!r}: write TOP:SEEDS (e.g. 3:5), auto or 0")
    spec = ConfirmSpec(int(top), int(seeds))
    if spec.top < 1:
        raise ValueError(f"--confirm {text!r}: TOP must be >= 1; --confirm 0 turns it off")
    if spec.seeds < 2:
        raise ValueError(
            f"--confirm {text!r}: SEEDS must be >= 2, one seed gives no spread (3 or more "
            "give a useful interval)"
        )
    return spec


def ranked_configs(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Complete trials with a recorded configuration, best validation accuracy first, one per
    distinct configuration (the best of its repeats)."""
    complete = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.values and t.user_attrs.get(rec.CONFIG)
    ]
    complete.sort(key=lambda t: (-t.values[0], t.number))
    seen: set[str] = set()
    distinct = []
    for trial in complete:
        key = config_key(trial.user_attrs[rec.CONFIG])
        if key not in seen:
            seen.add(key)
            distinct.append(trial)
    return distinct


@dataclass
class Plan:
    top: list[FrozenTrial]  # the configurations to confirm, best first (each by the trial
    # its record names when it has one, so a record never mixes two trials)
    to_train: dict[int, list[int]]  # trial number -> seeds still to run
    budget: float | None  # auto: seconds allowed in all; None otherwise
    spent: float  # seconds the stored confirmations took
    estimate: float  # seconds the training still to do is expected to take
    short: int  # configurations missing because the study has fewer complete trials than TOP
    cut: list[str]  # what was left out to end before --timeout

    def overrun(self) -> str | None:
        """Why auto goes over its budget (it confirms the best configuration anyway)."""
        if self.budget is None or self.spent + self.estimate <= self.budget:
            return None
        if self.estimate > self.budget:
            return (
                f"the best configuration alone needs more than auto's {self.budget:.0f} s "
                "budget: confirmed anyway (--confirm 0 skips it)"
            )
        return (
            f"earlier runs spent {self.spent:.0f} s of auto's {self.budget:.0f} s budget "
            "confirming: the best configuration is confirmed anyway"
        )


def plan(
    study: optuna.Study,
    spec: ConfirmSpec,
    *,
    seconds: float | None = None,
    baseline: Baseline | None = None,
) -> Plan:
    """What ``spec`` asks of the study now: the top configurations and their missing seeds.

    ``auto``: the best configuration always, each next one while the stored confirmations'
    seconds plus the estimate stay within BUDGET_SHARE of the search's time (one already
    confirmed costs nothing); a seed's estimate is its configuration's search trial seconds.
    ``seconds`` (what --timeout leaves): the best configuration gets the seeds that fit, at
    least MIN_SEEDS in all; another configuration only when all its seeds fit. With a
    ``baseline`` each of the best configuration's seeds also costs a baseline seed (its
    ``seed_seconds``, or as much as the best's when unknown)."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    ranked = ranked_configs(trials)
    records = stored_records(study.user_attrs)
    by_key = {config_key(r["config"]): (n, r) for n, r in records.items()}
    spent = sum(r["seconds"] for r in records.values())
    budget = BUDGET_SHARE * rec.search_seconds(trials) if spec.auto else None
    top: list[FrozenTrial] = []
    to_train: dict[int, list[int]] = {}
    estimate, cut = 0.0, []
    for best in ranked[: spec.top]:
        number, record = by_key.get(config_key(best.user_attrs[rec.CONFIG]), (None, {}))
        trial = by_number.get(number, best) if number is not None else best
        missing = [s for s in confirm_seeds(trial, spec.seeds) if s not in record.get("seeds", [])]
        per_seed = rec.trial_seconds(best) or 0.0
        if baseline is not None and not top:  # the baseline trains on the same seeds
            per_seed += per_seed if baseline.seed_seconds is None else baseline.seed_seconds
        cost = len(missing) * per_seed
        if budget is not None and top and cost and spent + estimate + cost > budget:
            continue  # auto: the best always; the others only within the budget
        if seconds is not None and cost > seconds - estimate:
            if top:
                cut.append(f"trial {trial.number}'s configuration")
                continue
            fits = int(max(seconds, 0) // per_seed) if per_seed else len(missing)
            keep = max(fits, MIN_SEEDS - (spec.seeds - len(missing)))
            if keep < len(missing):
                cut.append(f"{len(missing) - keep} of the best configuration's {spec.seeds} seeds")
                missing = missing[:keep]
                cost = len(missing) * per_seed
        top.append(trial)
        estimate += cost
        if missing:
            to_train[trial.number] = missing
    short = 0 if spec.auto else max(spec.top - len(ranked), 0)
    return Plan(top, to_train, budget, spent, estimate, short, cut)


def confirm_seeds(trial: FrozenTrial, n: int) -> list[int]:
    """The confirmation's seeds: new ones, after the seed the search trial trained with."""
    seed = int(trial.user_attrs.get(rec.SEED, trial.user_attrs[rec.CONFIG].get("seed", 0)))
    return [seed + 1 + i for i in range(n)]


def confirm(
    study: optuna.Study,
    data: Dataset,
    spec: ConfirmSpec,
    *,
    device: str,
    threads: int,
    lock: StudyLock | None = None,
    store: FileSystemArtifactStore | None = None,
    seconds: float | None = None,
    baseline: Baseline | None = None,
) -> float:
    """Confirm the study's top configurations (``plan``, within ``seconds`` when given) holding
    ``lock``, the study's lock, so that a process planning after another finds its records;
    returns the seconds spent training. A record is stored after each seed: a Ctrl-C loses at
    most the seed in progress."""
    if spec.top == 0:
        return 0.0
    with (lock or StudyLock()).hold():
        the_plan = plan(study, spec, seconds=seconds, baseline=baseline)
        if not the_plan.top:
            log.warning("confirmation: no complete trial with a recorded configuration")
            return 0.0
        if the_plan.short:
            log.warning(
                "confirmation: --confirm %s asks for the top %d, the study has %d complete "
                "configuration(s): confirming those",
                spec, spec.top, len(the_plan.top),
            )  # fmt: skip
        start = time.perf_counter()
        if the_plan.to_train:
            _train(study, data, spec, the_plan, device=device, threads=threads, store=store)
        else:
            log.info(
                "confirmation: the top %d already confirmed, nothing to train", len(the_plan.top)
            )
        _store_settings(study, spec, the_plan)
        trained = bool(the_plan.to_train)
        if baseline is not None:
            trained |= _confirm_baseline(study, data, baseline, device=device, threads=threads)
        return time.perf_counter() - start if trained else 0.0


def _train(
    study: optuna.Study,
    data: Dataset,
    spec: ConfirmSpec,
    the_plan: Plan,
    **where: Any,  # device, threads, store
) -> None:
    how = f"--confirm {spec}"
    if the_plan.budget is not None:  # one estimate, said once; the summary gives the measure
        how = f"auto: {len(the_plan.top)} of the top {spec.top}, " + (
            the_plan.overrun() or f"within {BUDGET_SHARE:.0%} of the search's time"
        )
    log.info(
        "confirmation: retraining the top %d configuration(s) with %d new seeds each, about "
        "%.0f s (%s)",
        len(the_plan.top), spec.seeds, the_plan.estimate, how,
    )  # fmt: skip
    if the_plan.cut:
        log.warning(
            "confirmation: to end within --timeout, left out %s", " and ".join(the_plan.cut)
        )
    by_number = {t.number: t for t in the_plan.top}
    for number, seeds in the_plan.to_train.items():
        record = _confirm_one(study, by_number[number], seeds, data, **where)
        val = [v for v in record["val"] if v is not None]
        log.info(
            "confirmed trial %d's configuration: val %s (the search's run: %.2f%%)",
            number, format_spread(seed_spread(val)) if val else "every seed diverged",
            100 * record["search_val"],
        )  # fmt: skip


def _store_settings(study: optuna.Study, spec: ConfirmSpec, the_plan: Plan) -> None:
    study.set_user_attr(
        rec.CONFIRM_SETTINGS,
        {
            "top": len(the_plan.top),
            "asked": spec.top,
            "seeds": spec.seeds,
            "auto": spec.auto,
            "search_seconds": round(rec.search_seconds(study.get_trials(deepcopy=False)), 2),
            **({"cut": " and ".join(the_plan.cut)} if the_plan.cut else {}),
        },
    )


def _confirm_one(
    study: optuna.Study,
    trial: FrozenTrial,
    seeds: list[int],
    data: Dataset,
    *,
    device: str,
    threads: int,
    store: FileSystemArtifactStore | None,
) -> dict[str, Any]:
    """Train ``trial``'s configuration alone with each of ``seeds``; merge each seed's results
    into its stored record (one written before "curves" existed gets None curves) and store it."""
    key = rec.CONFIRMED_PREFIX + str(trial.number)  # plan() gave the record's own trial
    old = stored_records(study.user_attrs).get(trial.number, {})
    done = len(old.get("seeds", []))
    record = {
        "trial": trial.number,
        "config": trial.user_attrs[rec.CONFIG],
        "search_val": trial.values[0],
        "search_test": trial.user_attrs.get(rec.TEST_ACCURACY),
        **{k: (list(old.get(k, [])) + [None] * done)[:done] for k in RUNS},
        "diverged": list(old.get("diverged", [])),
        "seconds": float(old.get("seconds", 0.0)),
        "n_val": data.sizes["val"],
        "n_test": data.sizes["test"],
    }
    base = TrainConfig(**trial.user_attrs[rec.CONFIG]).replace(device=device, threads=threads)
    for seed in seeds:
        clock = time.perf_counter()
        curve, model = _train_seed(base.replace(seed=seed), data)
        if model is None:
            record["diverged"].append(seed)
        weights = None
        if model is not None and store is not None:
            name = f"confirm-trial-{trial.number}-seed-{seed}-weights.pt"
            what = f"trial {trial.number}'s seed {seed}"
            weights = upload_weights(store, model, name, owner=study, what=what)
        runs = {**_run(seed, curve, model, data), "weights": weights}
        for k in RUNS:
            record[k].append(runs[k])
        record["seconds"] = round(record["seconds"] + time.perf_counter() - clock, 3)
        study.set_user_attr(key, record)  # after each seed: a Ctrl-C keeps the seeds done
    return record


def _train_seed(config: TrainConfig, data: Dataset) -> tuple[list[float], nn.Module | None]:
    """One confirmation run: each epoch's validation accuracy and the model (None: diverged)."""
    curve, model = [], None
    try:
        for epoch in fit(config, data):
            curve.append(epoch.val_accuracy)
            model = epoch.model
    except NonFiniteLossError:
        return curve, None
    return curve, model


def _run(seed: int, curve: list[float], model: nn.Module | None, data: Dataset) -> dict:
    """One seed's entries of a record (val and test None when it diverged)."""
    trained = model is not None
    return {
        "seeds": seed,
        "val": curve[-1] if trained else None,
        "test": evaluate(model, data.test).accuracy if trained else None,
        "curves": curve,
    }


def _confirm_baseline(
    study: optuna.Study, data: Dataset, baseline: Baseline, *, device: str, threads: int
) -> bool:
    """Train ``baseline`` on the confirmed winner's seeds it has not run yet, with the winner's
    data and epoch budget; store its record after each seed. True when it trained."""
    confirmation = extract_confirmation(study.user_attrs, study.get_trials(deepcopy=False))
    if confirmation is None or confirmation.winner is None:
        return False
    winner = confirmation.winner
    shared = {k: winner.config[k] for k in SHARED_FIELDS if k in winner.config}
    config = baseline.config.replace(**shared, device=device, threads=threads)
    old = study.user_attrs.get(rec.BASELINE)
    same = isinstance(old, dict) and isinstance(old.get("config"), dict)
    if not (same and config_key(old["config"]) == config_key(config.to_dict())):
        old = {}  # another baseline recipe, or none yet: start its record afresh
    record = {
        "name": baseline.name,
        "config": config.to_dict(),
        **{k: list(old.get(k, [])) for k in ("seeds", "val", "test", "curves")},
        "seconds": float(old.get("seconds", 0.0)),
        "n_val": data.sizes["val"],
        "n_test": data.sizes["test"],
    }
    seeds = [s for s in winner.seeds if s not in record["seeds"]]
    if seeds:
        log.info(
            "baseline: training %s on the winner's seeds %s",
            baseline.name, ", ".join(map(str, seeds)),
        )  # fmt: skip
    for seed in seeds:
        clock = time.perf_counter()
        curve, model = _train_seed(config.replace(seed=seed), data)
        for k, value in _run(seed, curve, model, data).items():
            record[k].append(value)
        record["seconds"] = round(record["seconds"] + time.perf_counter() - clock, 3)
        study.set_user_attr(rec.BASELINE, record)  # after each seed, as the configurations
    return bool(seeds)
