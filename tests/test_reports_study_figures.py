"""The figure panels' notes: what is missing, and a way to get it that can work."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from reports.study_figures import study_panels
from studies.study_data import study_report
from tests.reports_fixtures import add_confirmation, make_population_study, make_single_objective

MORE_TRIALS = "run more trials of this study"
LR = FloatDistribution(0.01, 0.5, log=True)
MOMENTUM = FloatDistribution(0.5, 0.98)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _notes(trials: list) -> dict[str, str | None]:
    """Panel key -> its missing note (None: drawn), for a study of ``trials``."""
    study = optuna.create_study(study_name="lr-only", direction="maximize")
    study.set_user_attr("dataset", "mnist-5k")
    for trial in trials:
        study.add_trial(trial)
    return {p.key: p.missing for p in study_panels(study, study_report(study))}


def _trial(value: float, **params: float) -> optuna.trial.FrozenTrial:
    dists = {"lr": LR, "momentum": MOMENTUM, "pinned": CategoricalDistribution((0.9,))}
    return create_trial(value=value, params=params, distributions={k: dists[k] for k in params})


def test_contour_with_momentum_pinned_says_how_to_search_it():
    # momentum pinned: the search does not make it an Optuna param, so no trial has it
    notes = _notes([_trial(0.8 + i / 100, lr=0.01 * (i + 1)) for i in range(4)])
    contour = notes["contour"]
    # More trials can never draw this contour: the note says so, and how to search momentum.
    assert MORE_TRIALS not in contour
    assert contour.startswith("momentum was pinned in this study (not searched)")
    assert "needs both lr and momentum searched" in contour
    assert ("`python -m search.study --dataset mnist-5k --momentum 0.5:0.98 "
            "--study-name lr-only-lr-momentum`") in contour  # fmt: skip
    # lr was searched: its figures draw
    assert notes["importance"] is None and notes["slice"] is None


def test_a_single_choice_distribution_is_pinned_too():
    # older studies pinned momentum as a categorical of one value
    trials = [
        create_trial(
            value=0.8 + i / 100,
            params={"lr": 0.01 * (i + 1), "momentum": 0.9},
            distributions={"lr": LR, "momentum": CategoricalDistribution((0.9,))},
        )
        for i in range(3)
    ]
    contour = _notes(trials)["contour"]
    assert contour.startswith("momentum was pinned") and MORE_TRIALS not in contour


def test_everything_pinned_says_search_something_not_run_more_trials():
    notes = _notes([create_trial(value=0.8 + i / 100) for i in range(3)])
    assert notes["contour"].startswith("lr and momentum were pinned")
    assert "--lr 0.01:0.5 --momentum 0.5:0.98" in notes["contour"]
    for key in ("importance", "parallel", "slice"):
        assert notes[key].startswith("every parameter was pinned in this study"), key
        assert MORE_TRIALS not in notes[key] and "--lr 0.01:0.5" in notes[key]
    assert notes["history"] is None  # the history still draws


def test_too_few_trials_of_searched_params_still_asks_for_more_trials():
    notes = _notes([_trial(0.8, lr=0.05, momentum=0.9)])
    assert "needs at least 2 complete trials with both lr and momentum" in notes["contour"]
    assert MORE_TRIALS in notes["contour"] and MORE_TRIALS in notes["importance"]


def test_no_finished_trial_yet_claims_nothing_pinned():
    notes = _notes([create_trial(state=TrialState.FAIL)])
    # Nothing says what was searched yet: one note asking for complete trials.
    assert MORE_TRIALS in notes["need-complete"]
    assert "contour" in notes["need-complete"] and "contour" not in notes


def _figures(study: optuna.Study) -> dict:
    return {p.key: p.figure for p in study_panels(study, study_report(study))}


def test_learning_curves_in_fractional_epochs():
    figures = _figures(make_population_study(optuna.storages.InMemoryStorage()))
    curves = figures["intermediate"]
    assert curves.layout.xaxis.title.text == "epoch"
    trial_0 = next(t for t in curves.data if t.name == "Trial0")
    assert list(trial_0.x) == pytest.approx([1 / 9, 1 / 3, 1, 2])
    (marks,) = [t for t in curves.data if t.name == "pruned here"]
    assert "trial 1 pruned after 0.11 epochs" in marks.text
    assert "trial 2 pruned after 0.33 epochs" in marks.text
    # The budget line stays at max_epochs (2 epochs = 18 steps).
    assert [shape.x0 for shape in curves.layout.shapes] == [2]


def test_timeline_boxes_each_population():
    timeline = _figures(make_population_study(optuna.storages.InMemoryStorage()))["timeline"]
    labels = [a.text for a in timeline.layout.annotations]
    assert labels == ["gpu-box-101-0", "gpu-box-101-4"]  # trial 6 trained alone: no box
    assert len(timeline.layout.shapes) == 2
    # Rows: population B's trials (4, 5, 7, 8) together, trial 6 of another worker after them.
    assert list(timeline.layout.yaxis.ticktext) == ["0", "1", "2", "3", "4", "5", "7", "8", "6"]
    hovers = [text for bar in timeline.data for text in bar.text]
    assert any("population gpu-box-101-4, member 2 of 4" in text for text in hovers)


def test_timeline_without_populations_is_optunas():
    timeline = _figures(make_single_objective(optuna.storages.InMemoryStorage()))["timeline"]
    assert not timeline.layout.shapes and not timeline.layout.annotations
    assert [t.name for t in timeline.data] == ["COMPLETE", "FAIL", "PRUNED"]


def test_confirmation_figure_zooms_to_the_data():
    study = make_single_objective(optuna.storages.InMemoryStorage())
    add_confirmation(study)
    figure = _figures(study)["confirmation"]
    low, high = figure.layout.yaxis.range
    drawn = [y for trace in figure.data for y in trace.y]
    # seeds, means and search values (about a point apart) fill the axis, not 0-100 %
    assert 0 < low <= min(drawn) and max(drawn) <= high < 1
    assert high - low < 0.1 and figure.layout.yaxis.tickformat == ".1%"


def test_accuracies_in_our_figures_are_percentages():
    figures = _figures(make_population_study(optuna.storages.InMemoryStorage()))
    for key in ("intermediate", "throughput"):
        assert figures[key].layout.yaxis.tickformat == ".1%", key
        hovers = [t.hovertemplate for t in figures[key].data if t.hovertemplate]
        assert hovers and all("%{y:.2%}" in h for h in hovers), key
