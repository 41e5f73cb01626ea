"""``TrainConfig``: every knob of one training run, validated on construction."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from mnistcore.errors import ConfigError

SCHEDULES = ("constant", "onecycle", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
DATASETS = ("mnist", "fashion-mnist", "mnist-5k", "synthetic")
# How a boolean is spelled on the command line and in space files (case-insensitive)
TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")
MAX_DEPTH = 4  # 28 -> 24 -> 12 | 12 -> 6 | 6 -> 3 | 3 -> 1 spatial size after each block
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _field(default: object, help: str) -> object:
    """A field with its one-line help, from which every command line's flag is generated."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The defaults are the PyTorch MNIST tutorial's setup (the "seed")."""

    lr: float = _field(0.01, "SGD learning rate (peak rate for the onecycle schedule)")
    momentum: float = _field(0.9, "SGD momentum, in [0, 1)")
    weight_decay: float = _field(0.0, "L2 penalty added by SGD")
    schedule: str = _field(
        "constant", "learning-rate schedule per step: constant | onecycle | cosine"
    )
    depth: int = _field(1, "number of conv blocks (5x5 conv, [BN], ReLU, 2x2 max-pool), 1..4")
    width: int = _field(10, "channels of the first conv block; each next block doubles it")
    hidden: int = _field(128, "units of the hidden fully-connected layer")
    batch_norm: bool = _field(False, "BatchNorm2d after each conv")
    dropout: float = _field(0.0, "dropout probability before the output layer, in [0, 1)")
    batch_size: int = _field(64, "images per optimizer step")
    epochs: int = _field(5, "passes over the training split")
    seed: int = _field(0, "seeds the weights, the batch order and dropout (not the data split)")
    device: str = _field("auto", "auto | cpu | cuda | cuda:N (auto: CUDA when available)")
    dataset: str = _field("mnist", "mnist | fashion-mnist | mnist-5k | synthetic")
    synthetic_size: int = _field(2000, "training images generated for dataset synthetic")
    precision: str = _field(
        "auto", "auto | fp32 | bf16 (autocast); auto: bf16 where the device runs it fast"
    )
    # on the GPU only: the fused trainer runs NCHW on the CPU, where NHWC made no difference
    channels_last: bool = _field(True, "NHWC memory format for the convolutions (CUDA)")
    threads: int = _field(0, "CPU threads for torch; 0 = one per available core")

    def __post_init__(self) -> None:
        _check(self.lr > 0 and _finite(self.lr), f"lr must be > 0, got lr={self.lr!r}")
        _check(
            0 <= self.momentum < 1, f"momentum must be in [0, 1), got momentum={self.momentum!r}"
        )
        _check(
            self.weight_decay >= 0 and _finite(self.weight_decay),
            f"weight_decay must be >= 0, got weight_decay={self.weight_decay!r}",
        )
        _check(
            self.schedule in SCHEDULES,
            f"schedule must be one of {', '.join(SCHEDULES)}, got schedule={self.schedule!r}",
        )
        _check(
            _int(self.depth) and 1 <= self.depth <= MAX_DEPTH,
            f"depth must be an integer in 1..{MAX_DEPTH}, got depth={self.depth!r}",
        )
        for name in ("width", "hidden", "batch_size", "epochs", "synthetic_size"):
            value = getattr(self, name)
            _check(
                _int(value) and value >= 1, f"{name} must be an integer >= 1, got {name}={value!r}"
            )
        _check(
            isinstance(self.batch_norm, bool),
            f"batch_norm must be a bool, got {self.batch_norm!r}",
        )
        _check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got dropout={self.dropout!r}")
        _check(
            _int(self.seed) and self.seed >= 0,
            f"seed must be an integer >= 0, got seed={self.seed!r}",
        )
        _check(
            isinstance(self.device, str) and bool(_DEVICE_RE.match(self.device)),
            f"device must be auto, cpu, cuda or cuda:N, got device={self.device!r}",
        )
        _check(
            self.dataset in DATASETS,
            f"dataset must be one of {', '.join(DATASETS)}, got dataset={self.dataset!r}",
        )
        _check(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, got precision={self.precision!r}",
        )
        _check(
            isinstance(self.channels_last, bool),
            f"channels_last must be a bool, got channels_last={self.channels_last!r}",
        )
        _check(
            _int(self.threads) and self.threads >= 0,
            f"threads must be >= 0, got threads={self.threads!r}",
        )

    def replace(self, **changes: object) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


# Named networks. "seed" is the PyTorch MNIST tutorial's setup (TrainConfig's defaults); "study"
# is the study's default net: the search pins its architecture and starts a new study from it
# (its first trial), and bench/ times it beside the seed. conv 1->16, 16->32 5x5, fc
# 1152->128->10: 162,218 parameters.
PRESETS: dict[str, dict[str, object]] = {
    "seed": {},
    "study": {
        "depth": 2,
        "width": 16,
        "hidden": 128,
        "batch_norm": True,
        "batch_size": 128,
        "schedule": "onecycle",
        "lr": 0.05,
        "momentum": 0.9,
        "dropout": 0.25,
    },
}


def preset(name: str, **changes: object) -> TrainConfig:
    """The ``PRESETS`` network ``name`` with ``changes`` (e.g. ``preset("study", epochs=3)``)."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return TrainConfig(**{**PRESETS[name], **changes})  # type: ignore[arg-type]


def parse_bool(text: str) -> bool:
    """``true``/``false`` and their other spellings (TRUE_WORDS, FALSE_WORDS); else ValueError."""
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not a boolean; use true or false")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))
