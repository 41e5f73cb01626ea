"""The data path: the seed's DataLoader pipeline vs mnistcore's device-resident batches, on the
same IDX files (``extra_info["dataset"]``), in the same run so the ratio means something on a
noisy machine: producing batches of 64, and one training epoch of the seed network (seed loop vs
``fit``). Both pipelines of a pair process the same images per timed call, so their ratio
(``speedup_vs_seed``) is one figure, per call and per image alike.
"""

from __future__ import annotations

import pytest
import torch

from bench.seed_baseline import BATCH_SIZE, SeedNet, seed_batches, seed_epoch, seed_loader
from bench.timing import Timed, case, group_name, record
from bench.workloads import bench_config, epoch_subset, mnistcore_batches, mnistcore_epoch
from mnistcore import build_model, count_parameters

# the same for both pipelines; the seed's batch takes ~3 ms on the 2-core CPU, mnistcore's ~20 us
BATCHES_PER_CALL = 50
# mnistcore's call is ~1 ms against the seed's ~0.15 s: take 10x the rounds of it (still cheap),
# so its median is steady and the regression gate's rank test has rounds to work with
MNISTCORE_ROUNDS_FACTOR = 10


CASES = [case(d, p, quick=True) for d in ("cpu", "cuda") for p in ("seed", "mnistcore")]


@pytest.mark.parametrize(("device", "pipeline"), CASES)
def test_data_batch(benchmark, budget, data_files, device, pipeline):
    dev = torch.device(device)
    if pipeline == "seed":
        work = seed_batches(data_files.seed_dataset, dev, BATCHES_PER_CALL)
    else:
        data = data_files.mnistcore_dataset.to(dev)
        work = mnistcore_batches(data, BATCH_SIZE, BATCHES_PER_CALL)
    timed = Timed(work, dev)

    benchmark.group = group_name("data_batch", f"bs{BATCH_SIZE}")
    rounds = budget.rounds(dev) * (1 if pipeline == "seed" else MNISTCORE_ROUNDS_FACTOR)
    benchmark.pedantic(timed, rounds=rounds, warmup_rounds=budget.warmup_rounds)

    record(
        benchmark,
        timed,
        kind="data_batch",
        images=BATCHES_PER_CALL * BATCH_SIZE,
        batch_size=BATCH_SIZE,
        channels_last=pipeline == "mnistcore",
        model=None,
        n_params=None,
        pipeline=pipeline,
        dataset=data_files.name,
        dataset_source=data_files.note,
        batches_per_call=BATCHES_PER_CALL,
    )


@pytest.mark.parametrize(("device", "pipeline"), CASES)
def test_data_epoch(benchmark, budget, data_files, device, pipeline):
    dev = torch.device(device)
    n_images = budget.epoch_steps * BATCH_SIZE
    if pipeline == "seed":
        work = seed_epoch(seed_loader(data_files.seed_dataset, n_images), dev)
        n_params = count_parameters(SeedNet())
    else:
        config = bench_config("seed", batch_size=BATCH_SIZE, device=device)
        work = mnistcore_epoch(config, epoch_subset(data_files.mnistcore_dataset, n_images))
        n_params = count_parameters(build_model(config))  # the same net: 185,998 both
    timed = Timed(work, dev)

    benchmark.group = group_name(
        "data_epoch", "seed-net", f"bs{BATCH_SIZE}", f"{budget.epoch_steps}steps"
    )
    benchmark.pedantic(timed, rounds=budget.epoch_rounds, warmup_rounds=budget.warmup_rounds)

    record(
        benchmark,
        timed,
        kind="data_epoch",
        images=n_images,
        batch_size=BATCH_SIZE,
        channels_last=pipeline == "mnistcore",
        model="seed",
        n_params=n_params,
        pipeline=pipeline,
        dataset=data_files.name,
        dataset_source=data_files.note,
        steps_per_call=budget.epoch_steps,
    )
