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


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss became NaN or infinite.

    Not a user error: it is an outcome of a configuration (too high a learning rate, say). The
    search turns it into a pruned trial with the reason recorded.
    """

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"non-finite training loss {loss} at epoch {epoch}, step {step}")
        self.epoch = epoch
        self.step = step
        self.loss = loss
