"""Throughput of one model's training step as ``fit`` and the search run it (``Population.train``
with K=1, on ``resident_data``) and of ``evaluate``. CPU: the seed net at batch 64/256/1024, its
variants at 256, fp32, channels_last (the fused trainer runs NCHW on the CPU regardless). CUDA:
every net x batch size x precision x memory format.
"""

from __future__ import annotations

import pytest
import torch

from bench.timing import Timed, case, group_name, record
from bench.workloads import RESIDENT, VARIANTS, bench_config, evaluation, population_steps
from mnistcore import Split, build_model, count_parameters, seed_everything

MODELS = ("seed", *VARIANTS)
BATCH_SIZES = (64, 256, 1024)
EVAL_BATCH = 2048  # images per forward pass in the inference benchmark (evaluate's default)
EVAL_IMAGES = {"cpu": 8192, "cuda": 131072}  # images per timed call of evaluate


def case_group(kind, model, batch_size, precision, channels_last) -> str:
    """``train_step[seed-bs64-fp32-cl]``: the case without its device (CPU, CUDA side by side)."""
    return group_name(kind, model, f"bs{batch_size}", precision, "cl" if channels_last else "nchw")


def _case(device, model, batch_size, precision, channels_last, quick=False):
    fmt = "cl" if channels_last else "nchw"
    name = (device, model, f"bs{batch_size}", precision, fmt)
    return case(device, model, batch_size, precision, channels_last, quick=quick, name=name)


def train_cases() -> list:
    cases = [
        _case("cpu", model, bs, "fp32", True, quick=model == "seed" and bs != 256)
        for model in MODELS
        for bs in BATCH_SIZES
        if model == "seed" or bs == 256  # the small CPU matrix: ~1 minute on 2 cores
    ]
    return cases + [
        _case("cuda", model, bs, precision, cl, quick=model == "seed" and cl and bs != 256)
        for model in MODELS
        for bs in BATCH_SIZES
        for precision in ("fp32", "bf16")
        for cl in (True, False)
    ]


@pytest.mark.parametrize(
    ("device", "model", "batch_size", "precision", "channels_last"), train_cases()
)
def test_train_step(
    benchmark, budget, resident_data, device, model, batch_size, precision, channels_last
):
    dev = torch.device(device)
    config = bench_config(
        model,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        device=device,
    )
    steps = budget.steps(dev, batch_size)
    population, work = population_steps(
        [config], resident_data, steps * batch_size, budget.calls(dev)
    )
    timed = Timed(work, dev)

    benchmark.group = case_group("train_step", model, batch_size, precision, channels_last)
    benchmark.pedantic(timed, rounds=budget.rounds(dev), warmup_rounds=budget.warmup_rounds)

    assert population.members == [0], f"diverged: {population.diverged}"
    record(
        benchmark,
        timed,
        kind="train_step",
        images=steps * batch_size,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        model=model,
        n_params=count_parameters(build_model(config)),
        dataset=RESIDENT,
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
    ("device", "model", "batch_size", "precision", "channels_last"), inference_cases()
)
def test_inference(benchmark, budget, device, model, batch_size, precision, channels_last):
    dev = torch.device(device)
    config = bench_config(model, precision=precision, channels_last=channels_last, device=device)
    seed_everything(0)
    net = build_model(config, dev)
    n = EVAL_IMAGES[dev.type]
    g = torch.Generator().manual_seed(0)
    split = Split(  # (N, 1, 28, 28) float32 and (N,) labels, on the device like fit's data
        torch.randn(n, 1, 28, 28, generator=g).to(dev),
        torch.randint(0, 10, (n,), generator=g).to(dev),
    )
    timed = Timed(evaluation(net, split, batch_size), dev)

    benchmark.group = case_group("inference", model, batch_size, precision, channels_last)
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
    )
