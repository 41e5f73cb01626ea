"""The search space: which ``TrainConfig`` fields a study varies, over which ranges.

``suggest(trial, space)`` is the one function that turns an Optuna trial into a validated
``TrainConfig`` (test it with ``optuna.trial.FixedTrial``). Ranges come from ``DEFAULT_SPACE``,
then a TOML file (``--space file.toml``), then flags. On the command line and as a TOML string,
``LOW:HIGH`` is a range (log scale where the parameter's default is; append ``:log`` or
``:linear`` to choose), ``A,B,C`` a choice, ``V`` pins the parameter. In a TOML file a parameter
is also a scalar (pinned) or a table: ``{low = 1e-4, high = 1, log = true}``,
``{choices = [64, 128]}``, ``{value = 0.9}``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)
from optuna.trial import FrozenTrial

from mnistcore import PRESETS, ConfigError, TrainConfig, UserError
from mnistcore.config import parse_bool


class SpaceError(UserError):
    """A search-space range or value is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class Range:
    """A numeric range, both ends included; ``integer`` ranges step by 1."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def describe(self) -> str:
        return f"{_fmt(self.low)}:{_fmt(self.high)}{':log' if self.log else ''}"

    def distribution(self) -> BaseDistribution:
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Choice:
    """One of a few values (also how booleans and schedules are searched)."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return ",".join(_fmt(v) for v in self.values)

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(self.values)


Dimension = Range | Choice
SearchSpace = Mapping[str, Dimension]

# log-scale parameters span orders of magnitude
_LOG_BY_DEFAULT = {"lr", "weight_decay", "width", "hidden", "batch_size"}

# Defaults sized for a 2-core CPU and mnist-5k: the study net (mnistcore's "study" preset, a
# two-block net with a one-cycle schedule) reaches ~98 % test accuracy in 9-10 epochs at ~1
# s/epoch for width 16; the second conv's cost grows with width squared (width 32 is ~2.5x
# slower than 16), hence the cap at 24. The preset's architecture and batch size are pinned.
STUDY_NET = PRESETS["study"]
_PINNED = ("depth", "hidden", "batch_size", "schedule")
DEFAULT_SPACE: dict[str, Dimension] = {
    # peak rate of the one-cycle schedule; below 0.01 a few epochs do not get far
    "lr": Range(0.01, 0.5, log=True),
    "momentum": Range(0.5, 0.98),
    "weight_decay": Choice((0.0,)),
    "dropout": Range(0.0, 0.5),
    "width": Range(4, 24, log=True, integer=True),  # channels of the first conv block
    "batch_norm": Choice((True, False)),
    **{name: Choice((STUDY_NET[name],)) for name in _PINNED},
}
# The first trial of a new study tries the study net (where it lies inside the space), so the
# pruners compare every later trial against a strong baseline from the start.
START_POINT = {n: v for n, v in STUDY_NET.items() if n in DEFAULT_SPACE and n not in _PINNED}
SEARCHABLE = tuple(DEFAULT_SPACE)  # the TrainConfig fields a space may hold
_KINDS = {name: type(getattr(TrainConfig(), name)) for name in SEARCHABLE}  # float, int, ...


def start_params(space: SearchSpace, point: Mapping[str, Any] = START_POINT) -> dict[str, Any]:
    """The values of ``point`` that ``space`` searches and contains (for ``enqueue_trial``)."""
    params = {}
    for name, value in point.items():
        dim = space.get(name)
        if dim is None or not _is_searched(dim):
            continue
        if value in dim.values if isinstance(dim, Choice) else dim.low <= value <= dim.high:
            params[name] = value
    return params


def suggest(
    trial: optuna.trial.BaseTrial,
    space: SearchSpace = DEFAULT_SPACE,
    *,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """Ask ``trial`` for every searched parameter of ``space``; fields not in it come from
    ``base``. Pinned values are no Optuna params: Optuna refuses a parameter whose distribution
    changes within a study, and a pin is free to change between runs."""
    values: dict[str, Any] = {}
    for name, dim in space.items():
        if not _is_searched(dim):
            values[name] = dim.values[0]  # type: ignore[union-attr]
        elif isinstance(dim, Choice):
            values[name] = trial.suggest_categorical(name, dim.values)
        elif dim.integer:
            values[name] = trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
        else:
            values[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    return (base or TrainConfig()).replace(**values)


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """The Optuna distribution of each searched parameter (what ``suggest`` asks for)."""
    return {name: dim.distribution() for name, dim in space.items() if _is_searched(dim)}


def check_compatible(space: SearchSpace, trials: Iterable[FrozenTrial], study_name: str) -> None:
    """Raise SpaceError when ``space`` asks for a parameter in a way Optuna would refuse for
    this study: another kind (range vs choice), another scale (log vs linear) or other
    choices than its earlier trials. Ranges may widen or narrow freely."""
    new = distributions(space)
    for trial in trials:
        for name, old in trial.distributions.items():
            if name not in new:
                continue
            try:
                check_distribution_compatibility(old, new[name])
            except ValueError as e:
                raise SpaceError(
                    f"{_flag(name)} {space[name].describe()} ({_describe(new[name])}) does not "
                    f"fit study {study_name!r}, which searched {name} as {_describe(old)} ({e}); "
                    f"keep that, pin {name}, or use a new --study-name"
                ) from None


def space_record(space: SearchSpace) -> dict[str, Any]:
    """What a study stores of its space (a study user attr): which parameters it searches and
    the values of the pinned ones. Ranges are left out: they may change between runs."""
    return {
        "searched": searched_names(space),
        "pinned": {n: d.describe() for n, d in space.items() if not _is_searched(d)},
    }


def check_same_space(
    space: SearchSpace,
    stored: Mapping[str, Any] | None,
    trials: Iterable[FrozenTrial],
    study_name: str,
) -> None:
    """Raise SpaceError when ``space`` searches other parameters than the stored study (one
    added, removed, pinned or unpinned) or pins one at another value. ``stored`` is the study's
    ``space_record``; studies written before it existed are judged by their trials' params."""
    if stored:
        before, pinned = set(stored["searched"]), dict(stored["pinned"])
    else:
        before, pinned = {n for t in trials for n in t.distributions}, {}
        if not before:
            return  # nothing searched yet: nothing to keep
    now = set(searched_names(space))
    diffs = [f"searches {n}" for n in sorted(now - before)]
    diffs += [
        f"pins {n}={space[n].describe()}" if n in space else f"drops {n}"
        for n in sorted(before - now)
    ]
    diffs += [
        f"pins {n}={space[n].describe()} (the study pinned {n}={value})"
        for n, value in sorted(pinned.items())
        if n in space and n not in now and space[n].describe() != value
    ]
    if diffs:
        raise SpaceError(
            f"this run's space {', '.join(diffs)}, unlike study {study_name!r} (it searched "
            f"{', '.join(sorted(before)) or 'nothing'}); give the same space to resume it, or "
            "--study-name NEW for a study of its own"
        )


def build_space(
    *,
    overrides: Mapping[str, str] | None = None,
    toml_path: str | Path | None = None,
    base: TrainConfig | None = None,
) -> dict[str, Dimension]:
    """``DEFAULT_SPACE`` updated by a TOML file, then by flag strings. Empty or reversed ranges,
    log ranges through 0 and values ``TrainConfig`` rejects (at both ends of a range, each
    choice) are a SpaceError naming where the parameter was set."""
    space = dict(DEFAULT_SPACE)
    sources = {name: f"the default {name}" for name in space}
    if toml_path is not None:
        from_file = read_space_file(toml_path)
        space.update(from_file)
        sources.update({name: f"{toml_path}: {name}" for name in from_file})
    for name, text in (overrides or {}).items():
        space[name] = parse_dimension(name, text, source=_flag(name))
        sources[name] = _flag(name)
    base = base or TrainConfig()
    for name, dim in space.items():
        where = f"{sources[name]} {dim.describe()}"
        if isinstance(dim, Range):
            if not dim.low < dim.high:
                raise SpaceError(
                    f"{where}: low must be < high; swap the bounds, or give one value to pin "
                    f"{name}"
                )
            if dim.log and dim.low <= 0:
                raise SpaceError(
                    f"{where}: a log-scale range needs bounds > 0; use a positive low bound "
                    f"or ':linear'"
                )
            candidates: tuple[Any, ...] = (dim.low, dim.high)
            fix = "narrow the range"
        else:
            candidates = dim.values
            fix = "choose another value" if len(dim.values) == 1 else "leave that choice out"
        for value in candidates:
            try:
                base.replace(**{name: int(value) if _KINDS[name] is int else value})
            except ConfigError as e:
                raise SpaceError(f"{where}: {e}; {fix}") from None
    return space


def read_space_file(path: str | Path) -> dict[str, Dimension]:
    """Parse a TOML space file (see the module docstring for its shape)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise SpaceError(f"space file {str(path)!r} not found; check the --space path") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SpaceError(f"cannot read space file {str(path)!r}: {e}; fix the TOML") from None
    return {
        key.replace("-", "_"): _from_toml(key.replace("-", "_"), entry, f"{path}: {key}")
        for key, entry in doc.items()
    }


def parse_dimension(name: str, text: str, *, source: str = "") -> Dimension:
    """Parse ``LOW:HIGH[:log|:linear]``, ``A,B,...`` or a single value for parameter ``name``."""
    source = source or name
    _check_known(name, source)
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        log = name in _LOG_BY_DEFAULT
        if len(parts) == 3 and parts[2].lower() in ("log", "linear"):
            log = parts[2].lower() == "log"
            parts = parts[:2]
        if len(parts) != 2 or _KINDS[name] in (bool, str):
            raise SpaceError(
                f"{source} {text!r} is not a range; {name} takes {_syntax_hint(name)}"
            )
        low, high = (_value(name, p, source) for p in parts)
        return Range(low, high, log=log, integer=_KINDS[name] is int)
    values = tuple(_value(name, p, source) for p in text.split(","))
    if len(set(values)) != len(values):
        raise SpaceError(f"{source} {text!r} repeats a value; list each choice once")
    return Choice(values)


def describe_space(space: SearchSpace) -> str:
    """One line: ``lr=1e-3:0.5:log momentum=0.5:0.98 ... (pinned: depth=2, ...)``."""
    searched = [f"{n}={d.describe()}" for n, d in space.items() if _is_searched(d)]
    pinned = [f"{n}={d.describe()}" for n, d in space.items() if not _is_searched(d)]
    return " ".join(searched) + (f" (pinned: {', '.join(pinned)})" if pinned else "")


def searched_names(space: SearchSpace) -> list[str]:
    """Parameters that actually vary (pinned ones left out)."""
    return [n for n, d in space.items() if _is_searched(d)]


def _is_searched(dim: Dimension) -> bool:
    return isinstance(dim, Range) or len(dim.values) > 1


def _from_toml(name: str, entry: object, source: str) -> Dimension:
    _check_known(name, source)
    if isinstance(entry, str):
        return parse_dimension(name, entry, source=source)
    if isinstance(entry, list):
        raise SpaceError(
            f"{source}: a bare list is ambiguous; write {{choices = {entry!r}}} or "
            f"{{low = {entry[0] if entry else 0!r}, high = ...}}"
        )
    if not isinstance(entry, dict):
        return Choice((_value(name, entry, source),))
    keys = set(entry)
    if keys == {"value"}:
        return Choice((_value(name, entry["value"], source),))
    if keys == {"choices"} and isinstance(entry["choices"], list) and entry["choices"]:
        return Choice(tuple(_value(name, v, source) for v in entry["choices"]))
    if {"low", "high"} <= keys <= {"low", "high", "log"}:
        log = entry.get("log", name in _LOG_BY_DEFAULT)
        if not isinstance(log, bool):
            raise SpaceError(
                f"{source}: log must be a boolean, got log = {log!r}; write log = true or "
                "log = false (no quotes)"
            )
        if _KINDS[name] in (bool, str):
            raise SpaceError(f"{source}: {name} takes {_syntax_hint(name)}")
        low, high = (_value(name, entry[k], source) for k in ("low", "high"))
        return Range(low, high, log=log, integer=_KINDS[name] is int)
    raise SpaceError(
        f"{source}: table keys {sorted(keys)} not understood; use {{low, high[, log]}}, "
        "{choices = [...]} or {value = ...}"
    )


def _value(name: str, raw: object, source: str) -> Any:
    """A flag's text or a TOML value (typed; ints may stand for floats) as the parameter's."""
    kind, given = _KINDS[name], raw
    try:
        if isinstance(raw, str) and kind is not str:
            raw = parse_bool(raw) if kind is bool else kind(raw.strip())
    except ValueError:
        pass
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if kind is str and isinstance(raw, str):
        return raw.strip()
    if type(raw) is kind and (kind is not float or math.isfinite(raw)):  # type: ignore[arg-type]
        return raw
    shown = given.strip() if isinstance(given, str) else given
    raise SpaceError(
        f"{source}: {shown!r} is not a valid {name}; {name} takes {_syntax_hint(name)}"
    )


def _check_known(name: str, source: str) -> None:
    if name not in _KINDS:
        raise SpaceError(
            f"{source}: unknown parameter {name!r}; searchable parameters are "
            f"{', '.join(SEARCHABLE)} (epochs, seed, dataset and device are study flags)"
        )


def _syntax_hint(name: str) -> str:
    kind = _KINDS[name]
    if kind is bool:
        return "true, false or true,false"
    if kind is str:
        return "one name or a comma list, e.g. onecycle,cosine"
    example = {"lr": "1e-4:1", "width": "4:64"}.get(name, "LOW:HIGH")
    return f"a range {example}, a comma list of {kind.__name__}s, or one value"


def _describe(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "choices " + ",".join(_fmt(v) for v in dist.choices)
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return f"range {_fmt(dist.low)}:{_fmt(dist.high)} ({'log' if dist.log else 'linear'})"


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
