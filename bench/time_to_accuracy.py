"""Time to accuracy (DAWNBench-style): the training seconds a recipe needs to reach a target
accuracy, and the ratios between recipes measured in one run.

One function trains a recipe until it reaches the target, ``run_to_target``: the benchmark
checks the TEST accuracy (the figure reported), the tuning study (bench/tune_time_to_accuracy.py)
the VALIDATION accuracy (what it may optimize). ``tutorial_run_to_target`` does the same with the
PyTorch tutorial's own DataLoader loop (bench/seed_baseline.py) on the same training split.

Accuracy is checked after each epoch, outside the clock: a recipe's schedule is planned in
epochs (one-cycle reaches its best only at the end of its plan), DAWNBench checks per epoch too,
and an evaluation of the 10,000 test images costs about a tenth of an epoch's training on the
2-core CPU, so checking more often would change what is measured. The seconds are ``fit``'s own
per-epoch training seconds (``EpochResult.seconds``: evaluation and model building excluded),
summed up to and including the epoch that reached the target.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
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
from bench.timing import sync
from mnistcore import Dataset, Split, TrainConfig, evaluate, fit

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
    """One seed's run to the target."""

    seed: int
    reached: bool
    seconds: float  # training seconds of the epochs trained (to the target, or all of them)
    epochs: int  # epochs trained: the one that reached the target, else all it was allowed
    accuracies: tuple[float, ...]  # after each epoch trained, on the checked split
    gave_up: bool = False  # stopped before its cap, already slower than ``max_seconds``

    @property
    def accuracy(self) -> float:
        return self.accuracies[-1] if self.accuracies else float("nan")


def epoch_cap(config: TrainConfig) -> int:
    """Epochs a recipe may train: its planned schedule, or CONSTANT_CAP for a constant lr
    (which has no planned end)."""
    return CONSTANT_CAP if config.schedule == "constant" else config.epochs


def run_to_target(
    config: TrainConfig,
    data: Dataset,
    target: float,
    *,
    split: str = "test",
    max_seconds: float = math.inf,
) -> SeedRun:
    """Train ``config`` with ``fit`` until its accuracy on ``split`` ("test" or "val"), checked
    after each epoch, is at least ``target``; at most ``epoch_cap(config)`` epochs, and none
    begun once ``max_seconds`` of training are spent (the tuning study's early stop)."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be test or val, got {split=}")
    config = config.replace(epochs=epoch_cap(config))  # changes nothing but a constant lr's run
    seconds, accuracies = 0.0, []
    epochs = fit(config, data)
    try:
        for epoch in epochs:
            seconds += epoch.seconds
            if split == "val":
                accuracies.append(epoch.val_accuracy)
            else:  # the test split on the training device: fit cached it there
                device = next(epoch.model.parameters()).device
                accuracies.append(evaluate(epoch.model, data.to(device).test).accuracy)
            if accuracies[-1] >= target:
                return SeedRun(config.seed, True, seconds, len(accuracies), tuple(accuracies))
            if seconds >= max_seconds and len(accuracies) < config.epochs:
                return SeedRun(
                    config.seed, False, seconds, len(accuracies), tuple(accuracies), gave_up=True
                )
    finally:
        epochs.close()
    return SeedRun(config.seed, False, seconds, len(accuracies), tuple(accuracies))


class TutorialImages(TorchDataset):
    """A split as the tutorial's dataset serves it: per sample, a uint8 PIL image through
    ``ToTensor`` and ``Normalize((0.1307,), (0.3081,))`` (what ``torchvision.datasets.MNIST``'s
    ``__getitem__`` does). The pixels are recovered from mnistcore's normalized split, so the
    tutorial loop trains on exactly the images ``fit`` does (the same validation split left
    out), whichever dataset it is (mnist-5k has no torchvision class)."""

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


def tutorial_test_split(split: Split, mean: float, std: float) -> Split:
    """The test split normalized as the tutorial's transform does, as one tensor: ``evaluate``
    over it gives the tutorial's test loop's accuracy without its per-sample cost."""
    pixels = raw_pixels(split, mean, std).float().div(255)  # what ToTensor gives
    return Split(pixels.sub(MNIST_MEAN).div(MNIST_STD).unsqueeze(1), split.labels.cpu())


def tutorial_data(data: Dataset) -> tuple[TutorialImages, Split]:
    """The tutorial's view of ``data``: its training split served per sample, and its test
    split normalized with the tutorial's constants (``tutorial_test_split``)."""
    data = data.to("cpu")
    train = TutorialImages(data.train, data.mean, data.std)
    return train, tutorial_test_split(data.test, data.mean, data.std)


def tutorial_run_to_target(
    train: TorchDataset,
    test: Split,
    target: float,
    *,
    seed: int,
    device: torch.device,
    cap: int = CONSTANT_CAP,
) -> SeedRun:
    """The tutorial's training loop (DataLoader over ``train``, batch 64, shuffled; SGD lr 0.01,
    momentum 0.9) until its accuracy on ``test``, checked after each epoch, is at least
    ``target``; at most ``cap`` epochs."""
    loader = seed_loader(train)
    torch.manual_seed(seed)  # the model's initial weights and the DataLoader's shuffles
    model, optimizer = seed_training(device)
    seconds, accuracies = 0.0, []
    for _ in range(cap):
        sync(device)
        start = time.perf_counter()
        seed_train_epoch(model, optimizer, loader, device)
        sync(device)
        seconds += time.perf_counter() - start
        accuracies.append(evaluate(model, test).accuracy)
        if accuracies[-1] >= target:
            return SeedRun(seed, True, seconds, len(accuracies), tuple(accuracies))
    return SeedRun(seed, False, seconds, len(accuracies), tuple(accuracies))


def median_seconds(runs: Sequence[SeedRun]) -> float | None:
    """Median training seconds over seeds, a seed that did not reach the target counting as
    infinitely slow: None (not reached) when half or more of the seeds did not reach it."""
    return _median_reached([r.seconds for r in runs], runs)


def median_epochs(runs: Sequence[SeedRun]) -> float | None:
    """Median epochs needed, over seeds, a seed that did not reach the target counting as
    infinitely many (None: not reached)."""
    return _median_reached([r.epochs for r in runs], runs)


def _median_reached(values: Sequence[float], runs: Sequence[SeedRun]) -> float | None:
    kept = [v if r.reached else math.inf for v, r in zip(values, runs, strict=True)]
    median = statistics.median(kept) if kept else math.inf
    return median if math.isfinite(median) else None


def result_info(runs: Sequence[SeedRun], target: float) -> dict[str, Any]:
    """The time-to-accuracy fields of a case's ``extra_info``."""
    seconds = median_seconds(runs)
    return {
        "target": target,  # accuracy to reach on the checked split
        "reached": seconds is not None,  # by the median seed
        "seconds_to_target": seconds,  # median over seeds; None: not reached
        "epochs_to_target": median_epochs(runs),
        "seeds": [r.seed for r in runs],
        "seconds_per_seed": [r.seconds for r in runs],  # to the target, or all epochs trained
        "reached_per_seed": [r.reached for r in runs],
        "epochs_per_seed": [r.epochs for r in runs],
        "accuracy_per_seed": [r.accuracy for r in runs],  # at the last epoch trained
        "accuracy_curves": [list(r.accuracies) for r in runs],  # after each epoch, per seed
    }


# --- ratios between recipes of one run, taken when the session ends ---------------------------


def _key(info: Mapping[str, Any]) -> tuple:
    return (info.get("dataset"), info.get("device"), info.get("target"))


def tta_speedups(infos: Iterable[Mapping[str, Any]]) -> dict[tuple, tuple[float, bool]]:
    """(dataset, device, target, recipe) -> (ratio, exact): the tutorial recipe's median seconds
    to the target / the recipe's, both from ``infos`` (the finished cases of one run, in any
    order). Where the tutorial recipe did not reach the target, its median over the seconds it
    trained (all its capped epochs) is a lower bound of its time, and so is the ratio
    (``exact`` False). Left out: a recipe that did not reach the target, or no tutorial row."""
    infos = [i for i in infos if i.get("kind") == KIND]
    base = {_key(i): i for i in infos if i.get("recipe") == BASELINE}
    ratios = {}
    for info in infos:
        tutorial, seconds = base.get(_key(info)), info.get("seconds_to_target")
        if tutorial is None or not seconds:
            continue
        exact = tutorial.get("seconds_to_target")
        if exact:
            ratios[(*_key(info), info.get("recipe"))] = (exact / seconds, True)
        elif tutorial.get("seconds_per_seed"):
            bound = statistics.median(tutorial["seconds_per_seed"])
            ratios[(*_key(info), info.get("recipe"))] = (bound / seconds, False)
    return ratios


def add_tta_speedups(infos: list[MutableMapping[str, Any]]) -> None:
    """Set ``speedup_vs_seed`` (or, where the tutorial recipe did not reach the target, the
    lower bound ``speedup_vs_seed_at_least``) on each time-to-accuracy ``info``."""
    ratios = tta_speedups(infos)
    for info in infos:
        found = ratios.get((*_key(info), info.get("recipe")))
        if info.get("kind") != KIND or found is None:
            continue
        ratio, exact = found
        info["speedup_vs_seed" if exact else "speedup_vs_seed_at_least"] = ratio


def tta_lines(infos: Iterable[Mapping[str, Any]]) -> list[str]:
    """The terminal summary: per case its median seconds to the target, each seed's, and its
    ratio to the tutorial recipe."""
    infos = sorted(
        (i for i in infos if i.get("kind") == KIND),
        key=lambda i: (str(i["dataset"]), str(i["device"]), RECIPES.index(i["recipe"])),
    )
    ratios = tta_speedups(infos)
    lines = []
    for info in infos:
        per_seed = ", ".join(
            f"{s:.1f}" + ("" if ok else "+")
            for s, ok in zip(info["seconds_per_seed"], info["reached_per_seed"], strict=True)
        )
        head = f"{info['dataset']} {info['device']} {info['recipe']}: {info['target']:.1%}"
        if info["seconds_to_target"] is None:
            lines.append(
                f"{head} not reached within {info['epoch_cap']} epochs "
                f"(seeds: {per_seed} s; + = not reached)"
            )
            continue
        ratio, exact = ratios.get((*_key(info), info["recipe"]), (None, True))
        versus = ""
        if ratio is not None and info["recipe"] != BASELINE:
            versus = f"; {'' if exact else '>= '}{ratio:.2f}x the tutorial recipe"
        lines.append(
            f"{head} in {info['seconds_to_target']:.1f} s training (median), "
            f"{info['epochs_to_target']:g} epochs (seeds: {per_seed} s){versus}"
        )
    return lines
