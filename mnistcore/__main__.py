"""``python -m mnistcore``: train one configuration and print each epoch.

Examples::

    python -m mnistcore --dataset fashion-mnist --epochs 2
    python -m mnistcore --recipe best.toml --save best.pt   # a recipe; flags override its fields
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import torch

from mnistcore.cli import (
    OneLineParser,
    add_config_arguments,
    config_from_args,
    run_main,
    setup_logging,
)
from mnistcore.config import TrainConfig
from mnistcore.data import load_dataset
from mnistcore.device import device_name, resolve_device
from mnistcore.errors import UserError
from mnistcore.model import build_model, count_parameters, save_weights
from mnistcore.recipe import read_recipe
from mnistcore.train import evaluate, fit

log = logging.getLogger("mnistcore")

FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_NOT_GIVEN = object()  # not a str: argparse would run a str default through the flag's type


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m mnistcore",
        description="Train one CNN configuration on an MNIST-family dataset, report each epoch. "
        "The defaults are the PyTorch MNIST tutorial's setup.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--data-dir", default="data", help="where IDX files are found or downloaded"
    )
    parser.add_argument("--quiet", action="store_true", help="only print the final line")
    parser.add_argument(
        "--recipe",
        metavar="FILE.toml",
        help="train the configuration of a TOML recipe (python -m search.export writes one); "
        "flags given besides it override the fields they name",
    )
    parser.add_argument(
        "--save",
        metavar="FILE.pt",
        type=Path,
        help="write the trained weights there (a state_dict for build_model, as search.export)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """The flags, and the names of the TrainConfig fields given on the command line (which
    override a recipe's values)."""
    # a recipe's fields become the defaults, so flags given explicitly win and --help shows them
    pre = OneLineParser(prog="python -m mnistcore", add_help=False)
    pre.add_argument("--recipe")
    early, _ = pre.parse_known_args(argv)
    parser = build_parser()
    if early.recipe is not None:
        parser.set_defaults(**read_recipe(early.recipe).to_dict())
    args = parser.parse_args(argv)
    # parsed again with a default no flag can give: what differs from it is on the command line
    parser.set_defaults(**dict.fromkeys(FIELDS, _NOT_GIVEN))
    again = vars(parser.parse_args(argv))
    return args, {name for name in FIELDS if again[name] is not _NOT_GIVEN}


def main(argv: list[str] | None = None) -> int:
    args, given = parse_args(argv)
    setup_logging(args.quiet)
    config = config_from_args(args)
    device = resolve_device(config.device)  # fail fast on a missing GPU, before loading data
    if args.save is not None and not args.save.parent.is_dir():
        raise UserError(f"--save {args.save}: folder {args.save.parent} does not exist; create it")
    data = load_dataset(
        config.dataset, data_dir=args.data_dir, synthetic_size=config.synthetic_size
    )
    params = count_parameters(build_model(config))
    if not args.quiet:
        if args.recipe is not None:
            overridden = sorted(given)
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
    if args.save is not None:
        save_weights(result.model, args.save)
        print(f"weights: {args.save}")
    return 0


if __name__ == "__main__":
    run_main(main)
