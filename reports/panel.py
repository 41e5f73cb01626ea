"""One figure slot on a page: a plotly figure, or the reason there is none and how to get one."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import plotly.graph_objects as go


@dataclass(frozen=True)
class Panel:
    key: str  # unique on its page; becomes the plot container's id
    title: str
    figure: go.Figure | None = None
    missing: str | None = None  # shown instead of a figure: what is missing, how to produce it
    caption: str | None = None
    wide: bool = False  # spans the whole page width (plots with many subplots)


def draw_panel(
    key: str, title: str, draw: Callable[[], go.Figure], *, caption: str | None = None,
    where: str = "", wide: bool = False,
) -> Panel:  # fmt: skip
    """Draw one figure, in the look of every figure; one that cannot be drawn costs its panel,
    not the whole report."""
    try:
        figure = draw()
    except Exception as error:  # a plotting failure must not lose the other panels
        message = f"could not draw {title!r}{where}: {type(error).__name__}: {error}"
        warnings.warn(message, stacklevel=2)
        return Panel(key, title, missing=message, wide=wide)
    # the panel's heading replaces optuna's own plot title, and the width follows the page
    # (optuna fixes some widths, e.g. 300 px per slice subplot)
    figure.update_layout(
        template="plotly_white",
        title_text="",
        width=None,
        autosize=True,
        height=420,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        font={"family": "system-ui, sans-serif", "size": 12},
    )
    # Room for tick labels such as short parameter names beside a long axis title.
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    return Panel(key, title, figure=figure, caption=caption, wide=wide)
