"""Statistics of repeated measurements: Student-t intervals and Welch's test of two means.

* `t_interval(...)`: mean, standard deviation and Student-t 95% interval of
  a sample; `fmt_interval(...)` writes it as "mean ± std [low, high]".
* `welch(...)`: difference of two means with Welch's unequal-variance
  t-test (interval and two-sided p-value).

Example:

>>> s = t_interval([0.70, 0.72, 0.74])
>>> round(s.mean, 2), round(s.std, 2), round(s.low, 4), round(s.high, 4)
(0.72, 0.02, 0.6703, 0.7697)
>>> fmt_interval(s, ".2f", 100)
'72.00 ± 2.00 [67.03, 76.97]'
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Sequence

from benchmarks.harness import fmt


@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean, sample standard deviation and two-sided Student-t interval of n values."""

    n: int
    mean: float
    std: float  # nan for n < 2
    low: float  # nan for n < 2
    high: float
    confidence: float = 0.95


def t_quantile(probability: float, df: float) -> float:
    """The `probability` quantile of Student's t with `df` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(probability, df))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """`mean +- t_{(1+c)/2, n-1} * std / sqrt(n)`; NaN values are dropped."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(kept)
    if n == 0:
        nan = float("nan")
        return Interval(0, nan, nan, nan, nan, confidence)
    mean = statistics.fmean(kept)
    if n < 2:
        nan = float("nan")
        return Interval(n, mean, nan, nan, nan, confidence)
    std = statistics.stdev(kept)
    half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half, confidence)


@dataclasses.dataclass(frozen=True)
class Difference:
    """`mean(a) - mean(b)` with Welch's t-test: interval, t, degrees of freedom, p (two-sided)."""

    diff: float
    low: float
    high: float
    t: float
    df: float
    p: float
    n_a: int
    n_b: int


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """Welch's unequal-variance t-test of `mean(a) - mean(b)`; needs two values on each side.

    Standard error `sqrt(s_a^2/n_a + s_b^2/n_b)`, Welch-Satterthwaite degrees
    of freedom. With zero variance on both sides the test is undefined and
    `t`, `p` and the interval are NaN (reported as such, never guessed).
    """
    sa, sb = t_interval(a), t_interval(b)
    if sa.n < 2 or sb.n < 2:
        raise ValueError(f"Welch's t-test needs >= 2 values per side, got {sa.n} and {sb.n}.")
    diff = sa.mean - sb.mean
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        nan = float("nan")
        return Difference(diff, nan, nan, nan, nan, nan, sa.n, sb.n)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    t = diff / se
    from scipy import stats

    p = float(2 * stats.t.sf(abs(t), df))
    half = t_quantile((1 + confidence) / 2, df) * se
    return Difference(diff, diff - half, diff + half, t, df, p, sa.n, sb.n)


def fmt_interval(s: Interval, spec: str = ".2f", scale: float = 1.0) -> str:
    """"mean ± std [low, high]" (the 95% t-interval), or the mean alone for one value."""
    if s.n == 0:
        return "–"
    if s.n < 2:
        return f"{fmt(s.mean, spec, scale)} (n=1)"
    return (f"{fmt(s.mean, spec, scale)} ± {fmt(s.std, spec, scale)} "
            f"[{fmt(s.low, spec, scale)}, {fmt(s.high, spec, scale)}]")
