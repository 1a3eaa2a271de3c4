"""Numeric samples as value counts, and the statistics computed from them.

A :class:`Weighted` sample is its distinct values (sorted) and how often each occurs: the
local engine builds it with ``np.unique``, the Spark engine with a ``groupBy``, so both feed
the same statistics. Every statistic here equals the one computed on the expanded sample
(``np.repeat(values, counts)``): numpy's linear quantiles, scipy's Wasserstein distance (with
weights), the two-sample KS distance, Mann-Whitney's U with scipy's tie-corrected normal
approximation (what ``scipy.stats.mannwhitneyu(method="asymptotic")`` computes, which scipy
cannot do from counts). Memory is linear in the number of distinct values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Weighted:
    """A sample as sorted distinct ``values`` and their ``counts``."""

    values: FloatArray
    counts: FloatArray

    @classmethod
    def of(cls, sample: object) -> Weighted:
        """From raw values (NaN dropped), or a ``Weighted`` as it is."""
        if isinstance(sample, Weighted):
            return sample
        array = np.asarray(sample, dtype=np.float64).ravel()
        array = array[~np.isnan(array)]
        values, counts = np.unique(array, return_counts=True)
        return cls(values.astype(np.float64), counts.astype(np.float64))

    @classmethod
    def from_counts(cls, values: object, counts: object) -> Weighted:
        """From (value, count) pairs in any order, duplicates merged (what a group-by returns)."""
        raw_values = np.asarray(values, dtype=np.float64).ravel()
        raw_counts = np.asarray(counts, dtype=np.float64).ravel()
        keep = ~np.isnan(raw_values) & (raw_counts > 0)
        unique, inverse = np.unique(raw_values[keep], return_inverse=True)
        merged = np.bincount(inverse, weights=raw_counts[keep], minlength=unique.size)
        return cls(unique.astype(np.float64), merged.astype(np.float64))

    @property
    def total(self) -> int:
        """Number of values in the sample."""
        return round(float(self.counts.sum()))

    def expand(self) -> FloatArray:
        """The sample itself (sorted): for exact tests on small samples."""
        return np.repeat(self.values, self.counts.astype(np.int64))

    def mean(self) -> float:
        return float(np.average(self.values, weights=self.counts))

    def std(self) -> float:
        """Sample standard deviation (ddof=1), as ``np.std(sample, ddof=1)``."""
        n = float(self.counts.sum())
        if n < 2:
            return math.nan
        mean = self.mean()
        return math.sqrt(float(np.sum(self.counts * (self.values - mean) ** 2)) / (n - 1))

    def quantile(self, q: float) -> float:
        """numpy's default (linear) quantile of the expanded sample."""
        n = self.total
        position = (n - 1) * q
        low = math.floor(position)
        ends = np.cumsum(self.counts)  # index i of the sorted sample holds values[searchsorted(ends, i + 1)]
        below = float(self.values[np.searchsorted(ends, low + 1)])
        above = float(self.values[np.searchsorted(ends, min(low + 1, n - 1) + 1)])
        return below + (above - below) * (position - low)

    def cdf(self, points: FloatArray) -> FloatArray:
        """Share of the sample at or below each point."""
        cumulative = np.concatenate([[0.0], np.cumsum(self.counts)])
        result: FloatArray = (
            cumulative[np.searchsorted(self.values, points, side="right")] / self.counts.sum()
        )
        return result


def pooled(first: Weighted, second: Weighted) -> Weighted:
    """Both samples together."""
    return Weighted.from_counts(
        np.concatenate([first.values, second.values]), np.concatenate([first.counts, second.counts])
    )


def ks_distance(first: Weighted, second: Weighted) -> float:
    """Two-sample Kolmogorov-Smirnov D: the largest gap between the two ECDFs."""
    points = pooled(first, second).values
    return float(np.max(np.abs(first.cdf(points) - second.cdf(points))))


def ks_asymptotic_p(d: float, n: int, m: int) -> float:
    """scipy's asymptotic two-sided p-value of KS D (``ks_2samp(method="asymp")``)."""
    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    with np.errstate(over="ignore", invalid="ignore"):  # scipy's matrix powers may overflow on the way
        p = float(stats.kstwo.sf(d, np.round(en)))
    if not math.isfinite(p):  # then the limiting distribution, as scipy itself falls back to
        p = float(stats.kstwobign.sf(d * math.sqrt(en)))
    return float(np.clip(p, 0.0, 1.0))


def mann_whitney(current: Weighted, baseline: Weighted) -> tuple[float, float]:
    """U of ``current`` against ``baseline`` and its two-sided p-value from the tie-corrected
    normal approximation with continuity correction (scipy's asymptotic method)."""
    n1, n2 = float(current.counts.sum()), float(baseline.counts.sum())
    both = pooled(current, baseline)
    # mid-rank of each distinct pooled value: ranks below it plus (ties + 1) / 2
    below = np.concatenate([[0.0], np.cumsum(both.counts)[:-1]])
    midrank = below + (both.counts + 1) / 2
    r1 = float(np.sum(current.counts * midrank[np.searchsorted(both.values, current.values)]))
    u1 = r1 - n1 * (n1 + 1) / 2
    u = max(u1, n1 * n2 - u1)
    n = n1 + n2
    tie_term = float(np.sum(both.counts**3 - both.counts))
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return u1, 1.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return u1, float(np.clip(2 * special.ndtr(-z), 0.0, 1.0))


def wasserstein(first: Weighted, second: Weighted) -> float:
    """scipy's Wasserstein distance between the two samples."""
    return float(stats.wasserstein_distance(first.values, second.values, first.counts, second.counts))


def psi(baseline: Weighted | FloatArray, current: Weighted | FloatArray, bins: int = 10) -> tuple[float, int]:
    """Population stability index over the baseline's quantile bins, and the number of bins."""
    base, cur = Weighted.of(baseline), Weighted.of(current)
    edges = np.unique([base.quantile(q) for q in np.linspace(0, 1, bins + 1)[1:-1]])

    def shares(sample: Weighted) -> FloatArray:
        slot = np.searchsorted(edges, sample.values, side="right")
        counts = np.bincount(slot, weights=sample.counts, minlength=edges.size + 1)
        result: FloatArray = counts / sample.counts.sum()
        return result

    eps = 1e-4
    p = np.maximum(shares(base), eps)
    q = np.maximum(shares(cur), eps)
    return float(np.sum((q - p) * np.log(q / p))), int(edges.size + 1)
