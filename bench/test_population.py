"""Throughput of ``mnistcore.Population`` (K configs of one net trained as one fused module)
against K steps of the single model, on CPU and CUDA.

Two presets: the seed net (batch 64) and the study's default net (``study``: depth 2, width 16,
batch norm, batch 128, one-cycle). Population sizes K = 1, 4, 8, 16 on the CPU and 1, 16, 64,
256 on CUDA; the members differ in lr, momentum and seed as a search's trials do
(``member_configs``). Both sides train from the same resident data (synthetic digits on the
device) as ``fit`` does, and both time the same member-images per call (Budget.member_steps):
the population's ``train`` on one side, ``train_batches`` with the schedule on the other. So
``images_per_second`` of a population case counts member-images (= ``member_images_per_second``)
and divides by the single model's img/s to give ``speedup_vs_single``, which bench/conftest.py
computes once every case has run (whatever the order), into the saved JSON and the summary.
"""

from __future__ import annotations

import pytest
import torch

from bench.timing import Budget, Timed, case_id, group_name, record
from bench.workloads import (
    epochs_for,
    member_configs,
    population_steps,
    preset_config,
    single_steps,
)
from mnistcore import Dataset, Population, build_model, count_parameters

SIZES = {"cpu": (1, 4, 8, 16), "cuda": (1, 16, 64, 256)}  # population sizes K per device
PRESETS = ("seed", "study")
# The quick run: the study net's K=1, one larger K per device and the baseline (a speed-up needs
# its baseline in the same run).
QUICK_SIZES = {"cpu": (1, 8), "cuda": (1, 256)}
DATASET = "synthetic-digits"  # population_data: mnistcore's synthetic digits, resident


def _param(device: str, model: str, population: int | None) -> pytest.param:
    """A case; ``population`` None is the single-model baseline."""
    quick = model == "study" and (population is None or population in QUICK_SIZES[device])
    marks = [pytest.mark.cuda] if device == "cuda" else []
    if quick:
        marks.append(pytest.mark.quick)
    batch = preset_config(model).batch_size
    size = "single" if population is None else f"K{population}"
    values = (device, model) if population is None else (device, model, population)
    return pytest.param(*values, marks=marks, id=case_id(device, model, f"bs{batch}", size))


def population_cases() -> list:
    return [
        _param(device, model, k)
        for device in ("cpu", "cuda")
        for model in PRESETS
        for k in SIZES[device]
    ]


def single_cases() -> list:
    return [_param(device, model, None) for device in ("cpu", "cuda") for model in PRESETS]


def _config(model: str, device: str, budget: Budget, population: int, data: Dataset):
    """The preset on ``device`` with enough epochs for every call the benchmark makes, and the
    steps per call."""
    config = preset_config(model, device=device, dataset="synthetic")
    dev = torch.device(device)
    steps = budget.member_steps(dev, config.batch_size, population)
    calls = budget.warmup_rounds + budget.rounds(dev) + 1  # +1: median_seconds' spare call
    return config.replace(epochs=epochs_for(calls * steps * config.batch_size, data)), steps


@pytest.mark.parametrize(("device", "model", "population"), population_cases())
def test_population_step(benchmark, budget, population_data, device, model, population):
    dev = torch.device(device)
    config, steps = _config(model, device, budget, population, population_data)
    members = Population(member_configs(config, population), population_data)
    images = steps * config.batch_size  # per member, per call
    timed = Timed(population_steps(members, images), dev)

    benchmark.group = group_name(
        "population_step", model, f"bs{config.batch_size}", f"K{population}"
    )
    benchmark.pedantic(timed, rounds=budget.rounds(dev), warmup_rounds=budget.warmup_rounds)

    # a diverged member is dropped, and later calls would have timed a smaller population
    assert members.members == list(range(population)), f"diverged: {members.diverged}"
    record(
        benchmark,
        timed,
        kind="population_step",
        images=population * images,  # member-images
        batch_size=config.batch_size,
        channels_last=config.channels_last,  # on the CPU the fused convs run NCHW regardless
        model=model,
        n_params=count_parameters(build_model(config)),  # of one member
        dataset=DATASET,
        population=population,
        mode="population",
        steps_per_call=steps,
    )


@pytest.mark.parametrize(("device", "model"), single_cases())
def test_population_single(benchmark, budget, population_data, device, model):
    dev = torch.device(device)
    config, steps = _config(model, device, budget, 1, population_data)
    work, net = single_steps(config, population_data, steps)
    timed = Timed(work, dev)

    benchmark.group = group_name("population_step", model, f"bs{config.batch_size}", "single")
    benchmark.pedantic(timed, rounds=budget.rounds(dev), warmup_rounds=budget.warmup_rounds)

    record(
        benchmark,
        timed,
        kind="population_step",
        images=steps * config.batch_size,
        batch_size=config.batch_size,
        channels_last=config.channels_last,
        model=model,
        n_params=count_parameters(net),
        dataset=DATASET,
        population=1,
        mode="single",
        steps_per_call=steps,
    )
