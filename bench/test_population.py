"""Throughput of ``mnistcore.Population``: K configs of one net (the seed net at batch 64, the
study's at 128) trained as one fused module, their lr, momentum and seed differing as a search's
trials do. K=1 is the single-model baseline (``mode="single"``): ``fit`` and the search at
``--population 1`` train a trial so, and K trials take K times its time per image. Every case
trains the same member-images per call; member-img/s over the baseline's img/s is
``speedup_vs_single``.
"""

from __future__ import annotations

import pytest
import torch

from bench.timing import Timed, case, group_name, record
from bench.workloads import RESIDENT, bench_config, member_configs, population_steps
from mnistcore import build_model, count_parameters

SIZES = {"cpu": (1, 4, 8, 16), "cuda": (1, 16, 64, 256)}  # population sizes K per device
PRESETS = ("seed", "study")
# The quick run: the study net's baseline and one larger K per device (a speed-up needs its
# baseline in the same run).
QUICK_SIZES = {"cpu": (1, 8), "cuda": (1, 256)}


def _size(population: int) -> str:
    return "single" if population == 1 else f"K{population}"


def population_cases() -> list:
    return [
        case(
            device,
            model,
            k,
            quick=model == "study" and k in QUICK_SIZES[device],
            name=(device, model, f"bs{bench_config(model).batch_size}", _size(k)),
        )
        for device in ("cpu", "cuda")
        for model in PRESETS
        for k in SIZES[device]
    ]


@pytest.mark.parametrize(("device", "model", "population"), population_cases())
def test_population_step(benchmark, budget, resident_data, device, model, population):
    dev = torch.device(device)
    config = bench_config(model, device=device, dataset="synthetic")
    steps = budget.member_steps(dev, config.batch_size, population)
    images = steps * config.batch_size  # per member, per call
    members, work = population_steps(
        member_configs(config, population), resident_data, images, budget.calls(dev)
    )
    timed = Timed(work, dev)

    benchmark.group = group_name(
        "population_step", model, f"bs{config.batch_size}", _size(population)
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
        dataset=RESIDENT,
        population=population,
        mode="single" if population == 1 else "population",
        steps_per_call=steps,
    )
