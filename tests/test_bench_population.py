"""The population benchmarks' plumbing on synthetic ``extra_info``: the population ->
single-model speed-ups, their summary lines, the saved JSON, and the members' configs."""

from __future__ import annotations

import pytest
import torch

from bench import conftest as bench_conftest
from bench.ratios import add_speedups, population_lines, population_speedups
from bench.timing import Budget, extra_info_problems
from bench.workloads import bench_config, epoch_subset, member_configs, population_steps


def info(model: str, mode: str, k: int, ips: float, *, device: str = "cpu") -> dict:
    """A population_step's extra_info as bench/test_population.py records it (the fields the
    speed-ups read, plus REQUIRED_FIELDS)."""
    return {
        "kind": "population_step",
        "images_per_second": ips,
        "member_images_per_second": ips,
        "batch_size": 128 if model == "study" else 64,
        "device": device,
        "device_name": "AMD EPYC (2 cores)",
        "precision": "fp32",
        "channels_last": True,
        "threads": 2,
        "n_params": 155_000,
        "model": model,
        "pipeline": "mnistcore",
        "dataset": "synthetic-digits",
        "population": k,
        "mode": mode,
    }


SINGLE = info("study", "single", 1, 4000.0)
K8 = info("study", "population", 8, 6000.0)
K16 = info("study", "population", 16, 7000.0)


def test_speedup_is_member_rate_over_single_rate_in_any_order():
    # K single-model steps train K member-images per batch image, as one population step does:
    # the ratio is member-img/s over img/s.
    expected = {("cpu", "study", 8): 1.5, ("cpu", "study", 16): 1.75}
    assert population_speedups([SINGLE, K8, K16]) == pytest.approx(expected)
    # The baseline finishing last (or in the middle) gives the same ratios.
    assert population_speedups([K16, K8, SINGLE]) == population_speedups([SINGLE, K8, K16])
    assert population_speedups([K8, SINGLE, K16]) == population_speedups([SINGLE, K8, K16])


def test_speedup_needs_the_baseline_of_the_same_net():
    # No baseline, or only another preset's, another device's or batch size's: no ratio.
    assert population_speedups([K8, K16]) == {}
    seed_single = info("seed", "single", 1, 9000.0)
    cuda_single = info("study", "single", 1, 9000.0, device="cuda")
    other_batch = {**SINGLE, "batch_size": 256}
    assert population_speedups([seed_single, cuda_single, other_batch, K8]) == {}
    # Other kinds are left out, even with the same fields.
    assert population_speedups([{**SINGLE, "kind": "train_step"}, K8]) == {}


def test_add_speedups_marks_population_cases_only():
    infos = [dict(K16), dict(SINGLE), dict(K8)]
    add_speedups(infos)
    by_k = {(i["mode"], i["population"]): i for i in infos}
    assert by_k["population", 8]["speedup_vs_single"] == pytest.approx(1.5)
    assert by_k["population", 16]["speedup_vs_single"] == pytest.approx(1.75)
    # The baseline is not compared with itself.
    assert "speedup_vs_single" not in by_k["single", 1]


def test_saved_json_gets_the_ratio_in_the_case_extra_info():
    # bench/conftest.py's hook, as pytest-benchmark calls it before writing the JSON.
    output = {"benchmarks": [{"extra_info": dict(K8)}, {"extra_info": dict(SINGLE)}]}
    bench_conftest.pytest_benchmark_update_json(output)
    assert output["benchmarks"][0]["extra_info"]["speedup_vs_single"] == pytest.approx(1.5)


def test_population_lines_name_both_speeds_and_the_goal():
    lines = population_lines([K16, SINGLE, K8], {("study", 8): 1.3})
    assert lines == [
        "population_step on cpu, study K=8: 1.50x the single model's img/s "
        "(6,000 member-img/s vs 4,000 img/s, batch 128); goal on the 2-core CPU: >= 1.3x",
        "population_step on cpu, study K=16: 1.75x the single model's img/s "
        "(7,000 member-img/s vs 4,000 img/s, batch 128)",
    ]
    # Goals are for the 2-core CPU: a CUDA line has none.
    cuda = [
        info("study", "single", 1, 1.0, device="cuda"),
        info("study", "population", 8, 2.0, device="cuda"),
    ]
    assert "goal" not in population_lines(cuda, {("study", 8): 1.3})[0]


def test_extra_info_of_a_population_case_is_checked():
    assert extra_info_problems(K8) == []
    # A population case names its K, its member rate and its mode.
    missing = {k: v for k, v in K8.items() if k != "population"}
    assert extra_info_problems(missing) == ["population missing"]
    assert extra_info_problems({**K8, "mode": "eager"}) == [
        "mode='eager' is not one of population, single"
    ]
    assert extra_info_problems({**K8, "population": 0}) == ["population=0 is not >= 1"]


def test_member_steps_keep_member_images_per_call():
    budget = Budget()
    cpu = torch.device("cpu")
    # 8,192 member-images per call on the CPU: fewer steps as K grows, never none.
    assert budget.member_steps(cpu, 128, 1) * 128 == 8192
    assert budget.member_steps(cpu, 128, 16) * 128 * 16 == 8192
    assert budget.member_steps(cpu, 128, 1024) == 1


def test_members_differ_as_trials_do():
    config = bench_config("study")
    members = member_configs(config, 8)
    assert [m.seed for m in members] == list(range(8))
    assert members[0].lr == pytest.approx(config.lr / 2)
    assert members[-1].lr == pytest.approx(config.lr * 2)
    assert len({m.momentum for m in members}) == 8
    # One member is the preset itself.
    assert member_configs(config, 1) == [config]


def test_population_steps_last_every_call_the_bench_makes(synthetic):
    config = bench_config("study", device="cpu", dataset="synthetic")
    data = epoch_subset(synthetic, 512)
    population, work = population_steps(member_configs(config, 2), data, 384, calls=3)
    for _ in range(3):
        work()
    # Each call trained 384 images (3 batches of 128) inside the schedule, no member lost.
    assert population.images_seen == 3 * 384 and population.members == [0, 1]
    # The schedule ends after the calls the bench makes (and a spare epoch): not much later.
    assert population.configs[0].epochs == 4
