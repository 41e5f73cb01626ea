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


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "field, value",
    [
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
    ],
)
def test_each_bad_field_is_named(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    # The message names the field and the value, on one line, and is a user error (exit 2).
    assert f"{field}=" in message or field in message
    assert repr(value) in message
    assert "\n" not in message
    assert isinstance(info.value, UserError)


def test_replace_validates_again():
    assert TrainConfig().replace(lr=0.5).lr == 0.5
    with pytest.raises(ConfigError, match="lr=-2"):
        TrainConfig().replace(lr=-2.0)


def test_valid_devices():
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        # Validation checks the spelling only; whether CUDA exists is checked when training.
        assert TrainConfig(device=device).device == device
