"""The baseline, kept only here to measure every speed-up against it in the same run: the
PyTorch MNIST tutorial's pipeline as its users write it (torchvision dataset, ``ToTensor`` and
``Normalize`` per image, a ``DataLoader`` of batch 64, shuffled, no workers, its ``Net``, SGD)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms

from bench.workloads import endless

BATCH_SIZE = 64  # the tutorial's batch size
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the tutorial's constants (used for Fashion-MNIST too)


class SeedNet(nn.Module):
    """conv 1->10 (5x5) -> ReLU -> max-pool 2 -> flatten 1440 -> fc 128 -> ReLU -> fc 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.fc1 = nn.Linear(1440, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 10, 12, 12)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def seed_transform() -> transforms.Compose:
    return transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
    )


def seed_loader(dataset: Dataset, n_images: int | None = None) -> DataLoader:
    if n_images is not None:
        dataset = Subset(dataset, range(n_images))
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)


def seed_batches(dataset: Dataset, device: torch.device, count: int) -> Callable[[], None]:
    """Produce ``count`` batches through the DataLoader, moved to ``device`` as the loop does."""
    stream = endless(lambda: seed_loader(dataset))

    def work() -> None:
        for data, target in itertools.islice(stream, count):
            data, target = data.to(device), target.to(device)

    return work


def seed_training(device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The tutorial's model and optimizer (SGD lr 0.01, momentum 0.9), seeded by the caller."""
    model = SeedNet().to(device)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def seed_train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, device: torch.device
) -> None:
    """One epoch of the tutorial's training loop over ``loader``."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    for data, target in loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = criterion(output, target)
        loss.backward()
        optimizer.step()


def seed_epoch(loader: DataLoader, device: torch.device) -> Callable[[], None]:
    """One epoch of the tutorial's training loop over ``loader``: a fresh model each call."""

    def work() -> None:
        torch.manual_seed(1)
        seed_train_epoch(*seed_training(device), loader, device)

    return work
