"""``python -m mnistcore``: train one configuration and print each epoch.

Examples::

    python -m mnistcore --dataset fashion-mnist --epochs 2
    python -m mnistcore --recipe best.toml --epochs 1          # a recipe; flags override it
    python -m mnistcore --from-trial 7 --storage reports/optuna-journal.log   # replay a trial
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import NoReturn

import torch

from mnistcore.cli import add_config_arguments, config_from_args, run_main, setup_logging
from mnistcore.config import TrainConfig
from mnistcore.data import load_dataset
from mnistcore.device import device_name, resolve_device
from mnistcore.errors import UserError
from mnistcore.model import build_model, count_parameters
from mnistcore.recipe import read_recipe
from mnistcore.train import evaluate, fit

log = logging.getLogger("mnistcore")

FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_NOT_GIVEN = object()  # not a str: argparse would run a str default through the flag's type


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, as for every other user error (argparse would print the usage first)
        self.exit(2, f"error: {message} (see python -m mnistcore --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m mnistcore",
        description="Train one CNN configuration on an MNIST-family dataset, report each epoch. "
        "The defaults are the PyTorch MNIST tutorial's setup.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--data-dir", default="data", help="where IDX files are found or downloaded"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the training set held out for validation",
    )
    parser.add_argument("--quiet", action="store_true", help="only print the final line")
    again = parser.add_argument_group(
        "train a configuration again",
        "flags given besides --recipe or --from-trial override the fields they name",
    )
    again.add_argument(
        "--recipe",
        metavar="FILE.toml",
        help="train the configuration of a TOML recipe (one `field = value` line per field)",
    )
    again.add_argument(
        "--from-trial",
        type=_trial_number,
        metavar="N",
        help="train trial N of a stored search again exactly as the search did (its config, "
        "data split and report steps) and print its curve beside the stored one",
    )
    again.add_argument(
        "--storage",
        help="with --from-trial: the search's --storage (journal file path, sqlite:///..., "
        "postgresql://...; default: reports/optuna-journal.log)",
    )
    again.add_argument(
        "--study-name",
        help="with --from-trial: the study holding the trial (default: the storage's only one)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """The flags, and the names of those given on the command line (TrainConfig fields and
    --val-fraction), which override a recipe's or a stored trial's values."""
    # a recipe's fields become the defaults, so flags given explicitly win and --help shows them
    pre = _Parser(add_help=False)
    pre.add_argument("--recipe")
    pre.add_argument("--from-trial")
    early, _ = pre.parse_known_args(argv)
    if early.recipe is not None and early.from_trial is not None:
        raise UserError("--recipe and --from-trial both name a configuration to train; pick one")
    parser = build_parser()
    if early.recipe is not None:
        parser.set_defaults(**read_recipe(early.recipe).to_dict())
    args = parser.parse_args(argv)
    # parsed again with a default no flag can give: what differs from it is on the command line
    names = (*FIELDS, "val_fraction")
    parser.set_defaults(**dict.fromkeys(names, _NOT_GIVEN))
    again = vars(parser.parse_args(argv))
    return args, {name for name in names if again[name] is not _NOT_GIVEN}


def main(argv: list[str] | None = None) -> int:
    args, given = parse_args(argv)
    setup_logging(args.quiet)
    if args.from_trial is not None:
        if "val_fraction" in given:
            raise UserError(
                "--val-fraction does not apply to --from-trial: a trial replays on the "
                "search's own split; leave it out"
            )
        from search import replay  # optuna and the search, only for a replay

        return replay.main(
            number=args.from_trial,
            storage=args.storage,
            study_name=args.study_name,
            overrides={name: getattr(args, name) for name in FIELDS if name in given},
            data_dir=args.data_dir,
            quiet=args.quiet,
        )
    if args.storage is not None or args.study_name is not None:
        flag = "--storage" if args.storage is not None else "--study-name"
        raise UserError(f"{flag} says where --from-trial finds its trial; add --from-trial N")
    config = config_from_args(args)
    device = resolve_device(config.device)  # fail fast on a missing GPU, before loading data
    data = load_dataset(
        config.dataset, data_dir=args.data_dir, val_fraction=args.val_fraction, seed=config.seed
    )
    params = count_parameters(build_model(config))
    if not args.quiet:
        if args.recipe is not None:
            overridden = sorted(given & set(FIELDS))
            print(
                f"recipe: {args.recipe}"
                + (f" (overridden: {', '.join(overridden)})" if overridden else "")
            )
        print(f"data: {data.describe()}")
        print(
            f"model: {params:,} parameters; device: {device_name(device)}; "
            f"torch {torch.__version__}"
        )
    result = None
    for result in fit(config, data):
        if not args.quiet:
            print(
                f"epoch {result.epoch}/{config.epochs}  loss {result.train_loss:.4f}  "
                f"val acc {result.val_accuracy:.4f}  {result.seconds:.1f} s  "
                f"{result.images_per_second:,.0f} img/s"
            )
    assert result is not None  # epochs >= 1 is validated
    test = evaluate(result.model, data.to(device).test)
    print(f"test accuracy {test.accuracy:.4f} ({test.n} images, {data.name})")
    return 0


def _trial_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a trial number is an integer, got {text!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"trial numbers start at 0, got {number}")
    return number


if __name__ == "__main__":
    run_main(main)
