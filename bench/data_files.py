"""The IDX files both data-path pipelines read (the seed through torchvision's dataset class,
mnistcore through ``load_dataset``): Fashion-MNIST, or synthetic ones written here."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torchvision import datasets

from bench.seed_baseline import seed_transform
from mnistcore import Dataset, DatasetError, load_dataset, synthetic_digits

REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SYNTHETIC_TRAIN = 15_000  # > 200 batches of 64 after the 10 % validation split
SYNTHETIC_TEST = 1_000


@dataclass(frozen=True)
class DataFiles:
    name: str  # recorded as extra_info["dataset"]: "fashion-mnist" | "synthetic-idx"
    root: Path  # torchvision root: the IDX files are in root/<class name>/raw
    torchvision_class: type[datasets.MNIST]
    mnistcore_name: str  # the name load_dataset reads the same files under
    note: str  # where the files came from, human-readable

    # both read once per session: the data-path cases share the DataFiles of one fixture
    @cached_property
    def seed_dataset(self) -> datasets.MNIST:
        """The tutorial's dataset object: PIL image -> ToTensor -> Normalize per sample."""
        return self.torchvision_class(str(self.root), train=True, transform=seed_transform())

    @cached_property
    def mnistcore_dataset(self) -> Dataset:
        return load_dataset(self.mnistcore_name, data_dir=self.root, download=False)


def fashion_mnist(data_dir: Path = REPO_DATA_DIR) -> DataFiles | None:
    """Fashion-MNIST from ``data_dir`` or the Debian package, or None when neither has it."""
    try:
        data = load_dataset("fashion-mnist", data_dir=data_dir, download=False)
    except DatasetError:
        return None
    return DataFiles(
        "fashion-mnist", data_dir, datasets.FashionMNIST, "fashion-mnist", data.source
    )


def synthetic_idx(root: Path) -> DataFiles:
    """Write synthetic digits as torchvision MNIST's four raw IDX files under ``root``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", SYNTHETIC_TRAIN, 0), ("t10k", SYNTHETIC_TEST, 1)):
        images, labels = synthetic_digits(n, seed=seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.to(torch.uint8))
    note = f"synthetic_digits written as IDX files in {raw}"
    return DataFiles("synthetic-idx", root, datasets.MNIST, "mnist", note)


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """IDX format: magic (0, 0, 0x08 = uint8, ndim), big-endian int32 sizes, raw bytes."""
    assert tensor.dtype == torch.uint8
    header = bytes([0, 0, 0x08, tensor.dim()]) + struct.pack(f">{tensor.dim()}i", *tensor.shape)
    path.write_bytes(header + tensor.contiguous().numpy().tobytes())
