"""Tables built from the benchmark rows ``bench_data`` reads (of one run, or several: medians
over them): CPU vs CUDA per case, the data paths, populations against their single model, time
to accuracy, and the headline of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

POPULATION_COLUMNS = ["device", "model", "batch_size", "population", "member_images_per_second",
                      "single_images_per_second", "speedup_vs_single"]  # fmt: skip
TIME_TO_ACCURACY_COLUMNS = [
    "dataset", "device", "recipe", "target", "reached", "seconds_to_target", "seconds_per_seed",
    "reached_per_seed", "epochs_to_target", "epochs_per_seed", "epoch_cap", "speedup_vs_seed",
    "speedup_vs_seed_at_least",
]  # fmt: skip
# bench/time_to_accuracy.py's rows, in its order: the baseline first
RECIPE_ORDER = ("tutorial", "tuned", "tutorial-dataloader")


@dataclass(frozen=True)
class Headline:
    """CPU vs CUDA in one line: the fastest train step on each device of one run."""

    cpu_case: str | None
    cpu_images_per_second: float | None
    cuda_case: str | None
    cuda_images_per_second: float | None
    speedup_min: float | None  # over train-step cases measured on both devices (else all)
    speedup_max: float | None
    paired_cases: int


def _pivot(
    rows: pd.DataFrame, index: list[str], by: str, pair: tuple[str, str], *, dropna: bool = True
) -> pd.DataFrame:
    """Median img/s per ``index`` with one column per value of ``by`` (both of ``pair`` there,
    NaN where not measured) and ``speedup``: the second of the pair over the first."""
    table = rows.pivot_table(
        index=index, columns=by, values="images_per_second", aggfunc="median", dropna=dropna
    ).reset_index()
    table = table.reindex(columns=[*index, *pair])  # a value of ``by`` not measured: NaN
    table["speedup"] = table[pair[1]] / table[pair[0]]
    table.columns.name = None
    return table


def speedup_table(rows: pd.DataFrame) -> pd.DataFrame:
    """img/s on CPU and CUDA per case (median over runs given), and CUDA / CPU."""
    measured = rows.dropna(subset=["images_per_second"])
    measured = measured[measured["device"].isin(["cpu", "cuda"])]
    if measured.empty:
        return pd.DataFrame(columns=["case", "kind", "cpu", "cuda", "speedup"])
    # dropna=False: a case whose kind was not recorded still pairs up
    table = _pivot(measured, ["case", "kind"], "device", ("cpu", "cuda"), dropna=False)
    table = table.dropna(subset=["cpu", "cuda"])
    return table.sort_values("speedup", ascending=False).reset_index(drop=True)


def data_path_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Data cases: the seed's DataLoader pipeline vs mnistcore's in-memory tensors."""
    index = ["group", "kind", "dataset", "device"]
    data = rows[rows["kind"].isin(["data_batch", "data_epoch"])]
    data = data.dropna(subset=["pipeline", "images_per_second"])
    if data.empty:
        return pd.DataFrame(columns=[*index, "seed", "mnistcore", "speedup"])
    data = data.assign(
        group=data["group"].fillna(data["kind"]),
        dataset=data["dataset"].fillna("?"),
        device=data["device"].fillna("?"),
    )
    return _pivot(data, index, "pipeline", ("seed", "mnistcore")).reset_index(drop=True)


def population_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Population cases, one row per device, preset and K: member img/s, the single-model
    baseline's img/s (the same net and batch) and ``speedup_vs_single`` (bench/ratios.py)."""
    cases = rows[rows["kind"] == "population_step"].dropna(
        subset=["device", "model", "population", "member_images_per_second"]
    )
    if cases.empty:
        return pd.DataFrame(columns=POPULATION_COLUMNS)
    net = ["device", "model", "batch_size"]
    single = (
        cases[cases["mode"] == "single"]
        .groupby(net, dropna=False)["member_images_per_second"]
        .median()
        .rename("single_images_per_second")
    )
    fused = cases[cases["mode"] == "population"]
    rates = ["member_images_per_second", "speedup_vs_single"]
    table = fused.groupby([*net, "population"], dropna=False)[rates].median().reset_index()
    table = table.join(single, on=net)
    table["population"] = table["population"].astype(int)
    table = table[POPULATION_COLUMNS].sort_values(["device", "model", "population"])
    return table.reset_index(drop=True)


def time_to_accuracy_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Time-to-accuracy cases of one run, one row per dataset, device and recipe (RECIPE_ORDER,
    then any other): the target, the median seconds to it (NaN: not reached), each seed's, the
    epochs and the ratios bench/ratios.py saved; a case found twice keeps its last row."""
    cases = rows[rows["kind"] == "time_to_accuracy"].dropna(subset=["recipe", "target"])
    if cases.empty:
        return pd.DataFrame(columns=TIME_TO_ACCURACY_COLUMNS)
    rank = {recipe: i for i, recipe in enumerate(RECIPE_ORDER)}
    cases = cases.assign(
        dataset=cases["dataset"].fillna("?"),
        device=cases["device"].fillna("?"),
        reached=cases["seconds_to_target"].notna(),
        order=[rank.get(r, len(rank)) for r in cases["recipe"]],
    )
    cases = cases.drop_duplicates(["dataset", "device", "recipe", "target"], keep="last")
    table = cases.sort_values(["dataset", "device", "target", "order", "recipe"])
    return table[TIME_TO_ACCURACY_COLUMNS].reset_index(drop=True)


def headline(rows: pd.DataFrame) -> Headline:
    measured = rows.dropna(subset=["images_per_second"])
    train = measured[measured["kind"] == "train_step"]
    if train.empty:
        train = measured

    def fastest(device: str) -> tuple[str | None, float | None]:
        on_device = train[train["device"] == device]
        if on_device.empty:
            return None, None
        top = on_device.loc[on_device["images_per_second"].idxmax()]
        return str(top["case"]), float(top["images_per_second"])

    cpu_case, cpu_speed = fastest("cpu")
    cuda_case, cuda_speed = fastest("cuda")
    speedups = speedup_table(rows)
    if (speedups["kind"] == "train_step").any():
        speedups = speedups[speedups["kind"] == "train_step"]
    ratios = speedups["speedup"]
    return Headline(
        cpu_case=cpu_case,
        cpu_images_per_second=cpu_speed,
        cuda_case=cuda_case,
        cuda_images_per_second=cuda_speed,
        speedup_min=float(ratios.min()) if len(ratios) else None,
        speedup_max=float(ratios.max()) if len(ratios) else None,
        paired_cases=len(ratios),
    )
