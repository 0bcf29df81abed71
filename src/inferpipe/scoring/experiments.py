"""Comparing experiment variants by their scores: mean, spread, confidence, significance."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from inferpipe.core.scores import ScoreRecord

CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class VariantStats:
    """One variant's scores of one name, compared with the baseline variant."""

    experiment: str
    variant: str
    score: str
    count: int
    mean: float
    stdev: float  #: sample standard deviation (0 for fewer than two scores)
    ci_low: float  #: 95% confidence interval of the mean (Student's t)
    ci_high: float
    baseline: str
    p_value: float | None  #: Welch's t-test against the baseline; None for the baseline itself
    significant: bool  #: p_value < 0.05


def compare(
    experiment: str, scores: list[ScoreRecord], baseline: str | None = None
) -> list[VariantStats]:
    """Per variant and score name: count, mean, stdev, 95% CI, and significance against
    `baseline` (default: the alphabetically first variant)."""
    groups: dict[tuple[str, str], list[float]] = {}
    for s in scores:
        if s.experiment == experiment and s.variant is not None:
            groups.setdefault((s.variant, s.name), []).append(s.value)
    variants = sorted({v for v, _ in groups})
    if not variants:
        return []
    base = baseline if baseline is not None else variants[0]
    results = []
    for (variant, name), values in sorted(groups.items()):
        reference = groups.get((base, name))
        p = None if variant == base or reference is None else welch_p_value(values, reference)
        low, high = confidence_interval(values)
        results.append(
            VariantStats(
                experiment,
                variant,
                name,
                len(values),
                statistics.fmean(values),
                _stdev(values),
                low,
                high,
                base,
                p,
                p is not None and p < 1 - CONFIDENCE,
            )
        )
    return results


def _stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def confidence_interval(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean
    half = (
        t_quantile(1 - (1 - CONFIDENCE) / 2, len(values) - 1)
        * _stdev(values)
        / math.sqrt(len(values))
    )
    return mean - half, mean + half


def welch_p_value(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test; None when either side has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * (1 - t_cdf(abs(t), df))


def t_cdf(t: float, df: float) -> float:
    """Student's t cumulative distribution, via the regularized incomplete beta function."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t value with cumulative probability `p` (bisection on `t_cdf`)."""
    low, high = -1000.0, 1000.0
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction for the incomplete beta function."""
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-12:
            break
    return result
