"""The confirmation's extract: the configurations the search ranked best, retrained with new
seeds (search/confirm.py stores them as study user attributes), as plain data. The winner has
the best mean validation accuracy over its seeds; the winner's curse is the search's best value
(one run, the best of many noisy ones) minus that configuration's confirmed mean; the baseline
(by default the tutorial's recipe) is retrained on the winner's seeds and compared seed by seed.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from optuna.trial import FrozenTrial, TrialState

from studies import trial_record as rec
from studies.intervals import Spread, seed_spread, t_spread

# fields that say where a run trained, not what: configurations differing only there are one
MACHINE_FIELDS = ("seed", "device", "threads")
# --confirm auto: the confirmation's estimated cost, over the search's time (search/confirm.py)
BUDGET_SHARE = 0.30
# a stored record's shape: the types of some values, the finite numbers, the lists of one item
# per seed (search/confirm.py writes them)
SHAPES = {
    "confirmed": ({"config": dict, "trial": int, "diverged": list}, ("search_val", "seconds"),
                  ("seeds", "val", "test", "weights")),
    "baseline": ({"config": dict, "name": str}, ("seconds",), ("seeds", "val", "test")),
}  # fmt: skip


class ConfirmedConfig(NamedTuple):
    trial: int  # the search trial that proposed the configuration
    config: dict[str, Any]  # its whole TrainConfig (the search trial's seed)
    search_val: float  # the search trial's validation accuracy (one run)
    search_test: float | None
    seeds: tuple[int, ...]  # the confirmation's seeds, one run each
    val: Spread | None  # over the seeds that did not diverge; None when every seed diverged
    test: Spread | None
    val_values: tuple[float, ...]
    test_values: tuple[float, ...]
    n_val: int | None  # images in each split
    n_test: int | None
    seconds: float  # training and evaluation, all seeds
    weights: tuple[str, ...]  # artifact ids, one per seed (empty without an artifact store)
    diverged: tuple[int, ...]  # seeds whose loss became non-finite

    @property
    def curse(self) -> float | None:
        """The search's single value minus the confirmed mean (> 0: the search overstated)."""
        return None if self.val is None else self.search_val - self.val.mean


class Paired(NamedTuple):
    """One split's accuracies of the winner and the baseline over the seeds both trained."""

    winner: float  # mean over the paired seeds
    baseline: float
    difference: Spread  # of winner - baseline, seed by seed; no interval from a single seed


class BaselineComparison(NamedTuple):
    """The confirmed winner against a baseline recipe trained on the same seeds, data and epoch
    budget, paired over the seeds where neither diverged."""

    name: str  # "tutorial", or the recipe file's name
    config: dict[str, Any]  # the baseline's TrainConfig
    seeds: tuple[int, ...]  # the paired seeds
    val: Paired | None  # None when no seed trained on both sides
    test: Paired | None
    seconds: float  # the baseline's training and evaluation, all seeds


class Confirmation(NamedTuple):
    configs: tuple[ConfirmedConfig, ...]  # best mean val first
    winner: ConfirmedConfig | None  # None when every seed of every configuration diverged
    curse: float | None  # search's best val - confirmed mean of that configuration
    settings: dict[str, Any]  # CONFIRM_SETTINGS: top, asked, seeds, auto, search_seconds
    baseline: BaselineComparison | None = None  # None: no baseline stored (or no winner)

    @property
    def seconds(self) -> float:
        """The confirmation's training time: every configuration and the baseline."""
        baseline = self.baseline.seconds if self.baseline else 0.0
        return sum(c.seconds for c in self.configs) + baseline

    @property
    def cost_share(self) -> float | None:
        """Confirmation seconds over the search's trial seconds."""
        search = self.settings.get("search_seconds")
        return self.seconds / search if search else None


def config_key(config: Mapping[str, Any]) -> str:
    """Configurations equal but for seed, device and threads share a key."""
    return json.dumps({k: v for k, v in config.items() if k not in MACHINE_FIELDS}, sort_keys=True)


def stored_records(user_attrs: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> the stored confirmation record (see search/confirm.py); a record that
    is not of that shape (edited by hand, say) is left out."""
    prefix = rec.CONFIRMED_PREFIX
    return {
        int(key.removeprefix(prefix)): value
        for key, value in user_attrs.items()
        if key.startswith(prefix)
        and key.removeprefix(prefix).isdigit()
        and _well_formed(value, *SHAPES["confirmed"])
    }


def _well_formed(
    record: Any, kinds: dict[str, type], numbers: tuple[str, ...], runs: tuple[str, ...]
) -> bool:
    """Int seeds and accuracies that are numbers or None (that seed diverged) besides."""
    if not isinstance(record, dict):
        return False
    lists = [record.get(k) for k in runs]
    return (
        all(isinstance(record.get(k), kind) for k, kind in kinds.items())
        and None not in (rec.as_number(record.get(k)) for k in numbers)
        and all(isinstance(x, list) for x in lists)
        and len({len(x) for x in lists}) == 1
        and all(isinstance(s, int) for s in record["seeds"])
        and all(v is None or rec.as_number(v) is not None for v in record["val"] + record["test"])
    )


def compare_baseline(winner: Mapping[str, Any] | None, baseline: Any) -> BaselineComparison | None:
    """The winner's stored record against the baseline's (rec.BASELINE), paired over the seeds
    both trained without diverging; None without a winner or a well-formed baseline record."""
    if winner is None or not _well_formed(baseline, *SHAPES["baseline"]):
        return None
    theirs = {s: (v, t) for s, v, t in _runs(baseline)}
    pairs = [
        (seed, val, test, *theirs[seed])
        for seed, val, test in _runs(winner)
        if None not in (val, test, *theirs.get(seed, (None, None)))
    ]
    return BaselineComparison(
        name=baseline["name"],
        config=dict(baseline["config"]),
        seeds=tuple(p[0] for p in pairs),
        val=_paired([p[1] for p in pairs], [p[3] for p in pairs]),
        test=_paired([p[2] for p in pairs], [p[4] for p in pairs]),
        seconds=float(baseline["seconds"]),
    )


def _runs(record: Mapping[str, Any]) -> zip:
    return zip(record["seeds"], record["val"], record["test"], strict=True)


def _paired(winner: list[float], baseline: list[float]) -> Paired | None:
    if not winner:
        return None
    differences = [w - b for w, b in zip(winner, baseline, strict=True)]
    return Paired(statistics.fmean(winner), statistics.fmean(baseline), t_spread(differences))


def extract_confirmation(
    user_attrs: Mapping[str, Any], trials: Sequence[FrozenTrial]
) -> Confirmation | None:
    """The study's confirmation, or None when none was run."""
    records = stored_records(user_attrs)
    configs = [_confirmed(r) for r in records.values()]
    if not configs:
        return None
    # best mean first; configurations where every seed diverged last
    configs.sort(key=lambda c: (c.val is None, -(c.val.mean if c.val else 0.0), c.trial))
    # the winner trained without diverging on every seed; failing that, the best mean
    clean = [c for c in configs if c.val is not None and not c.diverged]
    some = [c for c in configs if c.val is not None]
    winner = (clean or some or [None])[0]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    curse = None
    if complete:
        best = max(complete, key=lambda t: (t.values[0], -t.number))
        key = config_key(best.user_attrs.get(rec.CONFIG) or {})
        same = [c for c in configs if config_key(c.config) == key and c.val is not None]
        if same:
            curse = best.values[0] - same[0].val.mean
    settings = user_attrs.get(rec.CONFIRM_SETTINGS)
    return Confirmation(
        configs=tuple(configs),
        winner=winner,
        curse=curse,
        settings=dict(settings) if isinstance(settings, dict) else {},
        baseline=compare_baseline(
            records[winner.trial] if winner else None, user_attrs.get(rec.BASELINE)
        ),
    )


def _confirmed(record: dict[str, Any]) -> ConfirmedConfig:
    val = [float(v) for v in record["val"] if v is not None]
    test = [float(v) for v in record["test"] if v is not None]
    return ConfirmedConfig(
        trial=int(record["trial"]),
        config=dict(record["config"]),
        search_val=float(record["search_val"]),
        search_test=rec.as_number(record.get("search_test")),
        seeds=tuple(int(s) for s in record["seeds"]),
        val=seed_spread(val) if val else None,
        test=seed_spread(test) if test else None,
        val_values=tuple(val),
        test_values=tuple(test),
        n_val=rec.as_int(record.get("n_val")),
        n_test=rec.as_int(record.get("n_test")),
        seconds=float(record["seconds"]),
        weights=tuple(str(w) for w in record["weights"] if w),
        diverged=tuple(int(s) for s in record["diverged"]),
    )


def baseline_sentence(comparison: BaselineComparison, split: str = "test") -> str:
    """The comparison as one sentence, for the summary and the report: the 95 % interval of the
    paired difference decides between "beats", "trails" and "does not differ detectably"."""
    name = comparison.name
    them = "the tutorial's recipe" if name == "tutorial" else f"the recipe {name}"
    paired = comparison.test if split == "test" else comparison.val
    kind = "test" if split == "test" else "validation"
    if paired is None:
        return f"the winner cannot be compared with {them}: no seed trained on both sides"
    d = paired.difference
    if d.interval is None:
        return (f"the winner scores {_points(d.mean)} points of {kind} accuracy against {them} "
                "on 1 seed (one seed gives no interval: no verdict)")  # fmt: skip
    low, high = d.interval
    shown = (f"{_points(d.mean)} points of {kind} accuracy, 95 % interval "
             f"[{_points(low)}, {_points(high)}], {d.n} seeds")  # fmt: skip
    if low > 0:
        return f"the winner beats {them} by {shown}"
    if high < 0:
        return f"the winner trails {them} by {shown}"
    return f"the winner does not differ detectably from {them}: {shown}"


def _points(difference: float) -> str:
    """An accuracy difference in points, signed, with a true minus sign: +1.8, −0.4."""
    return f"{difference * 100:+.1f}".replace("-", "−")
