"""Categorical features and the error rate, from counts (so both engines share them).

Categories: chi-square of homogeneity; Fisher's exact test when an expected count is below 5
(exact for 2x2, Monte Carlo with a fixed seed for larger tables of up to 10,000 values; past
that the rare categories are pooled and chi-square applies). Effect: Jensen-Shannon distance.
Error rate: two-proportion z-test, Fisher's exact test for small expected counts; effect:
Cohen's h.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from pytest_llmops.monitoring.stats.common import Detail, TestResult, size_warning
from pytest_llmops.monitoring.text import js_distance

MONTE_CARLO_MAX = 10_000  # values in the table; beyond, rare categories are pooled


def categorical_test(
    baseline: Sequence[str] | Mapping[str, int],
    current: Sequence[str] | Mapping[str, int],
    *,
    alpha: float,
    seed: int = 0,
) -> TestResult:
    """Chi-square test of homogeneity, or Fisher's exact test for small expected counts.
    Each side is its values or their counts per category."""
    base, cur = _counts(baseline), _counts(current)
    n, m = sum(base.values()), sum(cur.values())
    if n < 1 or m < 1:
        return TestResult("none", None, None, None, "", warning=f"too few values to test ({n} vs {m})")
    categories = sorted(set(base) | set(cur))
    table = np.array([[base.get(c, 0) for c in categories], [cur.get(c, 0) for c in categories]])
    details: dict[str, Detail] = {"n_baseline": n, "n_current": m, "categories": len(categories)}
    for name, row in (("baseline", table[0]), ("current", table[1])):
        for category, count in zip(categories, row, strict=True):
            details[f"share_{name}[{category}]"] = float(count) / row.sum()
    js = float(js_distance(table[0].astype(np.float64), table[1].astype(np.float64))[0])
    if len(categories) < 2:
        return TestResult("none (constant)", None, None, 0.0, "JS distance", details)
    chi2 = stats.chi2_contingency(table, correction=False)
    details["cramers_v"] = math.sqrt(float(chi2.statistic) / (table.sum() * (min(table.shape) - 1)))
    warning = size_warning(n, m, alpha)
    if _expected(table).min() >= 5:
        return TestResult(
            "chi-square",
            float(chi2.pvalue),
            float(chi2.statistic),
            js,
            "JS distance",
            details,
            warning,
            "asymptotic",
        )
    if table.shape == (2, 2):
        fisher = stats.fisher_exact(table)
        return TestResult(
            "Fisher exact", float(fisher.pvalue), None, js, "JS distance", details, warning, "exact"
        )
    if n + m <= MONTE_CARLO_MAX:
        method = stats.MonteCarloMethod(n_resamples=4999, rng=np.random.default_rng(seed))
        fisher = stats.fisher_exact(table, method=method)
        return TestResult(
            "Fisher exact (Monte Carlo)",
            float(fisher.pvalue),
            None,
            js,
            "JS distance",
            details,
            warning,
            "Monte Carlo",
        )
    rare = _expected(table).min(axis=0) < 5
    pooled = np.column_stack([table[:, ~rare], table[:, rare].sum(axis=1)])
    pooled = pooled[:, pooled.sum(axis=0) > 0]
    if pooled.shape[1] < 2:
        return TestResult("none (rare categories only)", None, None, js, "JS distance", details, warning)
    if _expected(pooled).min() < 5 and pooled.shape == (2, 2):
        fisher = stats.fisher_exact(pooled)
        return TestResult(
            "Fisher exact (rare categories pooled)",
            float(fisher.pvalue),
            None,
            js,
            "JS distance",
            details,
            warning,
            "exact",
        )
    pooled_chi2 = stats.chi2_contingency(pooled, correction=False)
    return TestResult(
        "chi-square (rare categories pooled)",
        float(pooled_chi2.pvalue),
        float(pooled_chi2.statistic),
        js,
        "JS distance",
        details,
        warning,
        "asymptotic",
    )


def proportion_test(baseline: Sequence[bool], current: Sequence[bool], *, alpha: float) -> TestResult:
    """Two-proportion z-test (pooled), Fisher's exact test when expected counts are below 5."""
    return rate_test(
        sum(bool(v) for v in baseline),
        len(baseline),
        sum(bool(v) for v in current),
        len(current),
        alpha=alpha,
    )


def rate_test(x: int, n: int, y: int, m: int, *, alpha: float) -> TestResult:
    """:func:`proportion_test` from counts: ``x`` of ``n`` baseline and ``y`` of ``m`` current values."""
    if n < 1 or m < 1:
        return TestResult("none", None, None, None, "", warning=f"too few values to test ({n} vs {m})")
    p1, p2 = x / n, y / m
    h = 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1))
    details: dict[str, Detail] = {
        "n_baseline": n,
        "n_current": m,
        "rate_baseline": p1,
        "rate_current": p2,
        "difference": p2 - p1,
    }
    if x + y in (0, n + m):
        return TestResult("none (constant)", None, None, 0.0, "Cohen's h", details)
    pooled = (x + y) / (n + m)
    warning = size_warning(n, m, alpha)
    if min(n * pooled, n * (1 - pooled), m * pooled, m * (1 - pooled)) < 5:
        fisher = stats.fisher_exact([[x, n - x], [y, m - y]])
        return TestResult(
            "Fisher exact", float(fisher.pvalue), None, h, "Cohen's h", details, warning, "exact"
        )
    z = (p2 - p1) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    p_value = float(2 * stats.norm.sf(abs(z)))
    return TestResult("two-proportion z", p_value, z, h, "Cohen's h", details, warning, "asymptotic")


def category_counts(values: Sequence[str] | Mapping[str, int]) -> dict[str, int]:
    """Counts of each category, most common first."""
    counts = _counts(values)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _counts(values: Sequence[str] | Mapping[str, int]) -> dict[str, int]:
    if isinstance(values, Mapping):
        return {str(key): int(count) for key, count in values.items() if count}
    return dict(Counter(str(value) for value in values))


def _expected(table: np.ndarray) -> np.ndarray:
    expected: np.ndarray = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    return expected
