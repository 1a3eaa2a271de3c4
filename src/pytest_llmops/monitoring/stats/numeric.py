"""Numeric features: Mann-Whitney U for counts, Kolmogorov-Smirnov for continuous values,
Wilcoxon signed-rank over prompts when the same prompts ran on both sides.

Samples arrive as value counts (:class:`~.weighted.Weighted`), so the local and the Spark
engine share this code. p-values are exact where that is feasible and asymptotic beyond
(``TestResult.p_method`` says which): Mann-Whitney exact as scipy chooses it (a side of at
most 8 values and no ties), KS exact up to 10,000 values per side (scipy's own limit),
Wilcoxon exact up to 16 prompts (all sign flips, ties kept) or 50 prompts without ties.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats

from pytest_llmops.monitoring.stats.common import (
    LARGE_EFFECT,
    POWER_Z,
    Detail,
    TestResult,
    as_float,
    nan_to_one,
    size_warning,
)
from pytest_llmops.monitoring.stats.weighted import (
    FloatArray,
    Weighted,
    ks_asymptotic_p,
    ks_distance,
    mann_whitney,
    psi,
    wasserstein,
)

PSI_BANDS = (0.1, 0.25)
KS_EXACT_MAX = 10_000  # values per side; scipy's ks_2samp uses the same limit
MWU_EXACT_MAX_PRODUCT = 100_000
WILCOXON_EXACT_MAX = 50

Pairs = Sequence[tuple[Sequence[float], Sequence[float]]]


def numeric_test(
    baseline: Weighted | Sequence[float] | FloatArray,
    current: Weighted | Sequence[float] | FloatArray,
    *,
    kind: Literal["count", "continuous"],
    alpha: float,
    pairs: Pairs | FloatArray | None = None,
) -> TestResult:
    """Compare two numeric samples; ``pairs`` (per prompt: the change in mean ``log1p(value)``,
    or the (baseline values, current values) of each prompt) switches to the paired Wilcoxon
    signed-rank test."""
    base, cur = Weighted.of(baseline), Weighted.of(current)
    n, m = base.total, cur.total
    if n < 2 or m < 2:
        return TestResult("none", None, None, None, "", warning=f"too few values to test ({n} vs {m})")
    details = numeric_details(base, cur)
    if np.unique(np.concatenate([base.values, cur.values])).size == 1:
        return TestResult("none (constant)", None, None, 0.0, "", details)
    if pairs is not None:
        return _wilcoxon_pairs(_pair_differences(pairs), alpha, details)
    warning = size_warning(n, m, alpha)
    if kind == "count":
        u = as_float(details["mwu_u"])
        r = as_float(details["rank_biserial"])
        ties = (
            bool(np.any(base.counts > 1) or np.any(cur.counts > 1))
            or np.intersect1d(base.values, cur.values).size > 0
        )
        if not (n > 8 and m > 8) and not ties and n * m <= MWU_EXACT_MAX_PRODUCT:
            exact = stats.mannwhitneyu(cur.expand(), base.expand(), alternative="two-sided", method="exact")
            return TestResult(
                "Mann-Whitney U", float(exact.pvalue), u, r, "rank-biserial r", details, warning, "exact"
            )
        p = as_float(details["mwu_p"])
        return TestResult("Mann-Whitney U", p, u, r, "rank-biserial r", details, warning, "asymptotic")
    d = as_float(details["ks_d"])
    if max(n, m) <= KS_EXACT_MAX:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # scipy falls back to asymp with a warning
            try:
                exact = stats.ks_2samp(cur.expand(), base.expand(), method="exact")
                return TestResult(
                    "Kolmogorov-Smirnov", float(exact.pvalue), d, d, "KS D", details, warning, "exact"
                )
            except RuntimeWarning:
                pass
    return TestResult(
        "Kolmogorov-Smirnov", as_float(details["ks_p"]), d, d, "KS D", details, warning, "asymptotic"
    )


def numeric_details(base: Weighted, cur: Weighted) -> dict[str, Detail]:
    """Supplementary statistics of a numeric feature (the p-values asymptotic)."""
    n, m = base.total, cur.total
    d = ks_distance(cur, base)
    u, mwu_p = mann_whitney(cur, base)
    scale = base.std() if n > 1 else math.nan
    if not scale or math.isnan(scale):
        scale = Weighted.from_counts(
            np.concatenate([base.values, cur.values]), np.concatenate([base.counts, cur.counts])
        ).std()
    distance = wasserstein(base, cur)
    median_b, median_c = base.quantile(0.5), cur.quantile(0.5)
    p90_b, p90_c = base.quantile(0.9), cur.quantile(0.9)
    psi_value, bins = psi(base, cur)
    return {
        "n_baseline": n,
        "n_current": m,
        "mean_baseline": base.mean(),
        "mean_current": cur.mean(),
        "median_baseline": median_b,
        "median_current": median_c,
        "p90_baseline": p90_b,
        "p90_current": p90_c,
        "median_change": (median_c - median_b) / abs(median_b) if median_b else None,
        "p90_change": (p90_c - p90_b) / abs(p90_b) if p90_b else None,
        "ks_d": d,
        "ks_p": ks_asymptotic_p(d, n, m),
        "mwu_u": u,
        "mwu_p": nan_to_one(mwu_p),
        "rank_biserial": 2.0 * u / (n * m) - 1.0,
        "wasserstein_norm": distance / scale if scale > 0 else (0.0 if distance == 0 else math.inf),
        "psi": psi_value,
        "psi_band": psi_band(psi_value),
        "psi_null": (bins - 1) * (1 / n + 1 / m),
    }


def psi_band(value: float) -> str:
    """The usual PSI reading: stable (< 0.1), moderate (< 0.25), major."""
    if value < PSI_BANDS[0]:
        return "stable"
    return "moderate" if value < PSI_BANDS[1] else "major"


def _pair_differences(pairs: Pairs | FloatArray) -> FloatArray:
    if isinstance(pairs, np.ndarray):
        return pairs.astype(np.float64)
    return np.array([np.mean(np.log1p(c)) - np.mean(np.log1p(b)) for b, c in pairs], dtype=np.float64)


def _wilcoxon_pairs(diffs: FloatArray, alpha: float, details: dict[str, Detail]) -> TestResult:
    k = diffs.size
    details = dict(details, pairs=k, median_ratio_change=float(np.expm1(np.median(diffs))) if k else None)
    nonzero = diffs[diffs != 0]
    positive = float(np.sum(stats.rankdata(np.abs(nonzero))[nonzero > 0]))
    total = nonzero.size * (nonzero.size + 1) / 2
    r = (2 * positive - total) / total if total else 0.0
    p_min = min(1.0, 2.0 / 2.0 ** min(k, 1074))
    warning = None
    if p_min > alpha:
        warning = (
            f"only {k} prompts in common: the smallest reachable p-value is {p_min:.2g} > alpha "
            f"{alpha:g}, so this test cannot detect anything"
        )
    elif k and (effect := (stats.norm.ppf(1 - alpha / 2) + POWER_Z) / math.sqrt(k)) > LARGE_EFFECT:
        warning = (
            f"only {k} prompts in common: only large shifts (about {effect:.1f} standard deviations "
            "of the per-prompt change or more) are detectable with 80 % power"
        )
    if nonzero.size == 0:  # every prompt gave the same values on both sides: nothing to test
        return TestResult("none (identical per prompt)", None, None, 0.0, "rank-biserial r", details)
    p_value, method = signed_rank(nonzero)
    return TestResult(
        "Wilcoxon signed-rank (paired by prompt)",
        p_value,
        positive,
        r,
        "rank-biserial r",
        details,
        warning,
        method,
    )


def signed_rank_p(differences: FloatArray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test on non-zero differences."""
    return signed_rank(differences)[0]


def signed_rank(differences: FloatArray) -> tuple[float, str]:
    """Two-sided p-value of the Wilcoxon signed-rank test on non-zero differences, and how.

    Exact (all 2^k sign flips, ties kept as average ranks) up to 16 differences; scipy's exact
    distribution up to 50 without ties; above, scipy's normal approximation with tie
    correction. (scipy's own choice for small samples with ties is a resampling test, ~1 s.)
    """
    k = differences.size
    if k == 0:
        return 1.0, "exact"
    ranks = stats.rankdata(np.abs(differences))
    if k <= 16:
        signs = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
        null = signs @ ranks
        centre = ranks.sum() / 2
        observed = abs(float(ranks[differences > 0].sum()) - centre)
        return float(np.mean(np.abs(null - centre) >= observed - 1e-9)), "exact"
    ties = np.unique(ranks).size < k
    method = "exact" if not ties and k <= WILCOXON_EXACT_MAX else "approx"
    result = stats.wilcoxon(differences, method=method)
    return nan_to_one(float(result.pvalue)), "exact" if method == "exact" else "asymptotic"
