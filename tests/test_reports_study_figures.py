"""The figure panels' notes: what is missing, and a way to get it that can work."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from reports.study_data import study_report
from reports.study_figures import study_panels

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
