"""Figures of one study: optuna.visualization where it already draws the plot, plotly otherwise.

Only drawing here; what to draw comes from `StudyReport` (study_data.py). Each figure checks
its own precondition and otherwise leaves a panel saying what is missing.
"""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import optuna
import optuna.visualization as ov
import plotly.graph_objects as go
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from reports.panel import Panel, draw_panel
from studies.intervals import wilson
from studies.study_data import StudyReport, format_epochs

__all__ = ["study_panels"]

# Figures that need at least one complete trial (by panel key).
NEED_COMPLETE = {"history", "pareto", "parallel", "importance", "slice", "contour"}
PRUNED_COLOR = "#d62728"
COMPLETE_COLOR = "#1f77b4"
# Trial states as optuna.visualization.plot_timeline colors them, in its legend order.
STATE_COLORS = {"complete": "blue", "fail": "red", "pruned": "orange", "running": "green",
                "waiting": "gray"}  # fmt: skip
# States whose curves Optuna's intermediate-values plot draws (failed trials' are left out).
CURVE_STATES = ("complete", "pruned", "running")
CONTOUR = ("lr", "momentum")
# How to search a parameter, for notes on pinned ones: the search's default ranges
# (search/space.py DEFAULT_SPACE; the report does not import the search).
SEARCH_FLAGS = {"lr": "--lr 0.01:0.5", "momentum": "--momentum 0.5:0.98"}


def study_panels(study: optuna.Study, report: StudyReport) -> list[Panel]:
    more_trials = "run more trials of this study with `python -m search.study`"
    n_complete = report.counts.complete
    where = f" for study {report.name!r}"
    value_name = report.objective_names[0]
    target = _first_objective if report.is_multi_objective else None

    def panel(key: str, title: str, draw: Callable[[], go.Figure], **kw: object) -> Panel:
        return draw_panel(key, title, draw, where=where, **kw)

    def no_complete(key: str, title: str, *, wide: bool = False) -> Panel:
        have = f"{n_complete} complete trial{'s' if n_complete != 1 else ''}"
        return Panel(key, title, wide=wide, missing=f"needs at least 1 complete trial, "
                     f"the study has {have}: {more_trials}")

    # Panels that more trials can never fill (their parameters were pinned, not searched).
    pinned_panels: list[Panel] = []

    def pinned(key: str, title: str, names: Sequence[str], *, wide: bool = False) -> Panel:
        shown = Panel(key, title, wide=wide, missing=_pinned_note(report, names))
        pinned_panels.append(shown)
        return shown

    pinned_params = _pinned(study, CONTOUR)
    nothing_searched = _nothing_searched(study)

    # Half-width panels first, in pairs; the wide ones (many subplots, long time axis) last.
    panels: list[Panel] = []
    if report.confirmation is not None:
        panels.append(panel(
            "confirmation", "Confirmed: each seed's val accuracy beside the search's single run",
            lambda: _confirmation(report), wide=True,
            caption="Dots: the confirmation's seeds; bar: their mean and 95 % t-interval; "
            "diamond: the search trial's one value (and its 95 % Wilson interval). Best "
            "confirmed mean first.",
        ))
    title = f"Optimization history ({value_name})"
    if n_complete:
        panels.append(panel("history", title, lambda: ov.plot_optimization_history(
            study, target=target, target_name=value_name)))
    else:
        panels.append(no_complete("history", title))

    title = "Learning curves (val accuracy over epochs; ✕ = pruned here)"
    if not report.curves.empty:
        within = (f" A report step is 1/{report.steps_per_epoch} of an epoch."
                  if report.steps_per_epoch > 1 else "")
        panels.append(panel(
            "intermediate", title, lambda: _learning_curves(report),
            caption="Dotted lines are pruned trials; each stops where the pruner cut it."
            f"{within} The grey line marks the epoch budget (max_epochs).",
        ))
    elif report.is_multi_objective:
        panels.append(Panel("intermediate", title, missing="two-objective studies report no "
                            "per-epoch values (Optuna prunes single-objective studies only)"))
    else:
        panels.append(Panel("intermediate", title, missing="no trial reported a per-epoch "
                            f"value yet: {more_trials}"))

    if report.is_multi_objective:
        title = "Pareto front (" + " vs ".join(report.objective_names) + ")"
        if n_complete:
            panels.append(panel("pareto", title, lambda: ov.plot_pareto_front(
                study, target_names=list(report.objective_names))))
        else:
            panels.append(no_complete("pareto", title))

    title = "Val accuracy vs training throughput (img/s)"
    if not report.throughput.empty:
        panels.append(panel("throughput", title, lambda: _throughput(report)))
    else:
        panels.append(Panel("throughput", title, missing="no trial recorded images_per_second "
                            f"with an accuracy yet: {more_trials}"))

    title = "Parallel coordinates"
    if nothing_searched:
        panels.append(pinned("parallel", title, ()))
    elif n_complete:
        panels.append(panel("parallel", title, lambda: ov.plot_parallel_coordinate(
            study, target=target, target_name=value_name)))
    else:
        panels.append(no_complete("parallel", title))

    if nothing_searched:
        panels.append(pinned("importance", "Parameter importances (PED-ANOVA)", ()))
    else:
        panels.extend(_importance_panels(study, report, where, more_trials))

    title = "Contour: lr × momentum"
    reason = _contour_missing(study, CONTOUR)
    if pinned_params:
        panels.append(pinned("contour", title, pinned_params))
    elif reason is None:
        panels.append(panel("contour", title, lambda: ov.plot_contour(
            study, params=list(CONTOUR), target=target, target_name=value_name)))
    else:
        panels.append(Panel("contour", title, missing=f"{reason}: {more_trials}"))

    title = "Slice plots"
    if nothing_searched:
        panels.append(pinned("slice", title, (), wide=True))
    elif n_complete:
        panels.append(panel("slice", title, lambda: ov.plot_slice(
            study, target=target, target_name=value_name), wide=True))
    else:
        panels.append(no_complete("slice", title, wide=True))

    title = "Timeline"
    if report.populations:
        panels.append(panel(
            "timeline", title, lambda: _population_timeline(report), wide=True,
            caption="Trials in a box trained together as one population (--population); "
            "the box is labelled with its id.",
        ))
    elif report.counts.total:
        panels.append(panel("timeline", title, lambda: ov.plot_timeline(study), wide=True))
    else:
        panels.append(Panel("timeline", title, missing=f"no trials yet: {more_trials}",
                            wide=True))
    if n_complete == 0:
        # One note instead of a wall of identical ones; keep what still drew.
        needing, kept = [], []
        for p in panels:
            waits = (p.figure is None and p.key.split("-")[0] in NEED_COMPLETE
                     and p not in pinned_panels)
            (needing if waits else kept).append(p)
        titles = ", ".join(p.title.split(" (")[0].lower() for p in needing)
        note = Panel("need-complete", "Figures of complete trials", wide=True,
                     missing=f"{titles}: these need complete trials and the study has none "
                     f"yet: {more_trials}")
        return [note, *kept]
    return panels


def _first_objective(trial: FrozenTrial) -> float:
    return trial.values[0]


def _confirmation(report: StudyReport) -> go.Figure:
    confirmation = report.confirmation
    assert confirmation is not None
    figure = go.Figure()
    configs = [c for c in confirmation.configs if c.val is not None]  # not all diverged
    labels = [f"trial {c.trial}" for c in configs]
    for label, c in zip(labels, configs, strict=True):
        figure.add_trace(go.Scatter(
            x=[label] * len(c.val_values), y=list(c.val_values), mode="markers",
            marker={"color": COMPLETE_COLOR, "size": 7, "opacity": 0.6},
            name="confirmation seeds", legendgroup="seeds", showlegend=label == labels[0],
            hovertemplate="%{y:.2%}<extra>one seed</extra>",
        ))  # fmt: skip
    means = [c.val.mean for c in configs]
    low = [c.val.mean - (c.val.interval or (c.val.mean, 0))[0] for c in configs]
    high = [(c.val.interval or (0, c.val.mean))[1] - c.val.mean for c in configs]
    figure.add_trace(go.Scatter(
        x=labels, y=means, mode="markers", name="confirmed mean (95 % interval)",
        marker={"color": "black", "symbol": "line-ew-open", "size": 22, "line": {"width": 2}},
        error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
        hovertemplate="mean %{y:.2%}<extra></extra>",
    ))  # fmt: skip
    search = [c.search_val for c in configs]
    bounds = [wilson(c.search_val, c.n_val) if c.n_val else None for c in configs]
    figure.add_trace(go.Scatter(
        x=labels, y=search, mode="markers", name="the search's single run",
        marker={"color": PRUNED_COLOR, "symbol": "diamond", "size": 10},
        error_y={
            "type": "data", "symmetric": False,
            "array": [b[1] - v if b else 0 for b, v in zip(bounds, search, strict=True)],
            "arrayminus": [v - b[0] if b else 0 for b, v in zip(bounds, search, strict=True)],
            "color": PRUNED_COLOR, "thickness": 1,
        },
        hovertemplate="search %{y:.2%}<extra></extra>",
    ))  # fmt: skip
    figure.update_layout(
        xaxis_title="configuration (the search trial that proposed it)",
        yaxis_title="val accuracy",
        yaxis_tickformat=".1%",
        scattermode="group",
    )
    return figure


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
            hovertemplate="%{text}<br>val acc %{y:.4f}<extra></extra>",
        ))
    pruned = curves[curves["state"] == "pruned"]
    last = pruned.sort_values("step").groupby("trial").tail(1)
    if not last.empty:
        figure.add_trace(go.Scatter(
            x=last["epoch"], y=last["value"], mode="markers", name="pruned here",
            marker={"symbol": "x", "size": 11, "color": PRUNED_COLOR},
            text=[f"trial {n} pruned after {format_epochs(e)} epoch{'' if e == 1 else 's'}"
                  for n, e in zip(last["trial"], last["epoch"], strict=True)],
            hoverinfo="text",
        ))
    if report.max_epochs:
        figure.add_vline(x=report.max_epochs, line={"color": "#bbbbbb", "dash": "dash"},
                         annotation_text="max_epochs", annotation_position="top left")
    figure.update_layout(xaxis={"title": "epoch", "dtick": 1}, yaxis_title="val accuracy",
                         showlegend=False)
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
        ))
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
        )
        figure.add_annotation(
            x=end, y=(first + last) / 2, xref="x", yref="y", text=population.id,
            showarrow=False, xanchor="left", xshift=4, font={"size": 10, "color": "#444444"},
        )
    begin, finish = min(rows["start"]), max(rows["end"])
    label_room = (finish - begin) * 0.15  # right of the last box, for its id
    figure.update_layout(
        xaxis={"title": "Datetime", "type": "date", "range": [begin, finish + label_room]},
        yaxis={"title": "Trial", "tickmode": "array", "tickvals": list(rows.index),
               "ticktext": [str(n) for n in rows["trial"]]},
        barmode="overlay", showlegend=True,
    )
    return figure


def _bar_hover(row: Any) -> str:  # a row of report.timeline, from itertuples
    text = f"trial {row.trial} ({row.state})"
    if isinstance(row.population_id, str):
        size = row.population_size
        of = f" of {int(size)}" if size == size and size is not None else ""
        text += (f"<br>population {row.population_id}, member {int(row.population_member)}"
                 f"{of}")
    return f"{text}<br>{row.start:%H:%M:%S} – {row.end:%H:%M:%S}"


def _throughput(report: StudyReport) -> go.Figure:
    points = report.throughput
    figure = go.Figure()
    for state, color, symbol in (("complete", COMPLETE_COLOR, "circle"),
                                 ("pruned", PRUNED_COLOR, "x")):
        some = points[points["state"] == state]
        if some.empty:
            continue
        figure.add_trace(go.Scatter(
            x=some["images_per_second"], y=some["val_accuracy"], mode="markers",
            name=f"{state}" + (" (last epoch)" if state == "pruned" else ""),
            marker={"color": color, "symbol": symbol, "size": 9, "opacity": 0.8},
            text=[f"trial {n}<br>{p}" for n, p in zip(some["trial"], some["params"],
                                                       strict=True)],
            hovertemplate="%{text}<br>%{x:,.0f} img/s<br>val acc %{y:.4f}<extra></extra>",
        ))
    speeds = points["images_per_second"]
    log_x = speeds.min() > 0 and speeds.max() / speeds.min() > 20
    figure.update_layout(
        xaxis={"title": "training throughput (img/s)", "type": "log" if log_x else "linear"},
        yaxis={"title": "val accuracy"},
    )
    return figure


def _importance_panels(
    study: optuna.Study, report: StudyReport, where: str, more_trials: str
) -> list[Panel]:
    key, title = "importance", "Parameter importances (PED-ANOVA)"
    # PED-ANOVA needs no scikit-learn (fANOVA, Optuna's default, does).
    if report.counts.complete < 2:
        return [Panel(key, title, missing="needs at least 2 complete trials, the study has "
                      f"{report.counts.complete}: {more_trials}")]
    if not _varied_params(study):  # searched ones (pinned ones are handled by the caller)
        return [Panel(key, title, missing="no parameter took two different values over the "
                      f"complete trials: {more_trials}")]
    if not report.is_multi_objective:
        return [draw_panel(key, title, lambda: ov.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(),
            target_name=report.objective_names[0]), where=where)]
    panels = []
    for i, (name, direction) in enumerate(
        zip(report.objective_names, report.directions, strict=True)
    ):
        # With a target PED-ANOVA ranks params by reaching *low* values: flip maximized ones.
        sign = -1.0 if direction == "maximize" else 1.0

        def draw(i: int = i, sign: float = sign, name: str = name) -> go.Figure:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*low `target` values.*")
                return ov.plot_param_importances(
                    study, evaluator=PedAnovaImportanceEvaluator(),
                    target=lambda t: sign * t.values[i], target_name=name)

        panels.append(draw_panel(f"{key}-{i}", f"{title}: {name}", draw, where=where))
    return panels


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _varied_params(study: optuna.Study) -> list[str]:
    complete = _complete(study)
    names = {p for t in complete for p in t.params}
    return sorted(
        n for n in names if len({repr(t.params[n]) for t in complete if n in t.params}) > 1
    )


def _contour_missing(study: optuna.Study, params: tuple[str, str]) -> str | None:
    both = [t for t in _complete(study) if all(p in t.params for p in params)]
    if len(both) < 2:
        return f"needs at least 2 complete trials with both {' and '.join(params)}"
    for param in params:
        if len({t.params[param] for t in both}) < 2:
            return f"{param} took a single value over the complete trials"
    return None


def _pinned(study: optuna.Study, names: Sequence[str]) -> list[str]:
    """Those of ``names`` the study did not search, by its finished trials (which asked for
    every searched parameter): a pinned parameter is in none of their params, or has a
    distribution of one value. A study with no finished trial yet shows nothing pinned."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if not finished:
        return []
    searched = {
        name
        for trial in finished
        for name, dist in trial.distributions.items()
        if not _single_valued(dist)
    }
    return [name for name in names if name not in searched]


def _nothing_searched(study: optuna.Study) -> bool:
    """True when finished trials show the study searched no parameter at all."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return bool(finished) and not any(
        not _single_valued(dist) for t in finished for dist in t.distributions.values()
    )


def _single_valued(dist: BaseDistribution) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices) == 1
    if isinstance(dist, FloatDistribution | IntDistribution):
        return dist.low == dist.high
    return False


def _pinned_note(report: StudyReport, names: Sequence[str]) -> str:
    """Why more trials cannot help and how to search: a new study, as a study keeps its space."""
    dataset = ["--dataset", report.dataset] if report.dataset else []
    if names:
        which = " and ".join(names)
        verb = "was" if len(names) == 1 else "were"
        needs = f"this contour needs both {' and '.join(CONTOUR)} searched"
        flags = [w for n in names for w in SEARCH_FLAGS.get(n, f"--{n} LOW:HIGH").split()]
        suffix = "-".join(CONTOUR)
    else:
        which, verb = "every parameter", "was"
        needs = "this figure needs at least one searched parameter"
        flags = SEARCH_FLAGS["lr"].split()
        suffix = "searched"
    command = shlex.join(
        ["python", "-m", "search.study", *dataset, *flags,
         "--study-name", f"{report.name}-{suffix}"]
    )
    return (
        f"{which} {verb} pinned in this study (not searched), so more trials cannot draw "
        f"this: {needs}. Search {'them' if len(names) > 1 else 'it'} in a new study, e.g. "
        f"`{command}`"
    )
