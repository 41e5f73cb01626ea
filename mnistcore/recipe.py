"""Recipes: a ``TrainConfig`` as a TOML file, every field written, so a run can be repeated.

A recipe file holds one ``key = value`` line per ``TrainConfig`` field (top level) and may open
with ``#`` comment lines saying where it came from (the study, the command that found it)::

    # found by: python -m search.study --dataset fashion-mnist ...
    lr = 0.2
    momentum = 0.9
    ...

``python -m mnistcore --recipe FILE.toml`` trains it; ``python -m search.export`` writes one.
Reading is strict: an unknown key, a value of the wrong type or out of range is one
``RecipeError`` line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path

from mnistcore.config import TrainConfig
from mnistcore.errors import ConfigError, UserError

SUFFIX = ".toml"


class RecipeError(UserError):
    """A recipe file is missing, unreadable or does not describe a ``TrainConfig``."""


def read_recipe(path: str | Path) -> TrainConfig:
    """The ``TrainConfig`` of the recipe at ``path``; fields it leaves out keep their defaults."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(
            f"recipe {path} does not exist; give the path of a .toml recipe "
            "(python -m search.export --out DIR writes one)"
        ) from None
    except UnicodeDecodeError:
        raise RecipeError(
            f"recipe {path} is not text (a weights file?); give the .toml recipe that "
            "python -m search.export wrote beside it"
        ) from None
    except OSError as e:
        raise RecipeError(f"recipe {path} cannot be read: {e.strerror or e}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"recipe {path} is not valid TOML: {e}; fix that line") from None
    return config_from_table(table, source=str(path))


def config_from_table(table: dict[str, object], *, source: str) -> TrainConfig:
    """A ``TrainConfig`` from a recipe's table: each value of its field's type (an int is
    accepted for a float field); ``source`` names the file in errors."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig()
    values: dict[str, object] = {}
    for key, value in table.items():
        if key not in fields:
            raise RecipeError(
                f"recipe {source}: unknown field {key!r}; the fields are {', '.join(fields)}"
            )
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise RecipeError(
                f"recipe {source}: {key} = {value!r} is a {type(value).__name__}, "
                f"{key} must be a {expected.__name__} (e.g. {key} = "
                f"{_toml_value(getattr(defaults, key))})"
            )
        values[key] = value
    try:
        return TrainConfig(**values)
    except ConfigError as e:
        raise RecipeError(f"recipe {source}: {e}") from None


def recipe_text(config: TrainConfig, header: Sequence[str] = ()) -> str:
    """The recipe of ``config``: ``header`` lines as ``#`` comments, then every field."""
    lines = [f"# {line}".rstrip() for text in header for line in text.splitlines()]
    lines += [f"{k} = {_toml_value(v)}" for k, v in config.to_dict().items()]
    return "\n".join(lines) + "\n"


def write_recipe(path: str | Path, config: TrainConfig, header: Sequence[str] = ()) -> Path:
    """Write ``config``'s recipe to ``path`` (replacing it); returns the path."""
    path = Path(path)
    path.write_text(recipe_text(config, header), encoding="utf-8")
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a recipe holds finite numbers only, got {value!r}")
        return repr(value)  # shortest text that reads back as the same float
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no TOML form for {value!r}")
