"""The training loop: ``train_step``, ``train_batches`` (the loop over batches that ``fit`` and
the benchmarks share), ``fit`` (a generator of epochs) and ``evaluate``."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mnistcore.config import TrainConfig
from mnistcore.data import Dataset, Split, iterate_batches
from mnistcore.device import configure_threads, resolve_device, seed_everything
from mnistcore.errors import NonFiniteLossError
from mnistcore.model import build_model

NAN_CHECK_EVERY = 50  # steps between divergence checks; each check is a CPU-GPU sync point
EVAL_BATCH = 2048  # images per forward pass in evaluate


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """One SGD step on the batch ``x`` (B, 1, 28, 28), ``y`` (B,); returns the loss (no sync)."""
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_batches(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> Iterator[torch.Tensor]:
    """``train_step`` on each ``(x, y)`` of ``batches``, then one ``scheduler`` step; yields each
    step's loss (no sync).

    ``fit`` runs it over ``iterate_batches`` and ``bench/`` over its own batches, so both time
    the same loop. Batches go in as ``iterate_batches`` gives them, with no memory-format
    conversion: a (B, 1, 28, 28) tensor has C=1, so its NCHW-contiguous strides are also
    channels_last-contiguous (``x.contiguous(memory_format=torch.channels_last)`` returns ``x``).
    """
    for x, y in batches:
        loss = train_step(model, optimizer, x, y)
        if scheduler is not None:
            scheduler.step()
        yield loss


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum, as in the seed; ``foreach`` fuses the per-parameter updates."""
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        foreach=True,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule of ``config`` (None for ``constant``)."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, cycle_momentum=False
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


class Evaluation(NamedTuple):
    accuracy: float  # fraction correct, in [0, 1]
    loss: float  # mean cross-entropy
    n: int  # images evaluated


@dataclass
class EpochResult:
    """What ``fit`` yields after each epoch."""

    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches
    val_accuracy: float  # fraction correct on the validation split
    val_loss: float
    seconds: float  # wall time of the training part of the epoch (evaluation excluded)
    images_per_second: float  # training images / seconds
    lr: float  # learning rate at the end of the epoch
    model: nn.Module = field(
        repr=False
    )  # the model being trained (evaluate it on test at the end)


def evaluate(model: nn.Module, split: Split, batch_size: int = EVAL_BATCH) -> Evaluation:
    """Accuracy and mean loss of ``model`` on ``split`` (moved to the model's device if needed)."""
    device = next(model.parameters()).device
    images, labels = split.images.to(device), split.labels.to(device)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=labels.device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=labels.device)
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
            logits = model(_format(x, model))
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = len(labels)
    # note: .item() is a CPU-GPU sync point, once per evaluation
    return Evaluation(correct.item() / max(n, 1), loss_sum.item() / max(n, 1), n)


def fit(config: TrainConfig, data: Dataset) -> Iterator[EpochResult]:
    """Train a fresh model of ``config`` on ``data.train``; yield one result per epoch.

    The data is moved to the training device once (and cached there for later calls). The
    caller decides what to do between epochs, e.g. stop early: just stop iterating.
    Raises NonFiniteLossError when the loss becomes NaN/inf.
    """
    device = resolve_device(config.device)
    # on CUDA too: the CPU still runs the Python side and the CPU-side data work (randperm)
    configure_threads(config.threads)
    seed_everything(config.seed)
    data = data.to(device)
    model = build_model(config, device)
    optimizer = build_optimizer(model, config)
    images, labels = data.train
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)

    for epoch in range(1, config.epochs + 1):
        model.train()
        _sync(device)  # the clock starts with the device idle (data moves, last evaluation)
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        batches = iterate_batches(images, labels, config.batch_size, generator)
        for step, loss in enumerate(train_batches(model, optimizer, batches, scheduler), start=1):
            loss_sum += loss
            if step % NAN_CHECK_EVERY == 0 or step == steps_per_epoch:
                value = loss.item()  # note: sync point, every NAN_CHECK_EVERY steps
                if not math.isfinite(value):
                    raise NonFiniteLossError(epoch, step, value, lr=config.lr)
        # note: .item() is the sync point that ends the timing: loss_sum's last add is queued
        # after the last step's kernels on the same stream, so when it returns the epoch's GPU
        # work is done and the clock read next covers it (no separate synchronize needed)
        mean_loss = loss_sum.item() / steps_per_epoch
        seconds = time.perf_counter() - start
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(epoch, steps_per_epoch, mean_loss, lr=config.lr)
        val = evaluate(model, data.val)
        yield EpochResult(
            epoch=epoch,
            train_loss=mean_loss,
            val_accuracy=val.accuracy,
            val_loss=val.loss,
            seconds=seconds,
            images_per_second=len(labels) / seconds,
            lr=optimizer.param_groups[0]["lr"],
            model=model,
        )


def _format(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    first = next(model.parameters())
    if first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
