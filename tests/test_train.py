import math

import pytest
import torch

from mnistcore import (
    DeviceError,
    NonFiniteLossError,
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    evaluate,
    fit,
    iterate_batches,
    resolve_device,
)
from mnistcore.train import train_batches

FAST = dict(dataset="synthetic", device="cpu", batch_size=64)


def test_loss_decreases_and_learns(synthetic):
    results = list(fit(TrainConfig(epochs=3, **FAST), synthetic))
    assert [r.epoch for r in results] == [1, 2, 3]
    assert results[-1].train_loss < results[0].train_loss
    # Synthetic classes are easy: well above chance (10 %) after 3 epochs.
    assert results[-1].val_accuracy > 0.8
    assert all(r.images_per_second > 0 and r.seconds > 0 for r in results)


def test_same_seed_same_numbers(synthetic):
    a = [
        (r.train_loss, r.val_accuracy)
        for r in fit(TrainConfig(epochs=2, seed=5, **FAST), synthetic)
    ]
    b = [
        (r.train_loss, r.val_accuracy)
        for r in fit(TrainConfig(epochs=2, seed=5, **FAST), synthetic)
    ]
    c = [
        (r.train_loss, r.val_accuracy)
        for r in fit(TrainConfig(epochs=2, seed=6, **FAST), synthetic)
    ]
    assert a == b
    assert a != c


def test_batches_need_no_channels_last_conversion(synthetic):
    # fit hands iterate_batches' batches to the model as they are: with one channel, NCHW
    # strides are channels_last-contiguous too, so a conversion would return the same tensor.
    images, labels = synthetic.train
    x, _ = next(iterate_batches(images, labels, 64, torch.Generator().manual_seed(0)))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.contiguous(memory_format=torch.channels_last) is x
    torch.manual_seed(0)
    model = build_model(TrainConfig(channels_last=True))
    torch.testing.assert_close(
        model(x), model(x.contiguous(memory_format=torch.channels_last)), rtol=0, atol=0
    )


def test_train_batches_steps_once_per_batch(synthetic):
    config = TrainConfig(schedule="cosine", **FAST)
    model = build_model(config)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=10)
    x, y = synthetic.train.images[:64], synthetic.train.labels[:64]
    losses = list(train_batches(model, optimizer, [(x, y)] * 3, scheduler))
    # One loss per batch, one scheduler step after each.
    assert len(losses) == 3 and all(loss.dim() == 0 for loss in losses)
    assert scheduler.last_epoch == 3


def test_non_finite_loss_raises(synthetic):
    config = TrainConfig(epochs=2, lr=1e6, momentum=0.99, **FAST)
    with pytest.raises(NonFiniteLossError) as info:
        list(fit(config, synthetic))
    assert not math.isfinite(info.value.loss)


def test_evaluate(synthetic):
    model = build_model(TrainConfig())
    result = evaluate(model, synthetic.val)
    assert result.n == 200 and 0 <= result.accuracy <= 1 and result.loss > 0
    # Evaluation leaves the model's mode as it found it.
    assert model.training


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedules_anneal(synthetic, schedule):
    results = list(fit(TrainConfig(epochs=2, lr=0.05, schedule=schedule, **FAST), synthetic))
    # Both schedules end near zero learning rate.
    assert results[-1].lr < 0.05 * 0.01


def test_regularized_model_trains(synthetic):
    config = TrainConfig(
        epochs=1, depth=2, width=8, batch_norm=True, dropout=0.3, weight_decay=1e-4, **FAST
    )
    (result,) = list(fit(config, synthetic))
    assert result.val_accuracy > 0.3


def test_bf16_on_cpu_trains(synthetic):
    (result,) = list(fit(TrainConfig(epochs=1, precision="bf16", **FAST), synthetic))
    assert math.isfinite(result.train_loss)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(synthetic):
    with pytest.raises(DeviceError, match="--device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError):
        next(fit(TrainConfig(device="cuda:0", dataset="synthetic"), synthetic))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_trains(synthetic, precision):
    config = TrainConfig(epochs=2, device="cuda", precision=precision, dataset="synthetic")
    results = list(fit(config, synthetic))
    assert results[-1].val_accuracy > 0.5
    assert results[-1].model.training and next(results[-1].model.parameters()).is_cuda
