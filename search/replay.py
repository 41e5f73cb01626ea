"""Replay a stored trial: train its exact configuration again, the way the search trained it,
and set its learning curve beside the stored one (``python -m mnistcore --from-trial N``).

The replay runs the search's own ``Objective`` on a stand-in for the stored trial, so nothing
about the training is copied: the same ``Population`` of one, advanced to the same report steps
(``report_steps``), evaluated there on the same validation split (``DATA_SPLIT_SEED``, never
moved by ``--seed``), the test split at the end. On the machine and torch version that ran the
search, a trial of a one-worker ``--population 1`` search replays to the same numbers exactly.

Three layers: ``find_trial`` (storage -> ``StoredTrial``), ``replay`` (plain data: ``Replay``),
``main`` (prints both curves).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from mnistcore import (
    ConfigError,
    Dataset,
    TrainConfig,
    UserError,
    device_name,
    load_dataset,
    resolve_dataset,
    resolve_device,
)
from search.objective import Objective, report_steps
from search.setup import DATA_SPLIT_SEED
from studies import trial_record as rec
from studies.storage import DEFAULT_JOURNAL, read_storage
from studies.study_data import format_epochs, steps_per_epoch

__all__ = ["Point", "Replay", "ReplayError", "StoredTrial", "find_trial", "main", "replay"]


class ReplayError(UserError):
    """The trial to replay cannot be found or holds nothing to replay; one line saying why."""


@dataclass(frozen=True)
class StoredTrial:
    """What the storage holds about the trial to replay."""

    study_name: str
    storage: str  # as the user named it (the default journal when none was named)
    trial: FrozenTrial
    config: TrainConfig  # the trial's whole configuration, as the search trained it
    steps_per_epoch: int  # report steps per epoch of the search (1: a step is an epoch)

    @property
    def name(self) -> str:
        return f"trial {self.trial.number} of study {self.study_name!r}"

    @property
    def curve(self) -> dict[Fraction, float]:
        """Stored validation accuracy by epochs trained (a two-objective study reports no
        steps: its complete trials hold only the last value)."""
        per = self.steps_per_epoch
        curve = {Fraction(s, per): v for s, v in self.trial.intermediate_values.items()}
        if self.trial.state == TrialState.COMPLETE and self.trial.values:
            curve.setdefault(Fraction(self.config.epochs), self.trial.values[0])
        return curve

    @property
    def diverged(self) -> bool:
        # the objective records a reason on a PRUNED trial only when its loss turned NaN/inf
        return self.trial.state == TrialState.PRUNED and rec.FAIL_REASON in self.trial.user_attrs

    @property
    def stop(self) -> Fraction | None:
        """Epochs after which the replay stops as the stored trial stopped (pruned, failed);
        None: the whole budget (complete, still running, diverged: the replay shows whether
        it diverges too, or nothing was stored to stop at)."""
        t = self.trial
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING) or self.diverged:
            return None
        if not t.intermediate_values:
            return None
        return Fraction(max(t.intermediate_values), self.steps_per_epoch)


class Point(NamedTuple):
    """One report step: validation accuracy stored by the search and replayed."""

    epoch: Fraction  # epochs trained at this report
    step: int  # the report step (the replay's; the search's where the replay did not get)
    stored: float | None  # None: the search stored no value here
    replayed: float | None  # None: the replay did not get here


@dataclass(frozen=True)
class Replay:
    """Both curves and how the replay ended."""

    points: list[Point]  # by epoch
    stored_test: float | None  # the search's test accuracy (complete trials only)
    replayed_test: float | None  # None: the replay was pruned or diverged, as the search's
    state: TrialState  # COMPLETE, or PRUNED where the stored trial stopped or on divergence
    fail_reason: str | None  # the replay's divergence, if it diverged

    def differences(self) -> list[float]:
        """replayed - stored at each epoch both have, and for the test accuracy."""
        pairs = [(p.stored, p.replayed) for p in self.points]
        pairs.append((self.stored_test, self.replayed_test))
        return [r - s for s, r in pairs if s is not None and r is not None]


def find_trial(storage: str | None, study_name: str | None, number: int) -> StoredTrial:
    """Trial ``number`` of ``study_name`` (None: the storage's only study) in ``storage``
    (None: the default journal), read without creating anything; ReplayError when absent."""
    backend = read_storage(storage)  # a StorageError (one line) when a named one is missing
    label = storage or str(DEFAULT_JOURNAL)
    if backend is None:
        raise ReplayError(
            f"--from-trial {number}: no --storage given and no journal at {DEFAULT_JOURNAL}; "
            "pass the --storage the search used"
        )
    name = _study_name(optuna.get_all_study_names(backend), study_name, label)
    study = optuna.load_study(study_name=name, storage=backend)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        held = f"has trials 0..{max(trials)}" if trials else "has no trials yet"
        raise ReplayError(f"study {name!r} {held}; --from-trial {number} is not one of them")
    trial = trials[number]
    where = f"trial {number} of study {name!r}"
    if trial.state == TrialState.WAITING:
        raise ReplayError(f"{where} is waiting to start: it has no configuration to replay yet")
    recorded = trial.user_attrs.get(rec.CONFIG)
    if not isinstance(recorded, dict):
        params = " ".join(f"{k}={v}" for k, v in trial.params.items())
        raise ReplayError(
            f"{where} stored no config (a study from a version before trials recorded their "
            f"whole configuration), so it cannot be replayed exactly; its params: {params}"
        )
    config = _stored_config(recorded, where)
    return StoredTrial(name, label, trial, config, steps_per_epoch(study.user_attrs))


def replay_data(stored: StoredTrial, config: TrainConfig, *, data_dir: str) -> Dataset:
    """The data the search trained ``stored`` on (``config.dataset`` when overridden): the
    same split seed, and for ``synthetic`` the size the search generated."""
    extra: dict[str, Any] = {}
    sizes = stored.trial.user_attrs.get(rec.SPLIT_SIZES)
    if config.dataset == stored.config.dataset == "synthetic" and isinstance(sizes, dict):
        extra["synthetic_size"] = sizes["train"] + sizes["val"]  # --synthetic-size
    loaded = resolve_dataset(config.dataset, data_dir=data_dir)
    if loaded != config.dataset:
        raise ReplayError(
            f"{stored.name} trained on {config.dataset}, which is not under {data_dir} here "
            f"(it would load as {loaded}); pass the --data-dir the search used"
        )
    return load_dataset(config.dataset, data_dir=data_dir, seed=DATA_SPLIT_SEED, **extra)


def replay(
    stored: StoredTrial,
    *,
    config: TrainConfig,
    data: Dataset,
    on_point: Callable[[Point], None] | None = None,
) -> Replay:
    """Train ``config`` (the stored one, or it with overrides) on ``data`` as the search trained
    ``stored``, stopping where it stopped; ``on_point`` sees each step as it is evaluated."""
    curve = stored.curve
    per_epoch, _ = report_steps(len(data.train.labels), config.epochs)
    points: dict[Fraction, Point] = {}

    def reported(step: int, accuracy: float) -> None:
        epoch = Fraction(step, per_epoch)
        points[epoch] = Point(epoch, step, curve.get(epoch), accuracy)
        if on_point is not None:
            on_point(points[epoch])

    stand_in = _StandIn(stored.trial.number, per_epoch, stop=stored.stop, on_report=reported)
    ended: list[TrialState] = []
    # an empty space: suggest() returns ``config`` itself; "accuracy" alone: reports each step
    objective = Objective(data, {}, base=config, objectives=("accuracy",))
    objective.run([stand_in], lambda trial, state, values: ended.append(state))
    for epoch, value in curve.items():  # stored steps the replay did not reach
        step = epoch * stored.steps_per_epoch
        points.setdefault(epoch, Point(epoch, int(step), value, None))
    attrs = stand_in.user_attrs
    return Replay(
        points=[points[e] for e in sorted(points)],
        stored_test=stored.trial.user_attrs.get(rec.TEST_ACCURACY),
        replayed_test=attrs.get(rec.TEST_ACCURACY),
        state=ended[0],
        fail_reason=attrs.get(rec.FAIL_REASON),
    )


class _StandIn(optuna.trial.FixedTrial):
    """The stored trial's stand-in inside ``Objective``: passes each report on and asks to be
    pruned once it has trained ``stop`` epochs, where the stored trial stopped."""

    def __init__(
        self,
        number: int,
        per_epoch: int,
        *,
        stop: Fraction | None,
        on_report: Callable[[int, float], None],
    ) -> None:
        super().__init__({}, number)
        self._per_epoch = per_epoch
        self._stop = stop
        self._on_report = on_report
        self._reached = Fraction(0)

    def report(self, value: float, step: int) -> None:
        self._reached = Fraction(step, self._per_epoch)
        self._on_report(step, value)

    def should_prune(self) -> bool:
        return self._stop is not None and self._reached >= self._stop


def main(
    *,
    number: int,
    storage: str | None,
    study_name: str | None,
    overrides: Mapping[str, Any],
    data_dir: str,
    quiet: bool = False,
) -> int:
    """``python -m mnistcore --from-trial N``: replay and print both curves."""
    stored = find_trial(storage, study_name, number)
    changed = {k: v for k, v in overrides.items() if getattr(stored.config, k) != v}
    config = stored.config.replace(**overrides)
    device = resolve_device(config.device)  # fail fast on a missing GPU, before loading data
    data = replay_data(stored, config, data_dir=data_dir)
    show = (lambda line: None) if quiet else print
    show(f"{stored.name} in {stored.storage}: {_how_it_ended(stored, config)}")
    show(f"config: {' '.join(f'{k}={v}' for k, v in stored.config.to_dict().items())}")
    show(f"data: {data.describe()}")
    show(f"device: {device_name(device)}; torch {torch.__version__}")
    notes = _notes(stored, changed, data, device)
    for note in notes:
        show(f"note: {note.text}")
    show(f"{'step':>5}  {'epoch':>6}  {'stored val acc':>14}  {'replayed':>8}")
    result = replay(stored, config=config, data=data, on_point=lambda p: show(_row(p)))
    for point in result.points:
        if point.replayed is None:  # stored steps the replay did not reach come last
            show(_row(point))
    whys = [note.why for note in notes if note.why is not None]
    for line in _ending(stored, result, whys=whys):
        print(line)
    return 0


def _study_name(names: list[str], wanted: str | None, label: str) -> str:
    held = ", ".join(map(repr, names))
    if not names:
        raise ReplayError(
            f"{label} holds no study: run `python -m search.study` first, or pass --storage "
            "with the storage that holds the trial"
        )
    if wanted is None:
        if len(names) > 1:
            raise ReplayError(f"{label} holds {len(names)} studies ({held}); pick one with "
                              "--study-name")  # fmt: skip
        return names[0]
    if wanted not in names:
        raise ReplayError(f"study {wanted!r} is not in {label}; it holds: {held}")
    return wanted


def _stored_config(recorded: dict[str, Any], where: str) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise ReplayError(
            f"{where} stored config fields this version does not have ({', '.join(unknown)}); "
            f"replay it with the version that ran it (user attr {rec.GIT_COMMIT})"
        )
    try:
        return TrainConfig(**recorded)
    except ConfigError as e:
        raise ReplayError(f"{where} stored a config this version refuses: {e}") from None


def _how_it_ended(stored: StoredTrial, config: TrainConfig) -> str:
    """What the search did with the trial, and what the replay will do."""
    t, state = stored.trial, stored.trial.state.name
    if stored.diverged:
        return f"{state}, diverged ({t.user_attrs[rec.FAIL_REASON]}); replaying until it does"
    if stored.stop is not None:
        step, epoch = max(t.intermediate_values), format_epochs(float(stored.stop))
        reason = t.user_attrs.get(rec.FAIL_REASON) or t.system_attrs.get(rec.FAIL_REASON)
        return (
            f"{state} after step {step} (epoch {epoch}"
            + (f"; {reason}" if reason and t.state == TrialState.FAIL else "")
            + "); replaying up to there"
        )
    epochs = "them" if config.epochs == stored.config.epochs else f"{config.epochs} (--epochs)"
    if t.state == TrialState.COMPLETE:
        return f"{state} after {stored.config.epochs} epochs; replaying {epochs}"
    steps = t.intermediate_values
    held = f"steps up to {max(steps)} stored" if steps else "no step stored"
    return f"{state}, {held}; replaying {config.epochs} epochs"


class _Note(NamedTuple):
    text: str
    why: str | None  # a reason the curves are not expected to match (None: they may still)


def _notes(
    stored: StoredTrial, changed: Mapping[str, Any], data: Dataset, device: torch.device
) -> list[_Note]:
    """What may keep the replayed curve from matching the stored one."""
    attrs, notes = stored.trial.user_attrs, []
    if changed:
        given = ", ".join(f"{k}={v!r} (stored {getattr(stored.config, k)!r})" for k, v in
                          changed.items())  # fmt: skip
        notes.append(_Note(f"overridden on the command line: {given}", "overrides"))
    size, member = attrs.get(rec.POPULATION_SIZE, 1), attrs.get(rec.POPULATION_MEMBER)
    if isinstance(size, int) and size > 1 and stored.config.dropout > 0:
        # measured: members of a --population 2 study with dropout replayed 0.1-0.2 apart on
        # 30 validation images; the same study with --dropout 0 replayed exactly
        notes.append(_Note(
            f"trained as member {member} of a population of {size}, which drew the dropout "
            "masks of all its members at once: replayed alone, it draws others",
            "population dropout masks",
        ))  # fmt: skip
    elif isinstance(size, int) and size > 1:
        notes.append(_Note(
            f"trained as member {member} of a population of {size}: replayed alone, its fused "
            "run may differ in the last digits",
            None,
        ))  # fmt: skip
    sizes = attrs.get(rec.SPLIT_SIZES)
    if sizes is not None and sizes != data.sizes and "dataset" not in changed:
        notes.append(_Note(f"the search's splits were {sizes}, these are {data.sizes}", "data"))
    then = (attrs.get(rec.DEVICE_NAME), attrs.get(rec.TORCH_VERSION))
    now = (device_name(device), torch.__version__)
    if then[0] is not None and then != now:
        notes.append(_Note(
            f"the search ran on {then[0]} with torch {then[1]}: values may differ in the last "
            "digits",
            None,
        ))  # fmt: skip
    return notes


def _row(point: Point) -> str:
    def shown(value: float | None) -> str:
        return "–" if value is None else f"{value:.4f}"

    same = ""
    if point.stored is not None and point.replayed is not None:
        diff = point.replayed - point.stored
        same = "same" if diff == 0 else f"{diff:+.4f}"
    epoch = format_epochs(float(point.epoch))
    values = f"{shown(point.stored):>14}  {shown(point.replayed):>8}"
    return f"{point.step:>5}  {epoch:>6}  {values}  {same}".rstrip()


def _where(reason: str) -> str:
    """The "epoch 2, step 50" of a divergence message, whatever the version that wrote it said
    around it; the whole message when it names no place."""
    found = re.search(r"epoch \d+, step \d+", reason)
    return found.group(0) if found else reason


def _ending(stored: StoredTrial, result: Replay, *, whys: list[str]) -> list[str]:
    lines = []
    if result.fail_reason is not None:
        was = stored.trial.user_attrs.get(rec.FAIL_REASON) if stored.diverged else None
        lines.append(
            f"the replay diverged as the search's trial did: {was}"
            if was is not None and _where(was) == _where(result.fail_reason)
            else f"the replay diverged: {result.fail_reason} (the search's: {was or 'did not'})"
        )
    elif result.state == TrialState.PRUNED:
        how = "pruned" if stored.trial.state == TrialState.PRUNED else "stopped"
        lines.append(
            f"stopped where the search {how} it, after epoch "
            f"{format_epochs(float(stored.stop or 0))}: not tested (the search tests complete "
            "trials only)"
        )
    if result.replayed_test is not None or result.stored_test is not None:
        test = f"test accuracy: stored {_fmt(result.stored_test)}, replayed "
        test += _fmt(result.replayed_test)
        if result.stored_test is not None and result.replayed_test is not None:
            diff = result.replayed_test - result.stored_test
            test += " (same)" if diff == 0 else f" ({diff:+.4f})"
        lines.append(test)
    diffs = result.differences()
    differ = [d for d in diffs if d != 0]
    if not diffs:
        if result.fail_reason is None:
            lines.append("nothing stored to compare with")
    elif not differ:
        lines.append(f"replayed exactly: every stored value ({len(diffs)})")
    else:
        largest = max(differ, key=abs)
        lines.append(
            f"{len(differ)} of the {len(diffs)} values compared differ (largest {largest:+.4f})"
            + (f", as expected ({', '.join(whys)})" if whys else "")
        )
    return lines


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
