"""95 % intervals for accuracies, and their text: ``wilson`` for one accuracy measured on n
images, ``seed_spread`` for the mean over seeds. On the offline default set the validation split
has 400 images, so a single 97.25 % is only known to within about ±1.6 %: every accuracy the
summary and the report print carries its split size and interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

from studies.trial_record import as_number

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


class Interval(NamedTuple):
    low: float
    high: float


class Spread(NamedTuple):
    """One configuration's accuracies over seeds: mean, sample standard deviation and the 95 %
    interval of the mean (Student's t, n - 1 degrees of freedom)."""

    mean: float
    sd: float | None  # None for a single seed
    interval: Interval | None  # None for a single seed
    n: int  # seeds


def wilson(accuracy: float, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of ``accuracy`` observed on ``n`` images: unlike accuracy ±
    z·sqrt(p(1-p)/n) it stays inside [0, 1] and is not zero-wide at 100 %."""
    if n <= 0:
        raise ValueError(f"wilson needs n >= 1 images, got {n=}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy=}")
    z2 = z * z
    centre = (accuracy + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(accuracy * (1 - accuracy) / n + z2 / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def seed_spread(values: Sequence[float]) -> Spread:
    """``t_spread`` of accuracies, one per seed, its interval clipped to [0, 1] (a t-interval
    from few seeds may leave it)."""
    spread = t_spread(values)
    if spread.interval is None:
        return spread
    low, high = spread.interval
    return spread._replace(interval=Interval(max(0.0, low), min(1.0, high)))


def t_spread(values: Sequence[float]) -> Spread:
    """Mean, standard deviation and 95 % t-interval of the mean of ``values``, unclipped (for
    differences, which may be negative)."""
    if not values:
        raise ValueError("t_spread needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Spread(mean, None, None, len(values))
    sd = statistics.stdev(values)
    half = t_quantile_975(len(values) - 1) * sd / math.sqrt(len(values))
    return Spread(mean, sd, Interval(mean - half, mean + half), len(values))


def t_quantile_975(df: int) -> float:
    """Student's t with P(|T| <= t) = 0.95 for ``df`` degrees of freedom, by bisection on the
    exact distribution function (no scipy)."""
    if df < 1:
        raise ValueError(f"t_quantile_975 needs df >= 1, got {df=}")
    low, high = 0.0, 16.0  # t(0.975, 1) = 12.706, the largest of all df
    for _ in range(60):  # 16 / 2**60: far below a float's precision at these sizes
        middle = (low + high) / 2
        low, high = (middle, high) if _t_within(middle, df) < 0.95 else (low, middle)
    return (low + high) / 2


def _t_within(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3 and 26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    term = total = 1.0
    if df % 2 == 0:  # sin θ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ... up to cos^(df-2)θ)
        for k in range(1, df // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total
    for k in range(1, (df - 1) // 2):  # 2/π (θ + sin θ cos θ (1 + 2/3 cos²θ + ...))
        term *= cos2 * (2 * k) / (2 * k + 1)
        total += term
    series = math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0
    return 2 / math.pi * (theta + series)


def wilson_text(accuracy: object, n: object) -> str | None:
    """``95.1%–98.5%``: the Wilson interval of an accuracy on n images; None if either unknown."""
    accuracy = as_number(accuracy)
    if accuracy is None or not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return None
    low, high = wilson(accuracy, n)
    return f"{low:.1%}–{high:.1%}"


def format_accuracy(accuracy: float | None, n: int | None) -> str:
    """``97.25% (n=400, 95.1%–98.5%)``; without a known n just the accuracy."""
    if accuracy is None or math.isnan(accuracy):
        return "n/a"
    interval = wilson_text(accuracy, n)
    return f"{accuracy:.2%}" if interval is None else f"{accuracy:.2%} (n={n:,}, {interval})"


def format_spread(spread: Spread) -> str:
    """``97.17% ± 0.29 (96.4%–97.9%, 3 seeds)``: mean, sd in points, interval."""
    if spread.interval is None or spread.sd is None:
        return f"{spread.mean:.2%} (1 seed)"
    low, high = spread.interval
    return f"{spread.mean:.2%} ± {spread.sd * 100:.2f} ({low:.1%}–{high:.1%}, {spread.n} seeds)"
