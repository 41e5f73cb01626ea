"""Figures of one study, drawn from its `StudyReport`: optuna.visualization where it already
draws the plot, plotly otherwise; a figure whose precondition fails is a panel saying what is
missing."""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import optuna
import optuna.visualization as ov
import plotly.graph_objects as go
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from reports.panel import Panel, draw_panel
from studies.formatting import format_epochs
from studies.intervals import Interval, wilson
from studies.study_data import StudyReport

PRUNED_COLOR = "#d62728"
COMPLETE_COLOR = "#1f77b4"
# Trial states as optuna.visualization.plot_timeline colors them, in its legend order.
STATE_COLORS = {"complete": "blue", "fail": "red", "pruned": "orange", "running": "green",
                "waiting": "gray"}  # fmt: skip
# States whose curves Optuna's intermediate-values plot draws (failed trials' are left out).
CURVE_STATES = ("complete", "pruned", "running")
CONTOUR = ("lr", "momentum")
# how to search a pinned parameter: search/space.py's DEFAULT_SPACE (reports imports no search)
SEARCH_FLAGS = {"lr": "--lr 0.01:0.5", "momentum": "--momentum 0.5:0.98"}


def study_panels(study: optuna.Study, report: StudyReport) -> list[Panel]:
    more_trials = "run more trials of this study with `python -m search.study`"
    n_complete = report.counts.complete
    where = f" for study {report.name!r}"
    value_name = report.objective_names[0]
    # what optuna's plots draw: the first objective (val accuracy), by its name
    first = {"target": (lambda t: t.values[0]) if report.is_multi_objective else None,
             "target_name": value_name}  # fmt: skip
    searched = _searched(study)
    nothing_searched = searched == set()
    pinned_params = [] if searched is None else [p for p in CONTOUR if p not in searched]
    # Half-width panels first, in pairs; the wide ones (many subplots, long time axis) last.
    panels: list[Panel] = []
    waiting: list[str] = []  # titles of figures of complete trials, while there is none

    def add(key: str, title: str, draw: Callable[[], go.Figure] | None = None, *,
            missing: str | None = None, complete: bool = False, wide: bool = False,
            caption: str | None = None) -> None:  # fmt: skip
        if complete and n_complete == 0 and missing is None:
            waiting.append(title)
        elif missing is not None or draw is None:
            panels.append(Panel(key, title, missing=missing, wide=wide))
        else:
            panels.append(draw_panel(key, title, draw, where=where, caption=caption, wide=wide))

    def pinned(names: Sequence[str]) -> str | None:
        """The note of a figure more trials can never draw (``names``, or all, were pinned)."""
        return _pinned_note(report, names) if names or nothing_searched else None

    if report.confirmation is not None:
        add("confirmation", "Confirmed: each seed's val accuracy beside the search's single run",
            lambda: _confirmation(report), wide=True,
            caption="Dots: the confirmation's seeds; bar: their mean and 95 % t-interval; "
            "diamond: the search trial's one value (and its 95 % Wilson interval). Best "
            "confirmed mean first.")  # fmt: skip
    add("history", f"Optimization history ({value_name})",
        lambda: ov.plot_optimization_history(study, **first), complete=True)  # fmt: skip

    title = "Learning curves (val accuracy over epochs; ✕ = pruned here)"
    if not report.curves.empty:
        within = (f" A report step is 1/{report.steps_per_epoch} of an epoch."
                  if report.steps_per_epoch > 1 else "")  # fmt: skip
        add("intermediate", title, lambda: _learning_curves(report),
            caption="Dotted lines are pruned trials; each stops where the pruner cut it."
            f"{within} The grey line marks the epoch budget (max_epochs).")  # fmt: skip
    elif report.is_multi_objective:
        add("intermediate", title, missing="two-objective studies report no per-epoch values "
            "(Optuna prunes single-objective studies only)")  # fmt: skip
    else:
        add("intermediate", title, missing=f"no trial reported a per-epoch value: {more_trials}")

    if report.is_multi_objective:
        add("pareto", "Pareto front (" + " vs ".join(report.objective_names) + ")",
            lambda: ov.plot_pareto_front(study, target_names=list(report.objective_names)),
            complete=True)  # fmt: skip
    no_speeds = f"no trial recorded images_per_second with an accuracy yet: {more_trials}"
    add("throughput", "Val accuracy vs training throughput (img/s)", lambda: _throughput(report),
        missing=no_speeds if report.throughput.empty else None)  # fmt: skip
    add("parallel", "Parallel coordinates", lambda: ov.plot_parallel_coordinate(study, **first),
        missing=pinned(()), complete=True)  # fmt: skip

    title = "Parameter importances (PED-ANOVA)"
    if nothing_searched or n_complete == 0:
        add("importance", title, missing=pinned(()), complete=True)
    else:
        panels.extend(_importance_panels(study, report, where, more_trials))

    reason = _contour_missing(study, CONTOUR) if n_complete else None
    add("contour", "Contour: lr × momentum",
        lambda: ov.plot_contour(study, params=list(CONTOUR), **first),
        missing=pinned(pinned_params) or (reason and f"{reason}: {more_trials}"),
        complete=True)  # fmt: skip
    add("slice", "Slice plots", lambda: ov.plot_slice(study, **first), missing=pinned(()),
        complete=True, wide=True)  # fmt: skip

    title = "Timeline"
    if report.populations:
        add("timeline", title, lambda: _population_timeline(report), wide=True,
            caption="Trials in a box trained together as one population (--population); "
            "the box is labelled with its id.")  # fmt: skip
    else:
        add("timeline", title, lambda: ov.plot_timeline(study), wide=True,
            missing=None if report.counts.total else f"no trials yet: {more_trials}")  # fmt: skip
    if not waiting:
        return panels
    # One note instead of a wall of identical ones; keep what still drew.
    titles = ", ".join(t.split(" (")[0].lower() for t in waiting)
    note = Panel("need-complete", "Figures of complete trials", wide=True,
                 missing=f"{titles}: these need complete trials and the study has none yet: "
                 f"{more_trials}")  # fmt: skip
    return [note, *panels]


def _confirmation(report: StudyReport) -> go.Figure:
    assert report.confirmation is not None
    configs = [c for c in report.confirmation.configs if c.val is not None]  # not all diverged
    labels = [f"trial {c.trial}" for c in configs]
    figure = go.Figure()
    for label, c in zip(labels, configs, strict=True):
        figure.add_trace(go.Scatter(
            x=[label] * len(c.val_values), y=list(c.val_values), mode="markers",
            marker={"color": COMPLETE_COLOR, "size": 7, "opacity": 0.6},
            name="confirmation seeds", legendgroup="seeds", showlegend=label == labels[0],
            hovertemplate="%{y:.2%}<extra>one seed</extra>",
        ))  # fmt: skip
    means = [c.val.mean for c in configs]
    intervals = [c.val.interval or Interval(c.val.mean, c.val.mean) for c in configs]
    figure.add_trace(go.Scatter(
        x=labels, y=means, mode="markers", name="confirmed mean (95 % interval)",
        marker={"color": "black", "symbol": "line-ew-open", "size": 22, "line": {"width": 2}},
        error_y=_error_bars(means, intervals), hovertemplate="mean %{y:.2%}<extra></extra>",
    ))  # fmt: skip
    search = [c.search_val for c in configs]
    bounds = [wilson(c.search_val, c.n_val) if c.n_val else Interval(c.search_val, c.search_val)
              for c in configs]  # fmt: skip
    figure.add_trace(go.Scatter(
        x=labels, y=search, mode="markers", name="the search's single run",
        marker={"color": PRUNED_COLOR, "symbol": "diamond", "size": 10},
        error_y={**_error_bars(search, bounds), "color": PRUNED_COLOR, "thickness": 1},
        hovertemplate="search %{y:.2%}<extra></extra>",
    ))  # fmt: skip
    shown = [v for c in configs for v in c.val_values] + [v for i in intervals + bounds for v in i]
    figure.update_layout(
        xaxis_title="configuration (the search trial that proposed it)",
        yaxis={"title": "val accuracy", "tickformat": ".1%", "range": accuracy_range(shown)},
        scattermode="group",
    )
    return figure


def _error_bars(values: list[float], intervals: list[Interval]) -> dict[str, Any]:
    return {"type": "data", "symmetric": False,
            "array": [i.high - v for v, i in zip(values, intervals, strict=True)],
            "arrayminus": [v - i.low for v, i in zip(values, intervals, strict=True)]}  # fmt: skip


def accuracy_range(values: Sequence[float]) -> list[float] | None:
    """A y range zoomed to ``values`` (accuracies: seeds, means, intervals) with a margin,
    inside [0, 1], so that seeds a point apart do not sit on one line of a 0-100 % axis."""
    if not values:
        return None
    low, high = min(values), max(values)
    margin = max((high - low) * 0.15, 0.005)
    return [max(low - margin, 0.0), min(high + margin, 1.0)]


def _learning_curves(report: StudyReport) -> go.Figure:
    """Optuna's intermediate-values plot, drawn from the extract with epochs on the x axis."""
    figure = go.Figure()
    curves = report.curves[report.curves["state"].isin(CURVE_STATES)]
    for number, curve in curves.groupby("trial", sort=True):
        pruned = curve["state"].iloc[0] == "pruned"
        grey = {"color": "#999999"} if pruned else {}
        figure.add_trace(go.Scatter(
            x=curve["epoch"], y=curve["value"], mode="lines+markers", name=f"Trial{number}",
            line={"dash": "dot", **grey} if pruned else None,
            marker={"maxdisplayed": 10, **grey},
            text=[f"trial {number}, epoch {format_epochs(e)} (step {s})" for e, s in zip(
                curve["epoch"], curve["step"], strict=True)],
            hovertemplate="%{text}<br>val acc %{y:.2%}<extra></extra>",
        ))  # fmt: skip
    pruned = curves[curves["state"] == "pruned"]
    last = pruned.sort_values("step").groupby("trial").tail(1)
    if not last.empty:
        figure.add_trace(go.Scatter(
            x=last["epoch"], y=last["value"], mode="markers", name="pruned here",
            marker={"symbol": "x", "size": 11, "color": PRUNED_COLOR},
            text=[f"trial {n} pruned after {format_epochs(e)} epoch{'' if e == 1 else 's'}"
                  for n, e in zip(last["trial"], last["epoch"], strict=True)],
            hoverinfo="text",
        ))  # fmt: skip
    if report.max_epochs:
        figure.add_vline(x=report.max_epochs, line={"color": "#bbbbbb", "dash": "dash"},
                         annotation_text="max_epochs", annotation_position="top left")  # fmt: skip
    figure.update_layout(xaxis={"title": "epoch", "dtick": 1}, showlegend=False,
                         yaxis={"title": "val accuracy", "tickformat": ".1%"})  # fmt: skip
    return figure


def _population_timeline(report: StudyReport) -> go.Figure:
    """Optuna's timeline (a bar per trial, colored by state), with each population's trials on
    adjacent rows inside a box labelled with its id."""
    rows = report.timeline.reset_index(drop=True)
    now = datetime.now()  # running trials end now
    ends = [end if end is not None and end == end else now for end in rows["end"]]
    rows = rows.assign(end=ends)
    figure = go.Figure()
    for state, color in STATE_COLORS.items():
        bars = rows[rows["state"] == state]
        if bars.empty:
            continue
        figure.add_trace(go.Bar(
            name=state.upper(), orientation="h", y=bars.index,
            base=[start.isoformat() for start in bars["start"]],
            x=[(end - start).total_seconds() * 1000 for start, end in zip(
                bars["start"], bars["end"], strict=True)],
            marker={"color": color},
            text=[_bar_hover(row) for row in bars.itertuples()], textposition="none",
            hovertemplate="%{text}<extra></extra>",
        ))  # fmt: skip
    for population in report.populations:
        members = rows.index[rows["population_id"] == population.id]
        if members.empty:
            continue  # none of its trials started yet
        first, last = members.min(), members.max()
        end = max(rows.loc[members, "end"])
        figure.add_shape(
            type="rect", xref="x", yref="y", x0=population.start, x1=end,
            y0=first - 0.5, y1=last + 0.5, line={"color": "#444444", "width": 1},
            fillcolor="rgba(0, 0, 0, 0.04)", layer="below",
        )  # fmt: skip
        figure.add_annotation(
            x=end, y=(first + last) / 2, xref="x", yref="y", text=population.id,
            showarrow=False, xanchor="left", xshift=4, font={"size": 10, "color": "#444444"},
        )  # fmt: skip
    begin, finish = min(rows["start"]), max(rows["end"])
    label_room = (finish - begin) * 0.15  # right of the last box, for its id
    figure.update_layout(
        xaxis={"title": "Datetime", "type": "date", "range": [begin, finish + label_room]},
        yaxis={"title": "Trial", "tickmode": "array", "tickvals": list(rows.index),
               "ticktext": [str(n) for n in rows["trial"]]},
        barmode="overlay", showlegend=True,
    )  # fmt: skip
    return figure


def _bar_hover(row: Any) -> str:  # a row of report.timeline, from itertuples
    text = f"trial {row.trial} ({row.state})"
    if isinstance(row.population_id, str):
        size = row.population_size
        of = f" of {int(size)}" if size == size and size is not None else ""
        text += f"<br>population {row.population_id}, member {int(row.population_member)}{of}"
    return f"{text}<br>{row.start:%H:%M:%S} – {row.end:%H:%M:%S}"


def _throughput(report: StudyReport) -> go.Figure:
    points = report.throughput
    figure = go.Figure()
    marks = {"complete": (COMPLETE_COLOR, "circle"), "pruned": (PRUNED_COLOR, "x")}
    for state, (color, symbol) in marks.items():
        some = points[points["state"] == state]
        if some.empty:
            continue
        figure.add_trace(go.Scatter(
            x=some["images_per_second"], y=some["val_accuracy"], mode="markers",
            name=f"{state}" + (" (last epoch)" if state == "pruned" else ""),
            marker={"color": color, "symbol": symbol, "size": 9, "opacity": 0.8},
            text=[f"trial {n}<br>{p}" for n, p in zip(some["trial"], some["params"],
                                                       strict=True)],
            hovertemplate="%{text}<br>%{x:,.0f} img/s<br>val acc %{y:.2%}<extra></extra>",
        ))  # fmt: skip
    speeds = points["images_per_second"]
    log_x = speeds.min() > 0 and speeds.max() / speeds.min() > 20
    figure.update_layout(
        xaxis={"title": "training throughput (img/s)", "type": "log" if log_x else "linear"},
        yaxis={"title": "val accuracy", "tickformat": ".1%"},
    )
    return figure


def _importance_panels(
    study: optuna.Study, report: StudyReport, where: str, more_trials: str
) -> list[Panel]:
    key, title = "importance", "Parameter importances (PED-ANOVA)"
    # PED-ANOVA needs no scikit-learn (fANOVA, Optuna's default, does).
    if report.counts.complete < 2:
        return [Panel(key, title, missing="needs at least 2 complete trials, the study has "
                      f"{report.counts.complete}: {more_trials}")]  # fmt: skip
    if not _any_varied(study):  # of the searched ones (the caller notes pinned ones)
        return [Panel(key, title, missing="no parameter took two different values over the "
                      f"complete trials: {more_trials}")]  # fmt: skip
    multi = report.is_multi_objective
    panels = []
    for i, (name, direction) in enumerate(
        zip(report.objective_names, report.directions, strict=True)
    ):
        # With a target PED-ANOVA ranks params by reaching *low* values: flip maximized ones
        # (for one objective the figure is the same as without a target).
        sign = -1.0 if direction == "maximize" else 1.0

        def draw(i: int = i, sign: float = sign, name: str = name) -> go.Figure:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*low `target` values.*")
                return ov.plot_param_importances(
                    study, evaluator=PedAnovaImportanceEvaluator(),
                    target=lambda t: sign * t.values[i], target_name=name)  # fmt: skip

        named = (f"{key}-{i}", f"{title}: {name}") if multi else (key, title)
        panels.append(draw_panel(*named, draw, where=where))
    return panels


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _any_varied(study: optuna.Study) -> bool:
    complete = _complete(study)
    names = {p for t in complete for p in t.params}
    return any(len({repr(t.params[n]) for t in complete if n in t.params}) > 1 for n in names)


def _contour_missing(study: optuna.Study, params: tuple[str, str]) -> str | None:
    both = [t for t in _complete(study) if all(p in t.params for p in params)]
    if len(both) < 2:
        return f"needs at least 2 complete trials with both {' and '.join(params)}"
    for param in params:
        if len({t.params[param] for t in both}) < 2:
            return f"{param} took a single value over the complete trials"
    return None


def _searched(study: optuna.Study) -> set[str] | None:
    """The parameters the finished trials searched (a pinned one is in none of their params, or
    has a distribution of one value); None before any trial finished."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if not finished:
        return None
    return {name for t in finished for name, dist in t.distributions.items() if not dist.single()}


def _pinned_note(report: StudyReport, names: Sequence[str]) -> str:
    """Why more trials cannot help and how to search: a new study, as a study keeps its space.
    ``names``: the contour's pinned parameters; none: every parameter was pinned."""
    if names:
        which = f"{' and '.join(names)} {'was' if len(names) == 1 else 'were'}"
        needs = f"this contour needs both {' and '.join(CONTOUR)} searched"
    else:
        which, needs = "every parameter was", "this figure needs at least one searched parameter"
    dataset = ["--dataset", report.dataset] if report.dataset else []
    flags = [w for n in names or ["lr"] for w in SEARCH_FLAGS.get(n, f"--{n} LOW:HIGH").split()]
    name = f"{report.name}-{'-'.join(CONTOUR) if names else 'searched'}"
    command = shlex.join(["python", "-m", "search.study", *dataset, *flags, "--study-name", name])
    return (
        f"{which} pinned in this study (not searched), so more trials cannot draw this: {needs}. "
        f"Search {'them' if len(names) > 1 else 'it'} in a new study, e.g. `{command}`"
    )
