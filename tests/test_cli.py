import argparse
import subprocess
import sys

import pytest

from mnistcore.cli import add_config_arguments, config_from_args


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env_args = [sys.executable, "-m", "mnistcore", *args]
    return subprocess.run(env_args, capture_output=True, text=True, timeout=300)


def test_trains_one_config_and_prints_epochs():
    proc = run("--dataset", "synthetic", "--epochs", "2", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/2" in proc.stdout and "epoch 2/2" in proc.stdout
    assert "img/s" in proc.stdout and "test accuracy" in proc.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lr", "-1"], "lr=-1.0"),
        (["--dropout", "1.5"], "dropout=1.5"),
        (["--device", "tpu"], "device='tpu'"),
        (["--dataset", "cifar"], "cifar"),
        (["--synthetic-size", "0"], "synthetic_size=0"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, needle):
    proc = run(*args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_help_shows_each_default_once():
    proc = run("--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    assert "SGD momentum, in [0, 1) (default: 0.9)" in text
    assert "(default: 0.9) (default: 0.9)" not in text


@pytest.mark.parametrize("spelling", ["true", "yes", "1", "TRUE"])
def test_boolean_flags_take_the_searchs_spellings(spelling):
    # search.study takes --batch-norm true,false; the same words work here (issue 14)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args(["--batch-norm", spelling])).batch_norm is True
    assert config_from_args(parser.parse_args(["--batch-norm", "false"])).batch_norm is False
    assert config_from_args(parser.parse_args(["--batch-norm"])).batch_norm is True
    assert config_from_args(parser.parse_args(["--no-batch-norm"])).batch_norm is False


def test_a_bad_boolean_names_the_value():
    proc = run("--batch-norm", "maybe")
    assert proc.returncode == 2 and "'maybe' is not a boolean" in proc.stderr
