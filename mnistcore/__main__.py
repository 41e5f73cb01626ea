"""``python -m mnistcore``: train one configuration and print each epoch.

Example: ``python -m mnistcore --dataset fashion-mnist --epochs 2``
"""

from __future__ import annotations

import argparse
import logging

import torch

from mnistcore.cli import add_config_arguments, config_from_args, run_main, setup_logging
from mnistcore.data import load_dataset
from mnistcore.device import device_name, resolve_device
from mnistcore.model import build_model, count_parameters
from mnistcore.train import evaluate, fit

log = logging.getLogger("mnistcore")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.quiet)
    config = config_from_args(args)
    device = resolve_device(config.device)  # fail fast on a missing GPU, before loading data
    data = load_dataset(
        config.dataset, data_dir=args.data_dir, val_fraction=args.val_fraction, seed=config.seed
    )
    params = count_parameters(build_model(config))
    if not args.quiet:
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


if __name__ == "__main__":
    run_main(main)
