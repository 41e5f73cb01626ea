"""What the benchmarks time on the mnistcore side: fit's step, the search's population step,
evaluate and fit."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from mnistcore import (
    Dataset,
    Population,
    Split,
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    evaluate,
    fit,
    iterate_batches,
    seed_everything,
    train_batches,
    train_step,
)

# Model presets: TrainConfig fields changed from the seed (the PyTorch tutorial's net).
PRESETS: dict[str, dict[str, object]] = {
    "seed": {},  # conv 1->10 5x5, fc 1440->128->10: 186k parameters
    "w16": {"width": 16},
    "w64": {"width": 64},
    "bn": {"batch_norm": True},
}


# The population suite's presets (test_train_step times PRESETS only). "study" is the study's
# default net: search/space.py's DEFAULT_SPACE pins and its START_POINT, the first trial of a
# new study (a copy: bench/ runs on GPU images without optuna; tests/test_bench_population.py
# checks that it matches).
POPULATION_PRESETS: dict[str, dict[str, object]] = {
    "seed": {},
    "study": {
        "depth": 2,
        "width": 16,
        "hidden": 128,
        "batch_norm": True,
        "batch_size": 128,
        "schedule": "onecycle",
        "lr": 0.05,
        "momentum": 0.9,
        "dropout": 0.25,
    },  # conv 1->16, 16->32 5x5, fc 1152->128->10: 162,218 parameters
}


def preset_config(name: str, **changes: object) -> TrainConfig:
    presets = {**PRESETS, **POPULATION_PRESETS}
    if name not in presets:
        raise ValueError(f"model preset must be one of {', '.join(presets)}, got {name=}")
    return TrainConfig(**{**presets[name], **changes})  # type: ignore[arg-type]


def fixed_batch(batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch (B, 1, 28, 28) and labels (B,), as nanoGPT's bench.py does.

    The same batch serves both memory formats, as ``fit``'s batches do: with one channel the
    NCHW-contiguous strides are channels_last-contiguous too, so there is nothing to convert.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
    return x, y


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
) -> Callable[[], None]:
    """``steps`` steps of mnistcore's ``train_batches`` (the loop ``fit`` runs) on the batch
    ``x, y``, no sync inside."""

    def work() -> None:
        for _loss in train_batches(model, optimizer, itertools.repeat((x, y), steps)):
            pass

    return work


@dataclass(frozen=True)
class CapturedStep:
    """One ``train_step`` captured as a CUDA graph, with every tensor owner the graph uses.

    The graph holds raw device addresses, not references: replayed after the model, the
    optimizer (its momentum buffers) or the batch were freed, it would write into memory the
    caching allocator has since handed out again. Holding them here keeps them alive as long
    as the graph.
    """

    graph: torch.cuda.CUDAGraph
    model: nn.Module
    optimizer: torch.optim.Optimizer
    x: torch.Tensor  # (B, 1, 28, 28) static input: copy new data in to train on it
    y: torch.Tensor  # (B,)
    loss: torch.Tensor  # () static output: the last replay's loss

    def replay(self) -> None:
        self.graph.replay()


def capture_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> CapturedStep:
    """One ``train_step`` on the static batch ``x, y`` captured as a CUDA graph.

    Whole-network capture as in PyTorch's CUDA graphs notes: warm-up steps on a side stream
    (cuDNN autotuning, momentum buffers created), then capture. Replaying it runs forward,
    backward and the SGD update with one launch instead of dozens.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            train_step(model, optimizer, x, y)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        # zero_grad(set_to_none) inside only drops Python references; backward then allocates
        # the gradients from the graph's private pool, where optimizer.step reads them.
        loss = train_step(model, optimizer, x, y)
    return CapturedStep(graph, model, optimizer, x, y, loss)


def graph_steps(step: CapturedStep, steps: int) -> Callable[[], None]:
    """``steps`` replays of ``step``, no sync inside; the closure keeps ``step`` alive."""

    def work() -> None:
        for _ in range(steps):
            step.replay()

    return work


def evaluation(model: nn.Module, split: Split, batch_size: int) -> Callable[[], None]:
    """mnistcore's ``evaluate`` over ``split`` (it syncs once itself, for ``.item()``)."""

    def work() -> None:
        evaluate(model, split, batch_size=batch_size)

    return work


def endless(make: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]) -> Iterator:
    """Batches from ``make()``, started again whenever it runs out (a new shuffle each time)."""
    while True:
        yield from make()


def mnistcore_batches(data: Dataset, batch_size: int, count: int) -> Callable[[], None]:
    """Produce ``count`` batches as ``fit`` does: ``iterate_batches`` (randperm indexing of
    device tensors), which hands its batches to ``train_batches`` unconverted."""
    images, labels = data.train
    generator = torch.Generator().manual_seed(0)
    stream = endless(lambda: iterate_batches(images, labels, batch_size, generator))

    def work() -> None:
        for _batch in itertools.islice(stream, count):
            pass

    return work


def epoch_subset(data: Dataset, n_train: int, n_val: int = 64) -> Dataset:
    """``data`` cut to its first ``n_train`` training images and a token validation split."""
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
    """One epoch of mnistcore's ``fit`` over ``data.train``: a fresh model each call.

    This is ``fit``'s own loop; its end-of-epoch evaluation on ``data.val`` (kept tiny by
    ``epoch_subset``) is included in the time.
    """
    config = config.replace(epochs=1)

    def work() -> None:
        epochs = fit(config, data)
        next(epochs)
        epochs.close()

    return work


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


def epochs_for(images: int, data: Dataset) -> int:
    """Epochs whose lr schedule covers ``images`` training images of ``data`` (plus one spare):
    a population refuses to train past its schedule, and OneCycleLR past its last step."""
    return math.ceil(images / len(data.train.labels)) + 1


def population_steps(population: Population, images: int) -> Callable[[], None]:
    """``population.train(images)``: every member trains on the next ``images`` images of the
    shared batch order, drawn from the resident data (ends with the loss check's sync)."""

    def work() -> None:
        population.train(images)

    return work


def single_steps(
    config: TrainConfig, data: Dataset, steps: int
) -> tuple[Callable[[], None], nn.Module]:
    """``steps`` steps of one ``config`` model as ``fit`` runs them: ``train_batches`` over
    ``iterate_batches`` of the resident ``data.train`` (a new shuffle at each epoch's end),
    with the config's lr schedule; no sync inside. Returns the work and the model."""
    device = torch.device(config.device)
    seed_everything(config.seed)  # also turns cudnn.benchmark on, as fit does
    data = data.to(device)
    model = build_model(config, device)
    optimizer = build_optimizer(model, config)
    images, labels = data.train
    scheduler = build_scheduler(optimizer, config, math.ceil(len(labels) / config.batch_size))
    generator = torch.Generator().manual_seed(config.seed)
    stream = endless(lambda: iterate_batches(images, labels, config.batch_size, generator))

    def work() -> None:
        for _loss in train_batches(model, optimizer, itertools.islice(stream, steps), scheduler):
            pass

    return work, model
