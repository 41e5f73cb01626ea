"""The comparison page's figures: best-so-far validation accuracy against wall time and
against epochs (mean over seeds and its 95 % bootstrap band), and the mean rank per budget."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

from reports.panel import Panel, draw_panel
from studies import compare_data as cmp


def compare_panels(runs: Sequence[cmp.Run]) -> list[Panel]:
    panels = [
        draw_panel(
            f"best-{axis}", f"Best validation accuracy so far against {label}",
            lambda axis=axis: _best_so_far(runs, axis),
            caption="mean over seeds; the band is a 95 % bootstrap interval of that mean "
            "(resampling seeds); a line starts once every seed has a complete trial",
        )
        for axis, label in cmp.AXES.items()
    ]  # fmt: skip
    panels.append(
        draw_panel(
            "ranks",
            "Mean rank per budget (1 = best)",
            lambda: _ranks(runs),
            caption="at each wall-time budget, strategies ranked on each seed by best-so-far "
            "validation accuracy, then averaged over seeds",
        )  # fmt: skip
    )
    return panels


def _colour(i: int) -> str:
    return qualitative.Plotly[i % len(qualitative.Plotly)]


def _best_so_far(runs: Sequence[cmp.Run], axis: str) -> go.Figure:
    grid = cmp.grid_of(runs, axis)
    figure = go.Figure()
    for i, name in enumerate(cmp.strategies(runs)):
        mean, low, high = cmp.band([r for r in runs if r.strategy == name], axis, grid)
        colour, (r, g, b) = _colour(i), hex_to_rgb(_colour(i))
        figure.add_trace(go.Scatter(x=grid, y=low * 100, line={"width": 0}, showlegend=False,
                                    hoverinfo="skip", legendgroup=name))  # fmt: skip
        figure.add_trace(go.Scatter(x=grid, y=high * 100, fill="tonexty", line={"width": 0},
                                    fillcolor=f"rgba({r},{g},{b},0.18)", showlegend=False,
                                    hoverinfo="skip", legendgroup=name))  # fmt: skip
        figure.add_trace(go.Scatter(x=grid, y=mean * 100, name=name, line={"color": colour},
                                    legendgroup=name))  # fmt: skip
    figure.update_xaxes(title_text=cmp.AXES[axis])
    figure.update_yaxes(title_text="best val accuracy so far (%)")
    return figure


def _ranks(runs: Sequence[cmp.Run]) -> go.Figure:
    grid = cmp.grid_of(runs, "seconds")
    figure = go.Figure()
    for i, (name, ranks) in enumerate(cmp.mean_ranks(runs, "seconds", grid).items()):
        figure.add_trace(go.Scatter(x=grid, y=ranks, name=name, line={"color": _colour(i)}))
    figure.update_xaxes(title_text=cmp.AXES["seconds"])
    figure.update_yaxes(title_text="mean rank", autorange="reversed")
    return figure
