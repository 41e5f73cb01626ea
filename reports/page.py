"""Render pages from jinja2 templates and write the report folder: every page is rendered in
memory first, so a failing build leaves the old report in place, and the Optuna journal or
database that may live in the same folder is never touched.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.offline
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from reports.panel import Panel
from studies import formatting as fmt
from studies.confirmation import baseline_sentence
from studies.intervals import format_accuracy, format_spread, wilson_text

PLOTLY_JS = "plotly.min.js"  # written once beside index.html; every page loads it
STUDY_DIR = "studies"
TOP_LEVEL_PAGES = ("index.html", "benchmarks.html", "compare.html")

# Plot toolbar without the plotly logo link: nothing on the page points off the machine.
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
Page = tuple[str, str]  # a page's path in the output folder ("/"-separated) and its HTML


def study_href(slug: str) -> str:
    return f"{STUDY_DIR}/{slug}.html"


def render(template: str, path: str, **context: Any) -> Page:
    root = "../" * path.count("/")  # pages in studies/ reach plotly.min.js one level up
    page = template.removesuffix(".html.j2")  # highlights the current page in the top bar
    html = _environment().get_template(template).render(root=root, page=page, **context)
    return path, html


def write_site(out_dir: Path, pages: Sequence[Page]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    generated = [out_dir / name for name in (*TOP_LEVEL_PAGES, PLOTLY_JS)]
    for old in [*generated, *(out_dir / STUDY_DIR).glob("*.html")]:  # never the journal
        old.unlink(missing_ok=True)
    (out_dir / PLOTLY_JS).write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    for path, html in pages:
        target = out_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")
    return out_dir / "index.html"


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,  # every template is HTML (named *.html.j2)
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ticks=backticks_to_code,
        percent=fmt.percent,  # accuracies 96.00%; | percent(0) for shares, 25%
        wilson=format_wilson,
        accn=format_accuracy,
        spread=format_spread,
        ips=fmt.format_images_per_second,
        duration=fmt.format_duration,
        epochs=fmt.format_epochs,
        ratio=fmt.format_ratio,
        value=fmt.format_value,
    )
    env.globals.update(plot=plot_html, table=table_html, study_href=study_href,
                       train_command=fmt.train_command, baseline=baseline_sentence)  # fmt: skip
    return env


def backticks_to_code(text: str) -> Markup:
    """Notes written for terminals and pages alike: `command` becomes <code>command</code>."""
    escaped = str(escape(text))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def plot_html(panel: Panel) -> Markup:
    if panel.figure is None:
        return Markup("")
    html = panel.figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"plot-{panel.key}", config=PLOT_CONFIG
    )
    return Markup(html)  # plotly's own markup; titles and hover texts are JSON-encoded


def table_html(frame: pd.DataFrame, *, css_class: str = "data sortable") -> Markup:
    """A frame as an HTML table; cells already formatted as text by the caller or here."""
    shown = frame.copy()
    for column in shown.columns:
        shown[column] = [_cell(column, v) for v in shown[column]]
    return Markup(shown.to_html(index=False, classes=css_class, border=0, escape=True))


def _cell(column: str, value: Any) -> str:
    """A number as the column's kind of value reads (column headers as the extracts name them:
    "val accuracy", "best epoch", "CPU img/s", "speedup", "seconds")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    name = column.lower()
    kinds = (("epoch", fmt.format_epochs), ("accuracy", fmt.percent),
             ("img/s", fmt.format_images_per_second), ("speedup", fmt.format_ratio))  # fmt: skip
    for word, write in kinds:
        if word in name:
            return write(value)
    return f"{value:.1f}" if name == "seconds" else fmt.format_value(value)


def format_wilson(value: float | None, n: int | None) -> str:
    """``n=400 · 95 % 95.1%–98.5%`` under an accuracy; empty when either is unknown."""
    interval = wilson_text(value, n)
    return "" if interval is None else f"n={n:,} · 95 % {interval}"
