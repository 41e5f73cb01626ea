"""What the benchmarks time on the mnistcore side: ``Population.train`` (the step the search and
``fit`` train with), ``evaluate``, ``fit``'s epochs and batches."""

from __future__ import annotations

import collections
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from mnistcore import (
    Dataset,
    Population,
    Split,
    TrainConfig,
    evaluate,
    fit,
    iterate_batches,
    preset,
)

RESIDENT = "synthetic-digits"  # extra_info["dataset"] of the cases that train on resident_data
# The train-step matrix's variants of the seed net, beside mnistcore's presets "seed" (the
# tutorial's: conv 1->10 5x5, fc 1440->128->10, 186k parameters) and "study" (the study's).
VARIANTS = {"w16": {"width": 16}, "w64": {"width": 64}, "bn": {"batch_norm": True}}


def bench_config(model: str, **changes: object) -> TrainConfig:
    """``mnistcore.preset(model)`` with ``changes``, or the seed net changed as VARIANTS says."""
    if model in VARIANTS:
        return preset("seed", **VARIANTS[model], **changes)
    return preset(model, **changes)


def population_steps(
    configs: Sequence[TrainConfig], data: Dataset, images: int, calls: int
) -> tuple[Population, Callable[[], object]]:
    """A ``Population`` of ``configs`` on ``data`` whose schedule (it trains no further) lasts
    ``calls`` calls, and one call: ``train(images)``, as the search trains (ends with a sync)."""
    epochs = math.ceil(calls * images / len(data.train.labels)) + 1
    population = Population([c.replace(epochs=epochs) for c in configs], data)
    return population, lambda: population.train(images)


def member_configs(config: TrainConfig, population: int) -> list[TrainConfig]:
    """``population`` variants of ``config`` as a search's trials differ: lr from half to
    twice ``config.lr`` (log-spaced), momentum around it (+-0.05, kept in [0, 0.99]), each
    its own seed. Member 0 is the lowest lr; a single member is ``config`` itself."""
    if population == 1:
        return [config]
    configs = []
    for i in range(population):
        t = i / (population - 1)  # 0..1
        momentum = min(max(config.momentum + 0.1 * (t - 0.5), 0.0), 0.99)
        lr = config.lr * 4 ** (t - 0.5)
        configs.append(config.replace(lr=lr, momentum=momentum, seed=config.seed + i))
    return configs


def evaluation(model: nn.Module, split: Split, batch_size: int) -> Callable[[], object]:
    """mnistcore's ``evaluate`` over ``split`` (it syncs once itself, for ``.item()``)."""
    return functools.partial(evaluate, model, split, batch_size=batch_size)


def endless(make: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]) -> Iterator:
    """Batches from ``make()``, started again whenever it runs out (a new shuffle each time)."""
    while True:
        yield from make()


def mnistcore_batches(data: Dataset, batch_size: int, count: int) -> Callable[[], object]:
    """``count`` batches as the trainer draws them (``iterate_batches``: randperm indexing)."""
    images, labels = data.train
    generator = torch.Generator().manual_seed(0)
    stream = endless(lambda: iterate_batches(images, labels, batch_size, generator))
    return lambda: collections.deque(itertools.islice(stream, count), maxlen=0)  # draw, keep none


def epoch_subset(data: Dataset, n_train: int, n_val: int = 64) -> Dataset:
    """``data`` cut to ``n_train`` training images, ``n_val`` validation and test images."""
    if len(data.train.labels) < n_train:
        raise ValueError(f"{data.name} has {len(data.train.labels)} training images < {n_train=}")

    def head(split: Split, n: int) -> Split:
        return Split(split.images[:n], split.labels[:n])

    return Dataset(
        name=data.name,
        source=data.source,
        train=head(data.train, n_train),
        val=head(data.val, n_val),
        test=head(data.test, n_val),
        mean=data.mean,
        std=data.std,
    )


def mnistcore_epoch(config: TrainConfig, data: Dataset) -> Callable[[], None]:
    """One epoch of ``fit`` over ``data.train``, a fresh model each call; its end-of-epoch
    evaluation on ``data.val`` (kept tiny by ``epoch_subset``) is in the time."""
    config = config.replace(epochs=1)

    def work() -> None:
        epochs = fit(config, data)
        next(epochs)
        epochs.close()

    return work
