"""The search space: suggest() with FixedTrial, flag and TOML syntax, one-line errors."""

from __future__ import annotations

import optuna
import pytest

from mnistcore import TrainConfig, UserError
from search.space import (
    DEFAULT_SPACE,
    START_POINT,
    Choice,
    Range,
    SpaceError,
    build_space,
    check_compatible,
    check_same_space,
    parse_dimension,
    read_space_file,
    searched_names,
    space_record,
    start_params,
    suggest,
)

DEFAULT_PARAMS = {
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "dropout": 0.1,
    "width": 16,
    "depth": 2,
    "hidden": 128,
    "batch_size": 128,
    "batch_norm": True,
    "schedule": "onecycle",
}


def test_suggest_builds_the_config_of_the_trial() -> None:
    base = TrainConfig(epochs=3, seed=7, dataset="synthetic")
    config = suggest(optuna.trial.FixedTrial(DEFAULT_PARAMS), DEFAULT_SPACE, base=base)
    assert config == base.replace(**DEFAULT_PARAMS)
    # fields outside the space come from the base config
    assert (config.epochs, config.seed, config.dataset) == (3, 7, "synthetic")


def test_only_searched_parameters_are_optuna_params() -> None:
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    config = suggest(trial, DEFAULT_SPACE)
    # pinned values go straight into the config: Optuna would refuse a pin changed on resume
    assert set(trial.params) == set(searched_names(DEFAULT_SPACE))
    assert "depth" not in trial.params and config.depth == 2


def test_a_resumed_study_refuses_a_changed_scale_or_choice_list() -> None:
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: suggest(t, DEFAULT_SPACE).lr, n_trials=1)
    trials = study.get_trials()
    # narrower ranges and new pins are fine
    check_compatible(build_space(overrides={"lr": "0.01:0.1", "width": "8"}), trials, "s")
    with pytest.raises(SpaceError, match="use a new --study-name"):
        check_compatible(build_space(overrides={"lr": "0.01:0.1:linear"}), trials, "s")
    with pytest.raises(SpaceError, match="choices true,false"):
        check_compatible(build_space(overrides={"batch_norm": "false,true"}), trials, "s")


def test_flags_override_defaults() -> None:
    space = build_space(overrides={"lr": "1e-4:1", "width": "4:64", "momentum": "0.9"})
    assert space["lr"] == Range(1e-4, 1.0, log=True)
    assert space["width"] == Range(4, 64, log=True, integer=True)
    # a single value pins the parameter
    assert space["momentum"] == Choice((0.9,))
    assert space["dropout"] == DEFAULT_SPACE["dropout"]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("momentum", "0.5:0.9:log", Range(0.5, 0.9, log=True)),
        ("lr", "0.01:0.1:linear", Range(0.01, 0.1)),
        ("batch_size", "64,128,256", Choice((64, 128, 256))),
        ("batch_norm", "true,false", Choice((True, False))),
        ("batch_norm", "off", Choice((False,))),
        ("schedule", "onecycle,cosine", Choice(("onecycle", "cosine"))),
    ],
)
def test_parse_dimension(name: str, text: str, expected: object) -> None:
    assert parse_dimension(name, text) == expected


def test_toml_file_then_flags(tmp_path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(
        'lr = "1e-3:0.1"\n'
        "momentum = 0.8\n"
        "batch-size = { choices = [64, 256] }\n"
        "width = { low = 8, high = 24, log = false }\n"
    )
    space = build_space(toml_path=path, overrides={"momentum": "0.95"})
    assert space["lr"] == Range(1e-3, 0.1, log=True)
    assert space["batch_size"] == Choice((64, 256))
    assert space["width"] == Range(8, 24, integer=True)
    # flags win over the file
    assert space["momentum"] == Choice((0.95,))
    config = suggest(
        optuna.trial.FixedTrial(
            {**DEFAULT_PARAMS, "lr": 0.01, "batch_size": 64, "momentum": 0.95}
        ),
        space,
    )
    assert (config.lr, config.batch_size, config.momentum) == (0.01, 64, 0.95)


def test_read_space_file_reports_unknown_parameters(tmp_path) -> None:
    path = tmp_path / "space.toml"
    path.write_text("learning_rate = 0.1\n")
    with pytest.raises(SpaceError, match="unknown parameter 'learning_rate'"):
        read_space_file(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": "1:0.1"}, "low must be < high"),
        ({"width": "8:8"}, "low must be < high"),
        ({"lr": "0:1"}, "log-scale range needs bounds > 0"),
        ({"weight_decay": "0:1e-3:log"}, "log-scale range needs bounds > 0"),
        ({"momentum": "0.5:1"}, "momentum must be in \\[0, 1\\)"),
        ({"depth": "1:9"}, "depth must be an integer in 1..4"),
        ({"schedule": "warmup"}, "schedule must be one of"),
        ({"lr": "fast"}, "'fast' is not a valid lr"),
        ({"batch_norm": "1:2"}, "is not a range"),
        ({"epochs": "3:5"}, "unknown parameter 'epochs'"),
    ],
)
def test_bad_ranges_are_one_line_user_errors(overrides: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message) as info:
        build_space(overrides=overrides)
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


def test_missing_or_broken_space_file(tmp_path) -> None:
    with pytest.raises(SpaceError, match="not found"):
        build_space(toml_path=tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("lr = [1e-3, 0.1]\n")
    # a bare list could be a range or choices: the error says how to write either
    with pytest.raises(SpaceError, match="ambiguous"):
        build_space(toml_path=broken)
    broken.write_text("lr = \n")
    with pytest.raises(SpaceError, match="cannot read space file"):
        build_space(toml_path=broken)


def test_start_point_keeps_only_values_inside_the_space() -> None:
    assert start_params(DEFAULT_SPACE) == START_POINT
    space = build_space(overrides={"width": "4", "lr": "0.1:1", "batch_norm": "false,true"})
    # width is pinned, lr 0.05 lies outside 0.1:1: the sampler picks those
    assert start_params(space) == {"momentum": 0.9, "batch_norm": True, "dropout": 0.25}


# -- what a new user trips over (issue 14): messages that name the real mistake and place


def test_a_quoted_log_flag_in_a_space_file_says_log_must_be_a_boolean(tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('lr = { low = 0.01, high = 0.5, log = "true" }\n')
    with pytest.raises(SpaceError) as info:
        build_space(toml_path=space)
    # not "lr takes a range 1e-4:1 ...", which the file already is
    assert "log must be a boolean" in str(info.value) and "log = true" in str(info.value)


def test_a_bad_choice_in_a_space_file_names_the_file_and_the_choice(tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('schedule = "cosine,step"\n')
    with pytest.raises(SpaceError) as info:
        build_space(toml_path=space)
    message = str(info.value)
    # the file, not a --schedule flag the user never typed; a choice list has no range to narrow
    assert message.startswith(f"{space}: schedule cosine,step:")
    assert "'step'" in message and "leave that choice out" in message
    assert "--schedule" not in message and "narrow the range" not in message


def test_a_changed_scale_shows_both_scales() -> None:
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: suggest(t, DEFAULT_SPACE).lr, n_trials=1)
    with pytest.raises(SpaceError) as info:
        check_compatible(build_space(overrides={"lr": "0.01:0.5:linear"}), study.trials, "s")
    # "0.01:0.5" against "0.01:0.5 (log)" looked identical: the new side says linear
    assert "(linear)" in str(info.value) and "(log)" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "difference"),
    [
        ({"batch_size": "64,128"}, "searches batch_size"),
        ({"momentum": "0.9"}, "pins momentum=0.9"),
        ({"depth": "3"}, "pins depth=3 (the study pinned depth=2)"),
    ],
)
def test_a_space_that_searches_other_parameters_does_not_fit(overrides, difference) -> None:
    stored = space_record(DEFAULT_SPACE)
    check_same_space(build_space(overrides={"lr": "0.02:0.3"}), stored, [], "s")  # ranges may move
    with pytest.raises(SpaceError) as info:
        check_same_space(build_space(overrides=overrides), stored, [], "s")
    assert difference in str(info.value) and "--study-name" in str(info.value)
