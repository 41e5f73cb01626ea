"""Figures of the benchmark page: plotly drawing only; the tables come from bench_data.py."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from reports.panel import Panel, draw_panel
from studies.bench_data import BenchData, BenchRun, population_table, time_to_accuracy_table

__all__ = ["bench_panels", "population_panels", "time_to_accuracy_panels", "trend_panel"]

DEVICE_COLORS = {"cpu": "#1f77b4", "cuda": "#2ca02c"}
PIPELINE_COLORS = {"seed": "#ff7f0e", "mnistcore": "#1f77b4"}  # seed: the baseline, first
PRESET_COLORS = {"seed": "#ff7f0e", "study": "#1f77b4"}  # population presets
DATA_KINDS = ["data_batch", "data_epoch"]
AUTOSAVE = "`pytest bench/ --benchmark-autosave`"


def bench_panels(data: BenchData, run: BenchRun) -> list[Panel]:
    """Panels for one run: img/s per case by device, the data paths, member img/s against
    the population size K on each device, and time to accuracy per dataset and device."""
    every = data.rows_of(run)  # time-to-accuracy cases have no img/s
    rows = every.dropna(subset=["images_per_second"])
    key = _key(run)
    where = f" for benchmark run {run.label}"
    panels = []
    compute = rows[~rows["kind"].isin([*DATA_KINDS, "population_step"])]
    title = "Training and inference throughput: CPU vs CUDA (img/s, log scale)"
    if compute.empty:
        panels.append(
            Panel(
                f"devices-{key}",
                title,
                missing=f"no train_step or inference case in this run: run {AUTOSAVE}",
            )
        )
    else:
        panels.append(
            draw_panel(
                f"devices-{key}",
                title,
                lambda: _grouped_bars(compute, "device", DEVICE_COLORS),
                where=where,
            )
        )
    data_rows = rows[rows["kind"].isin(DATA_KINDS)]
    title = "Data path: seed DataLoader vs mnistcore in-memory tensors (img/s, log scale)"
    if data_rows.empty:
        panels.append(
            Panel(
                f"datapath-{key}",
                title,
                missing=f"no data_batch or data_epoch case in this run: run {AUTOSAVE}",
            )
        )
    else:
        # One bar per pipeline, side by side, for each case on each device.
        bars = data_rows.assign(
            case=data_rows["group"].fillna(data_rows["kind"])
            + " · "
            + data_rows["device"].fillna("?")
        )
        panels.append(
            draw_panel(
                f"datapath-{key}",
                title,
                lambda: _grouped_bars(bars, "pipeline", PIPELINE_COLORS),
                where=where,
            )
        )
    return panels + population_panels(rows, key, where) + time_to_accuracy_panels(every, key)


def time_to_accuracy_panels(rows: pd.DataFrame, key: str, where: str = "") -> list[Panel]:
    """One table per dataset and device: each recipe's median training seconds to the target
    test accuracy, each seed's, the epochs and the speed-up over the tutorial's recipe."""
    table = time_to_accuracy_table(rows)
    title = "Time to accuracy: training seconds to a test accuracy"
    if table.empty:
        missing = (
            "no time_to_accuracy case in this run: run "
            "`pytest bench/test_time_to_accuracy.py --benchmark-autosave`"
        )
        return [Panel(f"tta-{key}", title, missing=missing)]
    panels = []
    for (dataset, device), some in table.groupby(["dataset", "device"], sort=True):
        targets = "/".join(f"{t:.0%}" for t in dict.fromkeys(some["target"]))
        panel = draw_panel(
            f"tta-{dataset}-{device}-{key}",
            f"{title}: {dataset}, {device}, {targets}",
            lambda some=some: _tta_table(some),
            where=where,
            caption=TTA_CAPTION,
            wide=True,
        )
        if panel.figure is not None:  # a table needs its rows' height, not a plot's
            panel.figure.update_layout(height=100 + 28 * len(some))
        panels.append(panel)
    return panels


def population_panels(rows: pd.DataFrame, key: str, where: str = "") -> list[Panel]:
    """One panel per device: member img/s against K per preset, the single model dashed."""
    table = population_table(rows)
    title = "Population: member img/s vs population size K"
    if table.empty:
        return [
            Panel(
                f"population-{key}",
                title,
                missing="no population_step case in this "
                "run: run `pytest bench/test_population.py --benchmark-autosave`",
            )
        ]
    panels = []
    for device, some in table.groupby("device", sort=True):
        panels.append(
            draw_panel(
                f"population-{device}-{key}",
                f"{title} ({device}, log-log)",
                lambda some=some: _population_lines(some),
                where=where,
                caption=_population_caption(some),
            )
        )
    return panels


def trend_panel(data: BenchData) -> Panel:
    title = "Trend across autosaved runs (img/s per case and device)"
    measured = data.rows.dropna(subset=["images_per_second"])
    if len(data.runs) < 2 or measured["run"].nunique() < 2:
        n = len(data.runs)
        return Panel(
            "trend",
            title,
            missing=f"{n} run{'' if n == 1 else 's'} so far: a trend "
            f"needs two; run {AUTOSAVE} again (after a change) to add one",
        )
    return draw_panel("trend", title, lambda: _trend(data, measured))


def _grouped_bars(rows: pd.DataFrame, by: str, colors: dict[str, str]) -> go.Figure:
    figure = go.Figure()
    cases = list(dict.fromkeys(rows["case"]))
    for value in [v for v in colors if v in set(rows[by])] + sorted(
        set(rows[by].dropna()) - set(colors)
    ):
        some = rows[rows[by] == value]
        per_case = some.groupby("case")["images_per_second"].median().reindex(cases)
        figure.add_trace(
            go.Bar(
                x=cases,
                y=per_case.values,
                name=str(value),
                marker_color=colors.get(str(value)),
                text=[_short(v) for v in per_case.values],
                textposition="outside",
                hovertemplate="%{x}<br>%{y:,.0f} img/s<extra>" + str(value) + "</extra>",
            )
        )
    figure.update_layout(
        barmode="group",
        yaxis={"title": "images per second", "type": "log", "dtick": 1},  # powers of ten
        xaxis={"tickangle": -30, "automargin": True},
        legend={"orientation": "h", "y": 1.08},
    )
    return figure


def _trend(data: BenchData, measured: pd.DataFrame) -> go.Figure:
    order = {run.label: i for i, run in enumerate(data.runs)}
    measured = measured.assign(order=measured["run"].map(order)).sort_values("order")
    figure = go.Figure()
    for (case, device, machine), some in measured.groupby(
        ["case", "device", "machine_id"], sort=True, dropna=False
    ):
        figure.add_trace(
            go.Scatter(
                x=some["run"],
                y=some["images_per_second"],
                mode="lines+markers",
                name=f"{case} · {device}"
                + (f" · {machine}" if data.rows["machine_id"].nunique() > 1 else ""),
                hovertemplate="%{x}<br>%{y:,.0f} img/s<extra>%{fullData.name}</extra>",
            )
        )
    figure.update_layout(
        xaxis={
            "title": "run (machine/number, oldest first)",
            "type": "category",
            "categoryorder": "array",
            "categoryarray": [r.label for r in data.runs],
        },
        yaxis={"title": "images per second", "type": "log", "dtick": 1},
        legend={"font": {"size": 10}},
    )
    return figure


def _population_lines(table: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    sizes = sorted(set(table["population"]))
    for model, some in table.groupby("model", sort=True):
        color = PRESET_COLORS.get(str(model))
        figure.add_trace(
            go.Scatter(
                x=some["population"],
                y=some["member_images_per_second"],
                mode="lines+markers",
                name=f"{model} (bs {some['batch_size'].iloc[0]})",
                marker_color=color,
                customdata=some["speedup_vs_single"],
                hovertemplate="K=%{x}<br>%{y:,.0f} member-img/s<br>%{customdata:.2f}x the single "
                "model<extra>%{fullData.name}</extra>",
            )
        )
        single = some["single_images_per_second"].iloc[0]
        if single == single:  # not NaN: the baseline ran
            figure.add_trace(
                go.Scatter(
                    x=[sizes[0], sizes[-1]],
                    y=[single, single],
                    mode="lines",
                    line={"dash": "dash", "color": color},
                    name=f"{model}: single model",
                    hovertemplate="%{y:,.0f} img/s, one model at a time<extra></extra>",
                )
            )
    figure.update_layout(
        xaxis={
            "title": "population size K (members trained as one module)",
            "type": "log",
            "tickvals": sizes,
            "ticktext": [str(k) for k in sizes],
        },
        yaxis={"title": "member images per second", "type": "log"},
        legend={"orientation": "h", "y": 1.08},
    )
    return figure


def _population_caption(table: pd.DataFrame) -> str:
    parts = [
        f"{row.model} K={row.population} {row.speedup_vs_single:.2f}x"
        for row in table.itertuples()
        if row.speedup_vs_single == row.speedup_vs_single
    ]
    ratios = "; ".join(parts) if parts else "none (no single-model baseline in this run)"
    return (
        "Dashed: the same net trained one model at a time (K single-model steps), measured in "
        f"this run. Speed-up over it: {ratios}."
    )


TTA_CAPTION = (
    "Median over seeds of the training seconds (evaluation excluded) until the test accuracy, "
    "checked after each epoch, reaches the target; + marks a seed that did not reach it within "
    "its cap (its planned epochs, 10 for a constant lr). Speed-up: the tutorial recipe's median "
    "/ this one's, same run; ≥ where the tutorial recipe did not reach the target (its capped "
    "seconds are a lower bound)."
)
TTA_HEADER = [
    "recipe",
    "target",
    "median s",
    "each seed, s",
    "seeds",
    "epochs",
    "speed-up vs tutorial recipe",
]
TTA_WIDTHS = [1.6, 0.8, 1.0, 2.0, 0.6, 0.7, 1.8]  # relative column widths


def _tta_table(table: pd.DataFrame) -> go.Figure:
    cells = [[] for _ in TTA_HEADER]
    for row in table.itertuples():
        per_seed = ", ".join(
            f"{s:.1f}" + ("" if ok else "+")
            for s, ok in zip(row.seconds_per_seed or (), row.reached_per_seed or (), strict=False)
        )
        reached = row.seconds_to_target == row.seconds_to_target  # not NaN
        if row.speedup_vs_seed == row.speedup_vs_seed:
            speedup = f"{row.speedup_vs_seed:.2f}×"
        elif row.speedup_vs_seed_at_least == row.speedup_vs_seed_at_least:
            speedup = f"≥ {row.speedup_vs_seed_at_least:.2f}×"
        else:
            speedup = "–"
        values = [
            row.recipe,
            f"{row.target:.1%}",
            f"{row.seconds_to_target:.1f}" if reached else "not reached",
            per_seed,
            str(len(row.seconds_per_seed or ())),
            f"{row.epochs_to_target:g}" if reached else f"> {row.epoch_cap:g}",
            speedup,
        ]
        for column, value in zip(cells, values, strict=True):
            column.append(value)
    table_trace = go.Table(
        columnwidth=TTA_WIDTHS,
        header={"values": TTA_HEADER, "align": "left", "fill_color": "#f0f0f0"},
        cells={"values": cells, "align": "left", "height": 26},
    )
    return go.Figure(table_trace)


def _key(run: BenchRun) -> str:
    return "".join(c if c.isalnum() else "-" for c in run.label)


def _short(value: float) -> str:
    if value != value:  # NaN: this case was not measured with this device or pipeline
        return ""
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"
