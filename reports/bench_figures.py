"""Figures of the benchmark page: plotly drawing only; the tables come from bench_tables."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from reports.panel import Panel, draw_panel
from studies.bench_data import BenchData, BenchRun
from studies.bench_tables import population_table, time_to_accuracy_table

DEVICE_COLORS = {"cpu": "#1f77b4", "cuda": "#2ca02c"}
PIPELINE_COLORS = {"seed": "#ff7f0e", "mnistcore": "#1f77b4"}  # seed: the baseline, first
PRESET_COLORS = {"seed": "#ff7f0e", "study": "#1f77b4"}  # population presets
DATA_KINDS = ["data_batch", "data_epoch"]
AUTOSAVE = "`pytest bench/{} --benchmark-autosave`"  # .format(a test file, or "" for all)


def bench_panels(data: BenchData, run: BenchRun) -> list[Panel]:
    """Panels for one run: img/s per case by device, the data paths, member img/s against
    the population size K on each device, and time to accuracy per dataset and device."""
    every = data.rows_of(run)  # time-to-accuracy cases have no img/s
    rows = every.dropna(subset=["images_per_second"])
    key = "".join(c if c.isalnum() else "-" for c in run.label)
    where = f" for benchmark run {run.label}"
    compute = rows[~rows["kind"].isin([*DATA_KINDS, "population_step"])]
    # Data cases: one bar per pipeline, side by side, for each case on each device.
    data_rows = rows[rows["kind"].isin(DATA_KINDS)]
    data_rows = data_rows.assign(
        case=data_rows["group"].fillna(data_rows["kind"]) + " · " + data_rows["device"].fillna("?")
    )
    panels = [
        _bars_panel(f"devices-{key}", "Training and inference throughput: CPU vs CUDA (img/s, "
                    "log scale)", compute, "device", DEVICE_COLORS, where,
                    missing="no train_step or inference case"),
        _bars_panel(f"datapath-{key}", "Data path: seed DataLoader vs mnistcore in-memory "
                    "tensors (img/s, log scale)", data_rows, "pipeline", PIPELINE_COLORS, where,
                    missing="no data_batch or data_epoch case"),
    ]  # fmt: skip
    return panels + population_panels(rows, key, where) + time_to_accuracy_panels(every, key)


def _bars_panel(
    key: str, title: str, rows: pd.DataFrame, by: str, colors: dict[str, str], where: str, *,
    missing: str,
) -> Panel:  # fmt: skip
    if rows.empty:
        return Panel(key, title, missing=f"{missing} in this run: run {AUTOSAVE.format('')}")
    return draw_panel(key, title, lambda: _grouped_bars(rows, by, colors), where=where)


def time_to_accuracy_panels(rows: pd.DataFrame, key: str, where: str = "") -> list[Panel]:
    """One table per dataset and device: each recipe's median training seconds to the target
    test accuracy, each seed's, the epochs and the speed-up over the tutorial's recipe."""
    table = time_to_accuracy_table(rows)
    title = "Time to accuracy: training seconds to a test accuracy"
    if table.empty:
        run = AUTOSAVE.format("test_time_to_accuracy.py")
        missing = f"no time_to_accuracy case in this run: run {run}"
        return [Panel(f"tta-{key}", title, missing=missing)]
    panels = []
    for (dataset, device), some in table.groupby(["dataset", "device"], sort=True):
        targets = "/".join(f"{t:.0%}" for t in dict.fromkeys(some["target"]))
        panel = draw_panel(
            f"tta-{dataset}-{device}-{key}", f"{title}: {dataset}, {device}, {targets}",
            lambda some=some: _tta_table(some), where=where, caption=TTA_CAPTION, wide=True,
        )  # fmt: skip
        if panel.figure is not None:  # a table needs its rows' height, not a plot's
            panel.figure.update_layout(height=100 + 28 * len(some))
        panels.append(panel)
    return panels


def population_panels(rows: pd.DataFrame, key: str, where: str = "") -> list[Panel]:
    """One panel per device: member img/s against K per preset, the single model dashed."""
    table = population_table(rows)
    title = "Population: member img/s vs population size K"
    if table.empty:
        run = AUTOSAVE.format("test_population.py")
        missing = f"no population_step case in this run: run {run}"
        return [Panel(f"population-{key}", title, missing=missing)]
    return [
        draw_panel(f"population-{device}-{key}", f"{title} ({device}, log-log)",
                   lambda some=some: _population_lines(some), where=where,
                   caption=_population_caption(some))
        for device, some in table.groupby("device", sort=True)
    ]  # fmt: skip


def trend_panel(data: BenchData) -> Panel:
    title = "Trend across autosaved runs (img/s per case and device)"
    measured = data.rows.dropna(subset=["images_per_second"])
    if len(data.runs) < 2 or measured["run"].nunique() < 2:
        n = len(data.runs)
        missing = (f"{n} run{'' if n == 1 else 's'} so far: a trend needs two; run "
                   f"{AUTOSAVE.format('')} again (after a change) to add one")  # fmt: skip
        return Panel("trend", title, missing=missing)
    return draw_panel("trend", title, lambda: _trend(data, measured))


def _grouped_bars(rows: pd.DataFrame, by: str, colors: dict[str, str]) -> go.Figure:
    figure = go.Figure()
    cases = list(dict.fromkeys(rows["case"]))
    known = [v for v in colors if v in set(rows[by])]  # in the colors' order: the baseline first
    for value in known + sorted(set(rows[by].dropna()) - set(colors)):
        some = rows[rows[by] == value]
        per_case = some.groupby("case")["images_per_second"].median().reindex(cases)
        figure.add_trace(go.Bar(
            x=cases, y=per_case.values, name=str(value), marker_color=colors.get(str(value)),
            text=[_short(v) for v in per_case.values], textposition="outside",
            hovertemplate="%{x}<br>%{y:,.0f} img/s<extra>" + str(value) + "</extra>",
        ))  # fmt: skip
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
    machines = data.rows["machine_id"].nunique() > 1
    figure = go.Figure()
    for (case, device, machine), some in measured.groupby(
        ["case", "device", "machine_id"], sort=True, dropna=False
    ):
        figure.add_trace(go.Scatter(
            x=some["run"], y=some["images_per_second"], mode="lines+markers",
            name=f"{case} · {device}" + (f" · {machine}" if machines else ""),
            hovertemplate="%{x}<br>%{y:,.0f} img/s<extra>%{fullData.name}</extra>",
        ))  # fmt: skip
    figure.update_layout(
        xaxis={"title": "run (machine/number, oldest first)", "type": "category",
               "categoryorder": "array", "categoryarray": [r.label for r in data.runs]},
        yaxis={"title": "images per second", "type": "log", "dtick": 1},
        legend={"font": {"size": 10}},
    )  # fmt: skip
    return figure


def _population_lines(table: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    sizes = sorted(set(table["population"]))
    for model, some in table.groupby("model", sort=True):
        color = PRESET_COLORS.get(str(model))
        figure.add_trace(go.Scatter(
            x=some["population"], y=some["member_images_per_second"], mode="lines+markers",
            name=f"{model} (bs {some['batch_size'].iloc[0]})", marker_color=color,
            customdata=some["speedup_vs_single"],
            hovertemplate="K=%{x}<br>%{y:,.0f} member-img/s<br>%{customdata:.2f}x the single "
            "model<extra>%{fullData.name}</extra>",
        ))  # fmt: skip
        single = some["single_images_per_second"].iloc[0]
        if single == single:  # not NaN: the baseline ran
            figure.add_trace(go.Scatter(
                x=[sizes[0], sizes[-1]], y=[single, single], mode="lines",
                line={"dash": "dash", "color": color}, name=f"{model}: single model",
                hovertemplate="%{y:,.0f} img/s, one model at a time<extra></extra>",
            ))  # fmt: skip
    figure.update_layout(
        xaxis={"title": "population size K (members trained as one module)", "type": "log",
               "tickvals": sizes, "ticktext": [str(k) for k in sizes]},
        yaxis={"title": "member images per second", "type": "log"},
        legend={"orientation": "h", "y": 1.08},
    )  # fmt: skip
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
# the time-to-accuracy table's columns and their relative widths
TTA_COLUMNS = {"recipe": 1.6, "target": 0.8, "median s": 1.0, "each seed, s": 2.0, "seeds": 0.6,
               "epochs": 0.7, "speed-up vs tutorial recipe": 1.8}  # fmt: skip


def _tta_table(table: pd.DataFrame) -> go.Figure:
    rows = []
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
        rows.append([
            row.recipe, f"{row.target:.1%}",
            f"{row.seconds_to_target:.1f}" if reached else "not reached",
            per_seed, str(len(row.seconds_per_seed or ())),
            f"{row.epochs_to_target:g}" if reached else f"> {row.epoch_cap:g}", speedup,
        ])  # fmt: skip
    return go.Figure(go.Table(
        columnwidth=list(TTA_COLUMNS.values()),
        header={"values": list(TTA_COLUMNS), "align": "left", "fill_color": "#f0f0f0"},
        cells={"values": [list(c) for c in zip(*rows, strict=True)], "align": "left",
               "height": 26},
    ))  # fmt: skip


def _short(value: float) -> str:
    if value != value:  # NaN: this case was not measured with this device or pipeline
        return ""
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"
