"""A search-strategy comparison read back from its studies (``python -m search.compare`` writes
them): each strategy ran the same study on several seeds with the same wall budget. As Optuna's
own benchmarks (kurobako) compare samplers: best-so-far against budget, a band over seeds, mean
ranks; nothing here is stored apart from the trials, so a stopped comparison reads as far as
it got.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from studies import trial_record as rec
from studies.intervals import seed_spread

# study user attributes a comparison sets on each of its studies
COMPARISON = "comparison"  # the comparison's name
STRATEGY = "strategy"  # the strategy's name
STRATEGY_FLAGS = "strategy_flags"  # the search.study flags it adds to the common ones
BUDGET = "budget_seconds"  # wall seconds each (strategy, seed) may search
DONE = "budget_done"  # True once a run used its budget (a rerun skips it)
AXES = {"seconds": "wall seconds of search", "epochs": "epochs trained (all trials)"}
BOOTSTRAP = 2000  # resamples of the seeds for a band


@dataclass(frozen=True)
class Run:
    """One strategy on one seed: after each finished trial (in the order they ended), the wall
    seconds since the first trial started, the epochs trained so far and the best validation
    accuracy of a complete trial so far (NaN before the first)."""

    strategy: str
    flags: str
    seed: int
    seconds: np.ndarray
    epochs: np.ndarray
    best: np.ndarray
    test: float | None  # test accuracy of the best complete trial (the search's answer)
    trials: int
    done: bool
    budget: float | None  # wall seconds it was given

    def at(self, axis: str, grid: np.ndarray) -> np.ndarray:
        """Best-so-far at each budget of ``grid`` on ``axis`` (seconds or epochs)."""
        x = self.seconds if axis == "seconds" else self.epochs
        index = np.searchsorted(x, grid, side="right") - 1
        values = np.where(index >= 0, self.best[np.clip(index, 0, None)], np.nan)
        return values if len(x) else np.full(len(grid), np.nan)


def comparison_names(storage: optuna.storages.BaseStorage) -> list[str]:
    names = {s.user_attrs.get(COMPARISON) for s in storage.get_all_studies()}
    return sorted(n for n in names if isinstance(n, str))


def read_runs(storage: optuna.storages.BaseStorage, comparison: str) -> list[Run]:
    runs = []
    for summary in storage.get_all_studies():
        if summary.user_attrs.get(COMPARISON) != comparison:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        runs.append(run_of(study.trials, study.user_attrs))
    return sorted(runs, key=lambda r: (r.strategy, r.seed))


def run_of(trials: Sequence[optuna.trial.FrozenTrial], attrs: dict) -> Run:
    spans = {t.number: span for t in trials if (span := rec.trial_span(t)) is not None}
    ended = sorted((t for t in trials if t.number in spans), key=lambda t: spans[t.number][1])
    first = min((s for s, _ in spans.values()), default=None)
    seconds, epochs, best = [], [], []
    total, top, answer = 0.0, np.nan, None
    for t in ended:
        total += rec.as_number(t.user_attrs.get(rec.EPOCHS_RUN)) or 0.0
        if t.state == TrialState.COMPLETE and t.values and not t.values[0] <= top:
            top, answer = t.values[0], t
        seconds.append((spans[t.number][1] - first).total_seconds())
        epochs.append(total)
        best.append(top)
    test = rec.as_number(answer.user_attrs.get(rec.TEST_ACCURACY)) if answer else None
    return Run(
        strategy=str(attrs.get(STRATEGY, "?")),
        flags=str(attrs.get(STRATEGY_FLAGS, "")),
        seed=int(attrs.get(rec.SEED, 0)),
        seconds=np.array(seconds),
        epochs=np.array(epochs),
        best=np.array(best, dtype=float),
        test=test,
        trials=len(ended),
        done=bool(attrs.get(DONE)),
        budget=rec.as_number(attrs.get(BUDGET)),
    )


def strategies(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(r.strategy for r in runs))


def grid_of(runs: Sequence[Run], axis: str, points: int = 60) -> np.ndarray:
    ends = [(r.seconds if axis == "seconds" else r.epochs)[-1] for r in runs if r.trials]
    return np.linspace(0.0, max(ends, default=1.0), points)


def band(
    runs: Sequence[Run], axis: str, grid: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean best-so-far over the seeds of one strategy and its 95 % bootstrap band (resampling
    seeds); NaN where some seed has no complete trial yet."""
    values = np.array([r.at(axis, grid) for r in runs])  # seeds x grid
    mean = values.mean(axis=0)
    picks = np.random.default_rng(seed).integers(0, len(runs), (BOOTSTRAP, len(runs)))
    means = values[picks].mean(axis=1)  # resamples x grid
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return mean, low, high


def mean_ranks(runs: Sequence[Run], axis: str, grid: np.ndarray) -> dict[str, np.ndarray]:
    """Each strategy's rank (1 = best; ties share the mean rank; no value yet ranks last) at
    each budget, averaged over the seeds every strategy ran."""
    names = strategies(runs)
    by = {(r.strategy, r.seed): r for r in runs}
    seeds = sorted(set.intersection(*({r.seed for r in runs if r.strategy == n} for n in names)))
    ranks = {n: np.zeros(len(grid)) for n in names}
    for seed in seeds:
        table = pd.DataFrame({n: by[n, seed].at(axis, grid) for n in names})
        ranked = table.rank(axis=1, ascending=False, method="average", na_option="bottom")
        for n in names:
            ranks[n] += ranked[n].to_numpy() / len(seeds)
    return ranks if seeds else {}


def summary_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per strategy: its flags, seeds, trials, best val and the winners' test accuracy
    (mean and 95 % t-interval over seeds), and the mean rank at the full budget."""
    names = strategies(runs)
    final = mean_ranks(runs, "seconds", grid_of(runs, "seconds"))
    rows = []
    for name in names:
        mine = [r for r in runs if r.strategy == name]
        tests = [r.test for r in mine if r.test is not None]
        spread = seed_spread(tests) if tests else None
        interval = spread.interval if spread else None
        best = [r.best[-1] for r in mine if r.trials and not np.isnan(r.best[-1])]
        rows.append({
            "strategy": name,
            "flags": mine[0].flags or "(the defaults)",
            "seeds": len(mine),
            "trials (median)": float(np.median([r.trials for r in mine])),
            "best val accuracy (mean)": float(np.mean(best)) if best else None,
            "winner's test accuracy (mean)": spread.mean if spread else None,
            "test accuracy 95 % low": interval.low if interval else None,
            "test accuracy 95 % high": interval.high if interval else None,
            "mean rank at the budget": float(final[name][-1]) if final else None,
        })  # fmt: skip
    return pd.DataFrame(rows)
