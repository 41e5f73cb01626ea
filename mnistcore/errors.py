"""Exceptions of the core.

A ``UserError`` is a mistake the user can fix (bad value, missing data, no CUDA): command-line
entry points print its one-line message and exit with code 2. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix; the message is one line naming the value and the fix."""


class ConfigError(UserError):
    """A ``TrainConfig`` field is out of range."""


class DatasetError(UserError):
    """A dataset is unknown, missing, corrupt or truncated."""


class DeviceError(UserError):
    """The requested device does not exist on this machine."""


class NonFiniteLossError(RuntimeError, UserError):
    """Training diverged: the loss became NaN or infinite.

    An outcome of a configuration (too high a learning rate, say), so a user error too: a
    single run (``python -m mnistcore``) ends with its one-line message and exit code 2. In
    the search a diverged member becomes a pruned trial instead, with this message as its
    recorded reason (mnistcore/population.py). ``lr``: named in the message when given.
    """

    def __init__(self, epoch: int, step: int, loss: float, *, lr: float | None = None) -> None:
        now = f" (now {lr})" if lr is not None else ""
        super().__init__(
            f"training diverged: non-finite training loss {loss} at epoch {epoch}, step {step}; "
            f"lower --lr{now}"
        )
        self.epoch = epoch
        self.step = step
        self.loss = loss
        self.lr = lr
