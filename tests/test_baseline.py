"""The confirmed winner against the baseline recipe: paired over seeds, one sentence, on the
summary's extract, the study page and the index card (issue 21, item 1)."""

from __future__ import annotations

import math

import pytest
from markupsafe import escape

from reports import build_report
from studies import trial_record as rec
from studies.confirmation import baseline_sentence, compare_baseline, extract_confirmation
from studies.intervals import t_quantile_975
from tests.reports_fixtures import add_confirmation, make_single_objective

TUTORIAL = {"lr": 0.01, "momentum": 0.9, "batch_size": 64, "epochs": 3, "seed": 1}


def _winner(val: list, test: list, seeds: tuple = (1, 2, 3)) -> dict:
    """A confirmed configuration's record, as search/confirm.py stores it."""
    return {"trial": 4, "config": {"lr": 0.05}, "search_val": 0.97, "seconds": 9.0,
            "seeds": list(seeds), "val": val, "test": test, "weights": [None] * len(seeds),
            "diverged": [s for s, v in zip(seeds, val, strict=True) if v is None]}  # fmt: skip


def _baseline(val: list, test: list, seeds: tuple = (1, 2, 3)) -> dict:
    return {"name": "tutorial", "config": TUTORIAL, "seeds": list(seeds), "val": val,
            "test": test, "seconds": 4.5, "n_val": 500, "n_test": 1000}  # fmt: skip


def test_the_paired_difference_and_its_t_interval() -> None:
    winner = _winner(val=[0.95, 0.97, 0.96], test=[0.95, 0.96, 0.97])
    baseline = _baseline(val=[0.94, 0.93, 0.95], test=[0.94, 0.94, 0.94])
    comparison = compare_baseline(winner, baseline)
    # test: differences 0.01, 0.02, 0.03 -> mean 0.02, sd 0.01, half-width t(0.975, 2)·sd/√3
    assert t_quantile_975(2) == pytest.approx(4.303, abs=5e-4)
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert half == pytest.approx(0.02484, abs=1e-5)
    d = comparison.test.difference
    assert (d.n, d.mean, d.sd) == (3, pytest.approx(0.02), pytest.approx(0.01))
    assert d.interval.low == pytest.approx(0.02 - half, abs=1e-6)
    assert d.interval.high == pytest.approx(0.02 + half, abs=1e-6)
    # both means, over the paired seeds
    assert (comparison.test.winner, comparison.test.baseline) == (pytest.approx(0.96), 0.94)
    # validation: differences 0.01, 0.04, 0.01 -> mean 0.02, sd √0.0003
    v = comparison.val.difference
    assert (v.mean, v.sd) == (pytest.approx(0.02), pytest.approx(math.sqrt(0.0003)))
    # an interval of a difference is not clipped at 0 (accuracies' intervals are, at [0, 1])
    low = 0.02 - 4.302653 * math.sqrt(0.0003 / 3)  # -0.023
    assert low < 0 and v.interval.low == pytest.approx(low, abs=1e-6)
    assert comparison.seeds == (1, 2, 3) and comparison.name == "tutorial"
    assert comparison.seconds == 4.5 and comparison.config == TUTORIAL


def test_seeds_that_diverged_on_either_side_are_left_out_of_the_pairing() -> None:
    winner = _winner(val=[0.95, None, 0.96, 0.97], test=[0.95, None, 0.97, 0.98],
                     seeds=(1, 2, 3, 4))  # fmt: skip
    # the baseline diverged on seed 3 and never trained seed 4; seed 9 is not the winner's
    baseline = _baseline(val=[0.90, 0.91, None, 0.5], test=[0.92, 0.93, None, 0.5],
                         seeds=(1, 2, 3, 9))  # fmt: skip
    comparison = compare_baseline(winner, baseline)
    # Only seed 1 trained on both sides: one difference, no interval.
    assert comparison.seeds == (1,)
    assert comparison.test.difference.mean == pytest.approx(0.03)
    assert comparison.test.difference.interval is None
    assert "on 1 seed (one seed gives no interval: no verdict)" in baseline_sentence(comparison)
    # No seed on both sides: nothing to compare, said so.
    none = compare_baseline(winner, _baseline([None] * 3, [None] * 3))
    assert none.seeds == () and none.test is None and none.val is None
    assert baseline_sentence(none) == (
        "the winner cannot be compared with the tutorial's recipe: no seed trained on both sides"
    )


@pytest.mark.parametrize(
    "stored",
    [
        "tutorial",
        {"name": "tutorial"},
        {**_baseline([0.9, 0.9, 0.9], [0.9, 0.9, 0.9]), "val": [0.9]},  # one value, three seeds
        {**_baseline([0.9, 0.9, 0.9], [0.9, 0.9, 0.9]), "seeds": ["a", "b", "c"]},
        {**_baseline([0.9, 0.9, "x"], [0.9, 0.9, 0.9])},
        {**_baseline([0.9, 0.9, 0.9], [0.9, 0.9, 0.9]), "name": None},
        {**_baseline([0.9, 0.9, 0.9], [0.9, 0.9, 0.9]), "seconds": float("nan")},
    ],
)
def test_a_malformed_baseline_is_none_not_a_crash(stored) -> None:
    attrs = {rec.CONFIRMED_PREFIX + "4": _winner([0.95, 0.96, 0.97], [0.95, 0.96, 0.97]),
             rec.BASELINE: stored}  # fmt: skip
    confirmation = extract_confirmation(attrs, [])
    assert confirmation.winner.trial == 4 and confirmation.baseline is None


def test_the_extract_compares_the_winner_and_counts_the_baseline_in_the_cost() -> None:
    attrs = {
        rec.CONFIRMED_PREFIX + "4": _winner([0.95, 0.96, 0.97], [0.95, 0.96, 0.97]),
        rec.CONFIRM_SETTINGS: {"search_seconds": 27.0},
    }
    # No baseline stored (--baseline none, or a study from before it): None.
    assert extract_confirmation(attrs, []).baseline is None
    attrs[rec.BASELINE] = _baseline([0.9, 0.91, 0.92], [0.9, 0.91, 0.93])
    confirmation = extract_confirmation(attrs, [])
    assert confirmation.baseline.test.difference.mean == pytest.approx((0.05 * 2 + 0.04) / 3)
    # the baseline's 4.5 s count in the confirmation's time beside the winner's 9 s
    assert confirmation.seconds == 13.5 and confirmation.cost_share == pytest.approx(0.5)


# The baseline's test accuracies are 94.0, 94.5 and 95.0 %; the winner's differences per seed:
# +2.0 +2.5 +3.0 -> mean 2.5, sd 0.5, half-width 4.303 · 0.5/√3 = 1.24 points
# -1.0 -0.9 -1.0 -> mean -0.97, sd 0.058, half-width 0.14 points
# -1.0 +0.5 +2.0 -> mean 0.5, sd 1.5, half-width 3.73 points: the interval holds 0
@pytest.mark.parametrize(
    ("test", "name", "expected"),
    [
        ([0.96, 0.97, 0.98], "tutorial", "the winner beats the tutorial's recipe by +2.5 points "
         "of test accuracy, 95 % interval [+1.3, +3.7], 3 seeds"),
        ([0.93, 0.936, 0.94], "lenet.toml", "the winner trails the recipe lenet.toml by −1.0 "
         "points of test accuracy, 95 % interval [−1.1, −0.8], 3 seeds"),
        ([0.93, 0.95, 0.97], "tutorial", "the winner does not differ detectably from the "
         "tutorial's recipe: +0.5 points of test accuracy, 95 % interval [−3.2, +4.2], 3 seeds"),
    ],
)  # fmt: skip
def test_the_interval_decides_the_sentence(test, name, expected) -> None:
    baseline = {**_baseline([0.94, 0.95, 0.94], [0.94, 0.945, 0.95]), "name": name}
    comparison = compare_baseline(_winner([0.95, 0.95, 0.95], test), baseline)
    assert baseline_sentence(comparison) == expected


def test_the_study_page_and_the_index_card_say_the_sentence(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make_single_objective(url)
    records = add_confirmation(study)
    winner = max(records.values(), key=lambda r: sum(r["val"]))
    gap = [0.018, 0.02, 0.022]  # mean +2.0 points, sd 0.2, half-width 0.50
    baseline = _baseline([v - 0.01 for v in winner["val"]],
                         [t - g for t, g in zip(winner["test"], gap, strict=True)])  # fmt: skip
    study.set_user_attr(rec.BASELINE, baseline)
    index = build_report(storage=url, benchmarks_dir=tmp_path, out_dir=tmp_path / "out")

    sentence = ("the winner beats the tutorial's recipe by +2.0 points of test accuracy, "
                "95 % interval [+1.5, +2.5], 3 seeds")  # fmt: skip
    page = (tmp_path / "out" / "studies" / "fashion-lr.html").read_text()
    card = page.split('id="confirmation"', 1)[1]
    assert f'<p id="baseline"><b>Baseline:</b> {escape(sentence)}.</p>' in card
    # the validation difference too, and how to train the baseline again
    assert "+1.0 points of validation accuracy" in card and "--lr 0.01 --momentum 0.9" in card
    assert escape(sentence) in index.read_text()
