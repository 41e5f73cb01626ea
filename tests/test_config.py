import dataclasses

import pytest

from mnistcore import ConfigError, TrainConfig, UserError


def test_defaults_are_the_seed_setup():
    c = TrainConfig()
    # The tutorial: SGD lr 0.01 momentum 0.9, batch 64, one conv of 10 channels, fc 128.
    assert (c.lr, c.momentum, c.batch_size, c.depth, c.width, c.hidden) == (
        0.01,
        0.9,
        64,
        1,
        10,
        128,
    )
    assert not c.batch_norm and c.dropout == 0 and c.schedule == "constant"


BAD_VALUES = [
    ("lr", 0.0),
    ("lr", -1.0),
    ("lr", float("nan")),
    ("momentum", 1.0),
    ("momentum", -0.1),
    ("weight_decay", -1e-4),
    ("schedule", "linear"),
    ("depth", 0),
    ("depth", 5),
    ("width", 0),
    ("hidden", 0),
    ("batch_size", 0),
    ("batch_size", 1.5),
    ("epochs", 0),
    ("synthetic_size", 0),
    ("batch_norm", "yes"),
    ("dropout", 1.0),
    ("dropout", -0.2),
    ("seed", -1),
    ("device", "gpu"),
    ("device", "cuda:x"),
    ("dataset", "cifar10"),
    ("precision", "fp16"),
    ("channels_last", 1),
    ("threads", -1),
]


def test_every_field_is_validated():
    # Each field has a bad value below that construction rejects: a new field must come with
    # its check in __post_init__ and a case here.
    assert {f.name for f in dataclasses.fields(TrainConfig)} == {name for name, _ in BAD_VALUES}


@pytest.mark.parametrize("field, value", BAD_VALUES)
def test_each_bad_field_is_named(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    # The message names the field and the value, on one line, and is a user error (exit 2).
    assert field in message
    assert repr(value) in message
    assert "\n" not in message
    assert isinstance(info.value, UserError)


def test_replace_validates_again():
    # replace changes the named fields only ...
    assert TrainConfig(width=16).replace(lr=0.5) == TrainConfig(width=16, lr=0.5)
    # ... and validates the result, so a config cannot be changed into an invalid one.
    with pytest.raises(ConfigError, match="lr=-2"):
        TrainConfig().replace(lr=-2.0)


def test_to_dict_round_trips():
    config = TrainConfig(lr=0.05, schedule="onecycle", depth=2, batch_norm=True, device="cpu")
    d = config.to_dict()
    # One entry per field, and TrainConfig(**d) rebuilds the same config (as a recipe would).
    assert set(d) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert TrainConfig(**d) == config
    with pytest.raises(ConfigError, match="depth=9"):
        TrainConfig(**{**d, "depth": 9})


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_valid_devices(device):
    # Validation checks the spelling only (no ConfigError here, not even for a GPU this machine
    # lacks); whether CUDA exists is checked when training.
    TrainConfig(device=device)
