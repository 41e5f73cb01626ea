import subprocess
import sys

import pytest


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
        (["--val-fraction", "2"], "val_fraction=2.0"),
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
