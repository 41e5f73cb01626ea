"""Numbers and commands as text, one way per kind of value, for the summary and the report; a
missing value is ``–`` (accuracies with their interval: ``studies.intervals``).
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from mnistcore.config import TrainConfig  # torch-free
from studies.storage import DEFAULT_JOURNAL

# TrainConfig's defaults of the fields that describe the machine rather than the network:
# `train_command` leaves them out when default, so the command runs anywhere
MACHINE_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(TrainConfig)
    if f.name in ("device", "threads", "channels_last", "precision")
}


def train_command(config: dict[str, Any]) -> str:
    """The `python -m mnistcore ...` line that trains ``config`` (a TrainConfig as a dict) again:
    every field in its order, booleans as `--x` / `--no-x`, machine fields only when not default.
    """
    if not config:
        raise ValueError(f"train_command needs a recorded configuration, got {config=}")
    words = ["python", "-m", "mnistcore"]
    for name, value in config.items():
        if value is None or (name in MACHINE_DEFAULTS and value == MACHINE_DEFAULTS[name]):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag.removeprefix("--"))
        else:  # repr: the shortest text that reads back as the same float
            words += [flag, repr(value) if isinstance(value, float) else str(value)]
    return shlex.join(words)


def export_command(*, storage: str | None, study_name: str) -> str:
    """The `python -m search.export` line that exports the study's winner: --storage unless the
    default, and always --study-name (right however many studies the storage holds)."""
    words = ["python", "-m", "search.export", "--out", "DIR"]
    return shlex.join([*words, *storage_option(storage), "--study-name", study_name])


def storage_option(storage: str | None) -> list[str]:
    """``["--storage", S]``, or none for the default journal (None or its path)."""
    if storage is None or ("://" not in storage and Path(storage) == DEFAULT_JOURNAL):
        return []
    return ["--storage", hide_password(storage)]


def hide_password(storage: str) -> str:
    """A storage as pages and terminals show it: a database URL's password as ***."""
    if "://" not in storage:
        return storage  # a journal file path
    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # an unusual URL that still opened: show it without credentials
        return storage.split("://", 1)[0] + "://…"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_epochs(epochs: float | None) -> str:
    """Epochs: "13" when whole (at 2 decimals), else "0.33"; None (or NaN) is "–"."""
    return "–" if _missing(epochs) else f"{float(epochs):.2f}".removesuffix(".00")


def percent(value: float | None, decimals: int = 2) -> str:
    """An accuracy (``96.00%``) or, with ``decimals=0``, a share (``25%``)."""
    return "–" if _missing(value) else f"{value:.{decimals}%}"


def format_images_per_second(value: float | None) -> str:
    return "–" if _missing(value) else f"{value:,.0f}"


def format_ratio(value: float | None) -> str:
    return "–" if _missing(value) else f"{value:.1f}×"


def format_value(value: Any) -> str:
    """A parameter's value: floats to 4 significant digits, tiny or huge ones as 1.00e-05."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.4g}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
