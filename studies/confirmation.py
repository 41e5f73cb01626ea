"""The confirmation's extract: the configurations the search ranked best, retrained with new
seeds (search/confirm.py stores them as study user attributes), as plain data for the summary
and the report.

The confirmed winner is the configuration with the best mean validation accuracy over its
seeds. The winner's curse is the search's best validation accuracy (one run, the best of many
noisy values) minus the confirmed mean of that same configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from optuna.trial import FrozenTrial, TrialState

from studies import trial_record as rec
from studies.intervals import Spread, seed_spread

# fields that say where a run trained, not what: configurations differing only there are one
MACHINE_FIELDS = ("seed", "device", "threads")
# --confirm auto: the confirmation's estimated cost, over the search's time (search/confirm.py)
BUDGET_SHARE = 0.30


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


class Confirmation(NamedTuple):
    configs: tuple[ConfirmedConfig, ...]  # best mean val first
    winner: ConfirmedConfig | None  # None when every seed of every configuration diverged
    curse: float | None  # search's best val - confirmed mean of that configuration
    settings: dict[str, Any]  # CONFIRM_SETTINGS: top, asked, seeds, auto, search_seconds

    @property
    def cost_share(self) -> float | None:
        """Confirmation seconds over the search's trial seconds."""
        search = self.settings.get("search_seconds")
        return sum(c.seconds for c in self.configs) / search if search else None


def config_key(config: Mapping[str, Any]) -> str:
    """Configurations equal but for seed, device and threads share a key."""
    return json.dumps({k: v for k, v in config.items() if k not in MACHINE_FIELDS}, sort_keys=True)


def stored_records(user_attrs: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> the stored confirmation record (see search/confirm.py); a record that
    is not of that shape (edited by hand, say) is left out."""
    records = {}
    for key, value in user_attrs.items():
        number = key.removeprefix(rec.CONFIRMED_PREFIX)
        if key.startswith(rec.CONFIRMED_PREFIX) and number.isdigit() and _well_formed(value):
            records[int(number)] = value
    return records


def _well_formed(record: Any) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return False
    numbers = [record.get(k) for k in ("search_val", "seconds")]
    if not isinstance(record.get("trial"), int) or None in map(rec.as_number, numbers):
        return False
    lists = [record.get(k) for k in ("seeds", "val", "test", "weights", "diverged")]
    if not all(isinstance(x, list) for x in lists):
        return False
    seeds, val, test, weights, _ = lists
    return len(seeds) == len(val) == len(test) == len(weights) and all(
        v is None or rec.as_number(v) is not None for v in val + test
    )


def extract_confirmation(
    user_attrs: Mapping[str, Any], trials: Sequence[FrozenTrial]
) -> Confirmation | None:
    """The study's confirmation, or None when none was run."""
    configs = [_confirmed(r) for r in stored_records(user_attrs).values()]
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
