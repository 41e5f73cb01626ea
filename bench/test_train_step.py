"""Throughput of mnistcore's ``train_step`` (the step ``fit`` and the search run) and of
``evaluate``, on CPU and CUDA.

CPU: the seed preset over batch sizes 64/256/1024, the other presets at 256, fp32,
channels_last (the default). CUDA: every preset x batch size x precision x memory format, plus
the seed at batch 1024 with the whole step captured as a CUDA graph.
"""

from __future__ import annotations

import pytest
import torch

from bench.timing import Timed, case_id, group_name, record
from bench.workloads import (
    PRESETS,
    capture_train_step,
    evaluation,
    fixed_batch,
    graph_steps,
    preset_config,
    train_steps,
)
from mnistcore import (
    Split,
    build_model,
    build_optimizer,
    count_parameters,
    seed_everything,
)

BATCH_SIZES = (64, 256, 1024)
EVAL_BATCH = 2048  # images per forward pass in the inference benchmark (evaluate's default)
EVAL_IMAGES = {"cpu": 8192, "cuda": 131072}  # images per timed call of evaluate


def case_group(kind, model, batch_size, precision, channels_last, mode) -> str:
    """``train_step[seed-bs64-fp32-cl]``: the case without its device (CPU, CUDA side by side)."""
    fmt = "cl" if channels_last else "nchw"
    return group_name(kind, model, f"bs{batch_size}", precision, fmt, _tag(mode))


def _tag(mode: str) -> str:
    return "" if mode == "eager" else mode


def _case(device, model, batch_size, precision, channels_last, mode="eager", quick=False):
    fmt = "cl" if channels_last else "nchw"
    marks = [pytest.mark.cuda] if device == "cuda" else []
    if quick:
        marks.append(pytest.mark.quick)
    return pytest.param(
        device,
        model,
        batch_size,
        precision,
        channels_last,
        mode,
        marks=marks,
        id=case_id(device, model, f"bs{batch_size}", precision, fmt, _tag(mode)),
    )


def train_cases() -> list:
    cases = [
        _case("cpu", model, bs, "fp32", True, quick=model == "seed" and bs != 256)
        for model in PRESETS
        for bs in BATCH_SIZES
        if model == "seed" or bs == 256  # the small CPU matrix: ~1 minute on 2 cores
    ]
    cases += [
        _case("cuda", model, bs, precision, cl, quick=model == "seed" and cl and bs != 256)
        for model in PRESETS
        for bs in BATCH_SIZES
        for precision in ("fp32", "bf16")
        for cl in (True, False)
    ]
    cases += [
        _case("cuda", "seed", 1024, precision, True, "graph", quick=True)
        for precision in ("bf16", "fp32")
    ]
    return cases


@pytest.mark.parametrize(
    ("device", "model", "batch_size", "precision", "channels_last", "mode"), train_cases()
)
def test_train_step(benchmark, budget, device, model, batch_size, precision, channels_last, mode):
    dev = torch.device(device)
    config = preset_config(
        model,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        device=device,
    )
    seed_everything(0)  # also turns cudnn.benchmark on, as fit does
    net = build_model(config, dev)
    optimizer = build_optimizer(net, config)
    x, y = fixed_batch(batch_size, dev)  # (B, 1, 28, 28), (B,)
    steps = budget.steps(dev, batch_size)
    if mode == "graph":
        work = graph_steps(capture_train_step(net, optimizer, x, y), steps)
    else:
        work = train_steps(net, optimizer, x, y, steps)
    timed = Timed(work, dev)

    benchmark.group = case_group("train_step", model, batch_size, precision, channels_last, mode)
    benchmark.pedantic(timed, rounds=budget.rounds(dev), warmup_rounds=budget.warmup_rounds)

    record(
        benchmark,
        timed,
        kind="train_step",
        images=steps * batch_size,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        model=model,
        n_params=count_parameters(net),
        dataset="fixed-random-batch",
        mode=mode,
        steps_per_call=steps,
    )


def inference_cases() -> list:
    return [
        _case("cpu", "seed", EVAL_BATCH, "fp32", True, quick=True),
        _case("cuda", "seed", EVAL_BATCH, "fp32", True, quick=True),
        _case("cuda", "seed", EVAL_BATCH, "bf16", True),
        _case("cuda", "w64", EVAL_BATCH, "fp32", True),
    ]


@pytest.mark.parametrize(
    ("device", "model", "batch_size", "precision", "channels_last", "mode"), inference_cases()
)
def test_inference(benchmark, budget, device, model, batch_size, precision, channels_last, mode):
    dev = torch.device(device)
    config = preset_config(model, precision=precision, channels_last=channels_last, device=device)
    seed_everything(0)
    net = build_model(config, dev)
    n = EVAL_IMAGES[dev.type]
    g = torch.Generator().manual_seed(0)
    split = Split(  # (N, 1, 28, 28) float32 and (N,) labels, on the device like fit's data
        torch.randn(n, 1, 28, 28, generator=g).to(dev),
        torch.randint(0, 10, (n,), generator=g).to(dev),
    )
    timed = Timed(evaluation(net, split, batch_size), dev)

    benchmark.group = case_group("inference", model, batch_size, precision, channels_last, mode)
    benchmark.pedantic(timed, rounds=budget.rounds(dev), warmup_rounds=budget.warmup_rounds)

    record(
        benchmark,
        timed,
        kind="inference",
        images=n,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        model=model,
        n_params=count_parameters(net),
        dataset="fixed-random-batch",
        mode=mode,
    )
