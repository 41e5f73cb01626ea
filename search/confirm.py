"""Confirmation: after the search, retrain the configurations it ranked best with new seeds.

The search's best value is the best of many noisy single runs (on mnist-5k's 400 validation
images one image is 0.25 %), so it overstates its configuration: the winner's curse.
``--confirm TOP:SEEDS`` retrains the TOP distinct configurations by validation accuracy with
SEEDS new seeds each (the search trial's seed + 1, + 2, ...), for the whole epoch budget, no
pruning, and stores per configuration each seed's val and test accuracy (study user attribute
``confirmed:<trial>``; reports/confirmation.py reads it). The confirmed winner is the best mean.

``--confirm auto`` (the default) takes SEEDS = 3 and as many of the top 3 configurations as fit
in 30 % of the search's time, counting what earlier runs spent confirming (the best one always),
estimating each from its search trial's seconds. Configurations already confirmed with enough
seeds are not trained again: a rerun redoes nothing, a resumed study confirms only
configurations new to the top.

Seeds train one at a time with ``--population 1``; with ``--population K`` up to K seeds of a
configuration train as one fused population, whose members share one batch order (seeded by
the first), so their spread then covers the initial weights and dropout, not the order.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState

from mnistcore import Dataset, TrainConfig, evaluate, fit_population
from search.artifacts import upload_weights
from studies import trial_record as rec
from studies.confirmation import BUDGET_SHARE, config_key, stored_records
from studies.intervals import format_spread, seed_spread

log = logging.getLogger("search")

AUTO = "auto"
AUTO_SEEDS = 3  # the fewest seeds whose t-interval is finite and not absurdly wide
AUTO_MAX_TOP = 3


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


def search_seconds(trials: list[FrozenTrial]) -> float:
    """Seconds during which the study's finished trials were running: the union of their
    start-end spans, so trials trained together (a population, parallel workers) count once."""
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    spans = sorted(
        (t.datetime_start, t.datetime_complete)
        for t in trials
        if t.state in done and t.datetime_start and t.datetime_complete
    )
    total, end = 0.0, None
    for start, stop in spans:
        if end is not None and start < end:  # overlaps the previous span: count the rest
            start = end
        if stop > start:
            total += (stop - start).total_seconds()
            end = stop
    return total


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


def plan(study: optuna.Study, spec: ConfirmSpec, *, population: int = 1) -> Plan:
    """What ``spec`` asks of the study now: the top configurations and their missing seeds.

    ``auto``: the best configuration always, the next ones while the stored confirmations'
    seconds plus the estimate stay within BUDGET_SHARE of the search's time; a configuration's
    estimate is its search trial's seconds per run of ``population`` seeds."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    ranked = ranked_configs(trials)
    records = stored_records(study.user_attrs)
    by_key = {config_key(r["config"]): (n, r) for n, r in records.items()}
    spent = sum(r["seconds"] for r in records.values())
    budget = BUDGET_SHARE * search_seconds(trials) if spec.auto else None
    top: list[FrozenTrial] = []
    to_train: dict[int, list[int]] = {}
    estimate = 0.0
    for best in ranked[: spec.top]:
        number, record = by_key.get(config_key(best.user_attrs[rec.CONFIG]), (None, {}))
        trial = by_number.get(number, best) if number is not None else best
        missing = [s for s in confirm_seeds(trial, spec.seeds) if s not in record.get("seeds", [])]
        runs = math.ceil(len(missing) / max(population, 1))
        cost = runs * (best.duration.total_seconds() if best.duration else 0.0)
        if budget is not None and top and spent + estimate + cost > budget:
            break  # auto: the best always; the others only within the budget
        top.append(trial)
        estimate += cost
        if missing:
            to_train[trial.number] = missing
    short = 0 if spec.auto else max(spec.top - len(ranked), 0)
    return Plan(top, to_train, budget, spent, estimate, short)


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
    population: int = 1,
    store: FileSystemArtifactStore | None = None,
) -> float:
    """Confirm the study's top configurations (``plan``); returns the wall seconds spent.
    A configuration's record is stored after each run of seeds, so a Ctrl-C loses at most the
    run in progress."""
    if spec.top == 0:
        return 0.0
    the_plan = plan(study, spec, population=population)
    if not the_plan.top:
        log.warning("confirmation: no complete trial with a recorded configuration to confirm")
        return 0.0
    if the_plan.short:
        log.warning(
            "confirmation: --confirm %s asks for the top %d, the study has %d complete "
            "configuration(s): confirming those",
            spec, spec.top, len(the_plan.top),
        )  # fmt: skip
    if not the_plan.to_train:
        log.info("confirmation: the top %d already confirmed, nothing to train", len(the_plan.top))
        _store_settings(study, spec, the_plan)
        return 0.0
    how = (
        f"auto: {len(the_plan.top)} of the top {spec.top} fit in {BUDGET_SHARE:.0%} of the "
        f"search's {the_plan.budget / BUDGET_SHARE:.0f} s"
        if the_plan.budget is not None
        else f"--confirm {spec}"
    )
    log.info(
        "confirmation: retraining the top %d configuration(s) with %d new seeds each (%s; "
        "about %.0f s)",
        len(the_plan.top), spec.seeds, how, the_plan.estimate,
    )  # fmt: skip
    if the_plan.budget is not None and the_plan.spent + the_plan.estimate > the_plan.budget:
        log.info(
            "confirmation: the best configuration alone needs about %.0f s, over auto's %.0f s "
            "budget; it is confirmed anyway (--confirm 0 skips confirmation)",
            the_plan.estimate, the_plan.budget,
        )  # fmt: skip
    start = time.perf_counter()
    by_number = {t.number: t for t in the_plan.top}
    for number, seeds in the_plan.to_train.items():
        record = _confirm_one(
            study, by_number[number], seeds, data,
            device=device, threads=threads, population=population, store=store,
        )  # fmt: skip
        val = [v for v in record["val"] if v is not None]
        log.info(
            "confirmed trial %d's configuration: val %s (the search's run: %.2f%%)",
            number, format_spread(seed_spread(val)) if val else "every seed diverged",
            100 * record["search_val"],
        )  # fmt: skip
    spent = time.perf_counter() - start
    _store_settings(study, spec, the_plan)
    return spent


def _store_settings(study: optuna.Study, spec: ConfirmSpec, the_plan: Plan) -> None:
    study.set_user_attr(
        rec.CONFIRM_SETTINGS,
        {
            "top": len(the_plan.top),
            "asked": spec.top,
            "seeds": spec.seeds,
            "auto": spec.auto,
            "search_seconds": round(search_seconds(study.get_trials(deepcopy=False)), 2),
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
    population: int,
    store: FileSystemArtifactStore | None,
) -> dict[str, Any]:
    """Train ``trial``'s configuration with each of ``seeds``, merge the results into its
    stored record and store it."""
    key = rec.CONFIRMED_PREFIX + str(trial.number)  # plan() gave the record's own trial
    record = stored_records(study.user_attrs).get(trial.number, {})
    record = {
        "trial": trial.number,
        "config": trial.user_attrs[rec.CONFIG],
        "search_val": trial.values[0],
        "search_test": trial.user_attrs.get(rec.TEST_ACCURACY),
        "seeds": list(record.get("seeds", [])),
        "val": list(record.get("val", [])),
        "test": list(record.get("test", [])),
        "weights": list(record.get("weights", [])),
        "diverged": list(record.get("diverged", [])),
        "seconds": float(record.get("seconds", 0.0)),
        "n_val": data.sizes["val"],
        "n_test": data.sizes["test"],
    }
    base = TrainConfig(**trial.user_attrs[rec.CONFIG]).replace(device=device, threads=threads)
    for start in range(0, len(seeds), max(population, 1)):
        chunk = seeds[start : start + max(population, 1)]
        configs = [base.replace(seed=s) for s in chunk]
        clock = time.perf_counter()
        last = None
        for pop, results in fit_population(configs, data):
            last = pop, {r.member: r for r in results}
        assert last is not None  # epochs >= 1
        pop, results = last
        for member, seed in enumerate(chunk):
            result = results.get(member)
            record["seeds"].append(seed)
            if member in pop.diverged or result is None or math.isnan(result.val_accuracy):
                record["val"].append(None)
                record["test"].append(None)
                record["weights"].append(None)
                record["diverged"].append(seed)
                continue
            model = pop.member_model(member)
            test = evaluate(model, data.to(pop.device).test)
            record["val"].append(result.val_accuracy)
            record["test"].append(test.accuracy)
            record["weights"].append(
                upload_weights(
                    store,
                    model,
                    f"confirm-trial-{trial.number}-seed-{seed}-weights.pt",
                    owner=study,
                )  # fmt: skip
                if store is not None
                else None
            )
        record["seconds"] = round(record["seconds"] + time.perf_counter() - clock, 3)
        study.set_user_attr(key, record)  # after each run: a Ctrl-C keeps the seeds done
    return record
