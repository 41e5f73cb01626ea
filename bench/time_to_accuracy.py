"""Time to accuracy (DAWNBench-style): the training seconds a recipe needs to reach a target
test accuracy, with ``fit`` or the tutorial's DataLoader loop on the same training split.

Accuracy is checked after each epoch, outside the clock: schedules are planned in epochs,
DAWNBench checks per epoch too, and evaluating the 10,000 test images costs about a tenth of an
epoch's training on the 2-core CPU. The seconds are the training epochs' alone.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from bench.seed_baseline import (
    MNIST_MEAN,
    MNIST_STD,
    seed_loader,
    seed_train_epoch,
    seed_training,
    seed_transform,
)
from mnistcore import Dataset, Split, TrainConfig, evaluate, fit, synchronize

KIND = "time_to_accuracy"
TARGETS = {"fashion-mnist": 0.89, "mnist-5k": 0.97}  # test accuracy, the targets
CONSTANT_CAP = 10  # epochs a constant-lr recipe may train before it counts as "not reached"
# The three rows of a dataset and device: the tutorial's recipe (TrainConfig defaults) and the
# tuned one, both in mnistcore's loop, and the tutorial's own DataLoader loop.
TUTORIAL, TUNED, DATALOADER = "tutorial", "tuned", "tutorial-dataloader"
RECIPES = (TUTORIAL, TUNED, DATALOADER)
BASELINE = TUTORIAL  # speedup_vs_seed divides its median seconds by each recipe's


@dataclass(frozen=True)
class SeedRun:
    seed: int
    reached: bool
    seconds: float  # training seconds of the epochs trained (to the target, or all of them)
    epochs: int  # epochs trained: the one that reached the target, else all it was allowed
    accuracies: tuple[float, ...]  # test accuracy after each epoch trained

    @property
    def accuracy(self) -> float:
        return self.accuracies[-1] if self.accuracies else float("nan")


def epoch_cap(config: TrainConfig) -> int:
    """Epochs a recipe may train: its planned schedule, or CONSTANT_CAP for a constant lr
    (which has no planned end)."""
    return CONSTANT_CAP if config.schedule == "constant" else config.epochs


def run_to_target(config: TrainConfig, data: Dataset, target: float) -> SeedRun:
    """Train ``config`` with ``fit`` until its test accuracy, checked after each epoch, is at
    least ``target``; at most ``epoch_cap(config)`` epochs."""
    config = config.replace(epochs=epoch_cap(config))  # changes nothing but a constant lr's run
    seconds, accuracies = 0.0, []
    epochs = fit(config, data)
    try:
        for epoch in epochs:
            seconds += epoch.seconds
            device = next(epoch.model.parameters()).device  # fit cached the data there
            accuracies.append(evaluate(epoch.model, data.to(device).test).accuracy)
            if accuracies[-1] >= target:
                return SeedRun(config.seed, True, seconds, len(accuracies), tuple(accuracies))
    finally:
        epochs.close()
    return SeedRun(config.seed, False, seconds, len(accuracies), tuple(accuracies))


class TutorialImages(TorchDataset):
    """A split served as ``torchvision.datasets.MNIST`` serves it: per sample, a uint8 PIL image
    through the tutorial's ``ToTensor`` and ``Normalize``. The pixels are recovered from
    mnistcore's split, so the tutorial loop trains on exactly the images ``fit`` does, whatever
    the dataset (mnist-5k has no torchvision class)."""

    def __init__(self, split: Split, mean: float, std: float) -> None:
        self.pixels = raw_pixels(split, mean, std)  # (N, 28, 28) uint8
        self.labels = split.labels.cpu()
        self.transform = seed_transform()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.pixels[index].numpy(), mode="L")
        return self.transform(image), int(self.labels[index])


def raw_pixels(split: Split, mean: float, std: float) -> torch.Tensor:
    """(N, 28, 28) uint8 pixels of a normalized split (exact: the error is far below 1/255)."""
    images = split.images.cpu().squeeze(1)  # float32 keeps ~1e-5 of 255: rounding is exact
    return images.mul(std).add(mean).mul(255).round().clamp(0, 255).to(torch.uint8)


def tutorial_data(data: Dataset) -> tuple[TutorialImages, Split]:
    """The tutorial's view of ``data``: its training split served per sample, and its test split
    normalized as the tutorial's transform does, as one tensor for ``evaluate``."""
    data = data.to("cpu")
    pixels = raw_pixels(data.test, data.mean, data.std).float().div(255)  # what ToTensor gives
    test = Split(pixels.sub(MNIST_MEAN).div(MNIST_STD).unsqueeze(1), data.test.labels)
    return TutorialImages(data.train, data.mean, data.std), test


def tutorial_run_to_target(
    train: TorchDataset,
    test: Split,
    target: float,
    *,
    seed: int,
    device: torch.device,
    cap: int = CONSTANT_CAP,
) -> SeedRun:
    """The tutorial's training loop (bench.seed_baseline) over ``train`` until its accuracy on
    ``test``, checked after each epoch, is at least ``target``; at most ``cap`` epochs."""
    loader = seed_loader(train)
    torch.manual_seed(seed)  # the model's initial weights and the DataLoader's shuffles
    model, optimizer = seed_training(device)
    seconds, accuracies = 0.0, []
    for _ in range(cap):
        synchronize(device)
        start = time.perf_counter()
        seed_train_epoch(model, optimizer, loader, device)
        synchronize(device)
        seconds += time.perf_counter() - start
        accuracies.append(evaluate(model, test).accuracy)
        if accuracies[-1] >= target:
            return SeedRun(seed, True, seconds, len(accuracies), tuple(accuracies))
    return SeedRun(seed, False, seconds, len(accuracies), tuple(accuracies))


def median_reached(runs: Sequence[SeedRun], field: str) -> float | None:
    """The median over seeds of ``field``, a seed that did not reach the target counting as
    infinite: None (not reached) when half or more of the seeds did not."""
    kept = [getattr(r, field) if r.reached else math.inf for r in runs]
    median = statistics.median(kept) if kept else math.inf
    return median if math.isfinite(median) else None


def result_info(runs: Sequence[SeedRun], target: float) -> dict[str, Any]:
    """The time-to-accuracy fields of a case's ``extra_info``."""
    seconds = median_reached(runs, "seconds")
    return {
        "target": target,  # test accuracy to reach
        "reached": seconds is not None,  # by the median seed
        "seconds_to_target": seconds,  # median over seeds; None: not reached
        "epochs_to_target": median_reached(runs, "epochs"),
        "seeds": [r.seed for r in runs],
        "seconds_per_seed": [r.seconds for r in runs],  # to the target, or all epochs trained
        "reached_per_seed": [r.reached for r in runs],
        "epochs_per_seed": [r.epochs for r in runs],
        "accuracy_per_seed": [r.accuracy for r in runs],  # at the last epoch trained
        "accuracy_curves": [list(r.accuracies) for r in runs],  # after each epoch, per seed
    }
