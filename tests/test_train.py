import math

import pytest
import torch

from mnistcore import (
    DeviceError,
    NonFiniteLossError,
    TrainConfig,
    build_model,
    evaluate,
    fit,
    iterate_batches,
    resolve_device,
    seed_everything,
)

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


def reference_fit(config: TrainConfig, data) -> tuple[list[float], dict]:
    """The textbook loop fit replaces: build_model, torch.optim.SGD, torch's scheduler, the same
    seeding and batch order; returns each epoch's mean train loss and the final state_dict."""
    seed_everything(config.seed)
    model = build_model(config)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    images, labels = data.train
    per_epoch = math.ceil(len(labels) / config.batch_size)
    total = config.epochs * per_epoch
    scheduler = {
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, cycle_momentum=False
        ),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total),
        "constant": lambda: None,
    }[config.schedule]()
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    for _ in range(config.epochs):
        total_loss = 0.0
        for x, y in iterate_batches(images, labels, config.batch_size, generator):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item()
        losses.append(total_loss / per_epoch)
    return losses, model.state_dict()


@pytest.mark.parametrize(
    "arch",
    [
        dict(schedule="constant"),
        dict(depth=2, width=4, hidden=16, batch_norm=True, schedule="onecycle", weight_decay=1e-3),
        dict(schedule="cosine", lr=0.05, momentum=0.5),
    ],
    ids=["seed-constant", "bn-onecycle-wd", "seed-cosine"],
)
def test_fit_matches_the_textbook_loop(synthetic, arch):
    # fit is a population of one; it trains as a plain model with torch.optim.SGD and torch's
    # scheduler would (loss to 1e-4 relative, weights to 1e-3).
    config = TrainConfig(epochs=2, **{**FAST, **arch})
    results = list(fit(config, synthetic))
    losses, state = reference_fit(config, synthetic)
    assert [r.train_loss for r in results] == pytest.approx(losses, rel=1e-4)
    got = results[-1].model.state_dict()
    assert got.keys() == state.keys()
    for name in state:
        torch.testing.assert_close(
            got[name].float(), state[name].float(), rtol=1e-3, atol=1e-3, msg=name
        )


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
