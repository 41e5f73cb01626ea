"""Command-line plumbing shared by the entry points: flags generated from ``TrainConfig`` and
the rule that a user's mistake is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from mnistcore.config import TrainConfig, parse_bool
from mnistcore.errors import UserError

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # the shell's code for "stopped by SIGINT"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming ``--help`` and exit code 2 (argparse would
    print its usage block first), as every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(USER_ERROR_EXIT, f"error: {message} (see {self.prog} --help)\n")


def field_help(name: str) -> str:
    """The one-line help of TrainConfig's field ``name`` (from its definition)."""
    return next(f.metadata["help"] for f in dataclasses.fields(TrainConfig) if f.name == name)


def add_config_arguments(
    parser: argparse.ArgumentParser, *, only: Sequence[str] | None = None
) -> None:
    """Add ``--field`` flags for TrainConfig's fields (or ``only`` these). The parser's
    ArgumentDefaultsHelpFormatter shows each default."""
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f.metadata["help"]
        if isinstance(default, bool):
            no_flag = "--no-" + f.name.replace("_", "-")
            parser.add_argument(
                flag,
                no_flag,
                action=_BoolFlag,
                default=default,
                help=f"{help_text} ({flag} [true|false|yes|no|1|0], {no_flag})",
            )
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)


class _BoolFlag(argparse.Action):
    """``--batch-norm``, ``--batch-norm true`` (the spellings of ``parse_bool``, as in
    ``python -m search.study --batch-norm true,false``) and ``--no-batch-norm``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs="?", metavar="BOOL", **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: object,
        option_string: str | None = None,
    ) -> None:
        negated = bool(option_string and option_string.startswith("--no-"))
        if value is None:
            setattr(namespace, self.dest, not negated)
            return
        if negated:
            parser.error(f"{option_string} takes no value, got {value!r}")
        try:
            setattr(namespace, self.dest, parse_bool(str(value)))
        except ValueError as e:
            parser.error(f"{option_string}: {e}")


def config_from_args(args: argparse.Namespace, **overrides: object) -> TrainConfig:
    """Build a TrainConfig from the parsed flags that name its fields."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    values.update(overrides)
    return TrainConfig(**values)


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_main(main: Callable[[], int | None]) -> None:
    """Run ``main``; a UserError becomes one line on stderr and exit code 2, a Ctrl-C that
    ``main`` did not handle (during start-up, say) the line "interrupted" and exit code 130."""
    try:
        code = main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = INTERRUPTED_EXIT
    if code == INTERRUPTED_EXIT:
        _exit_interrupted()
    sys.exit(code or 0)


def _exit_interrupted() -> None:
    """Exit with 130 after a Ctrl-C that was handled (trial marked, summary printed).

    Measured: ``python -m search.study`` interrupted within a trial's first second, on a loaded
    machine, returned 130 from main and called sys.exit(130), yet the process ended killed by
    SIGINT (-2 to its parent) in 2-3 runs of 10. CPython 3.11 under ``-m`` re-raises SIGINT at
    exit when it has flagged a KeyboardInterrupt as unhandled, and a KeyboardInterrupt raised
    inside code torch runs lazily on the first training step sets that flag though ours
    catches it. Everything is stored by now, so leave without the interpreter's shutdown."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)
