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

from reports import trial_record as rec
from reports.intervals import Spread, seed_spread

# fields that say where a run trained, not what: configurations differing only there are one
MACHINE_FIELDS = ("seed", "device", "threads")


class ConfirmedConfig(NamedTuple):
    trial: int  # the search trial that proposed the configuration
    config: dict[str, Any]  # its whole TrainConfig (the search trial's seed)
    search_val: float  # the search trial's validation accuracy (one run)
    search_test: float | None
    seeds: tuple[int, ...]  # the confirmation's seeds, one run each
    val: Spread  # over the seeds that did not diverge
    test: Spread | None
    val_values: tuple[float, ...]
    test_values: tuple[float, ...]
    n_val: int | None  # images in each split
    n_test: int | None
    seconds: float  # training and evaluation, all seeds
    weights: tuple[str, ...]  # artifact ids, one per seed (empty without an artifact store)
    diverged: tuple[int, ...]  # seeds whose loss became non-finite

    @property
    def curse(self) -> float:
        """The search's single value minus the confirmed mean (> 0: the search overstated)."""
        return self.search_val - self.val.mean


class Confirmation(NamedTuple):
    configs: tuple[ConfirmedConfig, ...]  # best mean val first
    winner: ConfirmedConfig | None
    curse: float | None  # search's best val - confirmed mean of that configuration
    settings: dict[str, Any]  # CONFIRM_SETTINGS: top, seeds, auto, search_seconds, seconds

    @property
    def cost_share(self) -> float | None:
        """Confirmation seconds over the search's trial seconds."""
        search = self.settings.get("search_seconds")
        return sum(c.seconds for c in self.configs) / search if search else None


def config_key(config: Mapping[str, Any]) -> str:
    """Configurations equal but for seed, device and threads share a key."""
    return json.dumps({k: v for k, v in config.items() if k not in MACHINE_FIELDS}, sort_keys=True)


def stored_records(user_attrs: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> the stored confirmation record (see search/confirm.py)."""
    records = {}
    for key, value in user_attrs.items():
        if key.startswith(rec.CONFIRMED_PREFIX) and isinstance(value, dict):
            number = key.removeprefix(rec.CONFIRMED_PREFIX)
            if number.isdigit():
                records[int(number)] = value
    return records


def extract_confirmation(
    user_attrs: Mapping[str, Any], trials: Sequence[FrozenTrial]
) -> Confirmation | None:
    """The study's confirmation, or None when none was run."""
    configs = [c for c in (_confirmed(r) for r in stored_records(user_attrs).values()) if c]
    if not configs:
        return None
    configs.sort(key=lambda c: (-c.val.mean, c.trial))
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    curse = None
    if complete:
        best = max(complete, key=lambda t: (t.values[0], -t.number))
        key = config_key(best.user_attrs.get(rec.CONFIG) or {})
        same = [c for c in configs if config_key(c.config) == key]
        if same:
            curse = best.values[0] - same[0].val.mean
    settings = user_attrs.get(rec.CONFIRM_SETTINGS)
    return Confirmation(
        configs=tuple(configs),
        winner=configs[0],
        curse=curse,
        settings=dict(settings) if isinstance(settings, dict) else {},
    )


def _confirmed(record: dict[str, Any]) -> ConfirmedConfig | None:
    val = [float(v) for v in record.get("val", []) if v is not None]
    if not val:
        return None  # every seed diverged: nothing to average
    test = [float(v) for v in record.get("test", []) if v is not None]
    return ConfirmedConfig(
        trial=int(record["trial"]),
        config=dict(record.get("config") or {}),
        search_val=float(record["search_val"]),
        search_test=_float(record.get("search_test")),
        seeds=tuple(int(s) for s in record.get("seeds", [])),
        val=seed_spread(val),
        test=seed_spread(test) if test else None,
        val_values=tuple(val),
        test_values=tuple(test),
        n_val=_int(record.get("n_val")),
        n_test=_int(record.get("n_test")),
        seconds=float(record.get("seconds", 0.0)),
        weights=tuple(str(w) for w in record.get("weights", []) if w),
        diverged=tuple(int(s) for s in record.get("diverged", [])),
    )


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) else None
