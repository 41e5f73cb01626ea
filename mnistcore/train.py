"""The one training path: ``fit`` trains one configuration as a population of one.

``fit`` and the search both train through ``Population`` (``fit_population``), and ``bench/``
times ``Population.train``: one epoch loop, one step, so a speed-up shows in all three.
``evaluate`` scores a plain ``build_model`` module (a member's weights, an exported model).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mnistcore.config import TrainConfig
from mnistcore.data import Dataset, Split
from mnistcore.population import EVAL_BATCH, Evaluation, fit_population


@dataclass
class EpochResult:
    """What ``fit`` yields after each epoch."""

    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches
    val_accuracy: float  # fraction correct on the validation split
    val_loss: float
    seconds: float  # wall time of the training part of the epoch (evaluation excluded)
    images_per_second: float  # training images / seconds
    model: nn.Module = field(repr=False)  # a copy of the weights after this epoch


def fit(config: TrainConfig, data: Dataset) -> Iterator[EpochResult]:
    """Train a fresh model of ``config`` on ``data.train``; yield one result per epoch.

    The caller decides what to do between epochs, e.g. stop early: just stop iterating.
    Raises mnistcore.NonFiniteLossError when the loss becomes NaN/inf.
    """
    for population, (result,) in fit_population([config], data):
        if result.diverged is not None:
            raise population.divergence(0)
        yield EpochResult(
            epoch=result.epoch,
            train_loss=result.train_loss,
            val_accuracy=result.val_accuracy,
            val_loss=result.val_loss,
            seconds=result.seconds,
            images_per_second=result.member_images_per_second,
            model=population.member_model(0),
        )


def evaluate(model: nn.Module, split: Split, batch_size: int = EVAL_BATCH) -> Evaluation:
    """Accuracy and mean loss of ``model`` on ``split`` (moved to the model's device if needed)."""
    device = next(model.parameters()).device
    images, labels = split.images.to(device), split.labels.to(device)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = len(labels)
    # note: .item() is a CPU-GPU sync point, once per evaluation
    return Evaluation(correct.item() / max(n, 1), loss_sum.item() / max(n, 1), n)
