"""Two-sample tests and effect sizes, one function per feature kind.

Each function returns a :class:`TestResult`: the test that was chosen (by feature kind and
sample size), its p-value (``None`` when no test is possible or meaningful, e.g. a feature
that is constant over both samples), an effect size, supplementary statistics in
``details`` and a warning when the samples are too small for the test to detect anything.
p-values are corrected across features later (Benjamini-Hochberg, in ``drift.py``).

Choices (see docs/monitoring.md for the reasoning):

- counts (tokens, characters, words, tool calls): Mann-Whitney U (tie-corrected; exact for
  small samples without ties), because counts tie a lot and the question is "more or fewer";
- continuous (latency): two-sample Kolmogorov-Smirnov (exact for small samples), because
  shape matters (a heavier tail is drift even when the median holds);
- either, when the same prompts appear in both samples (a test suite run twice): Wilcoxon
  signed-rank over prompts of the change in mean ``log1p(value)``, which removes the
  prompt-to-prompt spread and is far more sensitive;
- categorical: chi-square, or Fisher's exact test when an expected count is below 5
  (exact for 2x2, Monte Carlo with a fixed seed for larger tables); effect: Jensen-Shannon
  distance (Cramér's V in details);
- error rate: two-proportion z-test, Fisher's exact when expected counts are small; effect:
  Cohen's h;
- text: permutation test of the Jensen-Shannon distance between mean n-gram profiles.

Supplementary numeric statistics (never used for the decision): KS and Mann-Whitney
p-values, the Wasserstein distance normalised by the baseline's standard deviation, and the
population stability index (PSI) with the usual bands (< 0.1 stable, < 0.25 moderate, else
major). PSI over 10 bins is biased upwards by at least 9 * (1/n + 1/m) under no drift (more
with empty bins), so at 50 traces per side it reads "moderate" or "major" by chance alone;
``details["psi_null"]`` gives that lower bound.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import sparse, stats

from pytest_llmops.monitoring.text import FloatArray, js_distance

Detail = float | int | str | None
POWER_Z = 0.8416212335729143  # z for 80 % power
LARGE_EFFECT = 0.8  # Cohen's "large": warn when only effects beyond this are detectable
PSI_BANDS = (0.1, 0.25)


@dataclass
class TestResult:
    """Outcome of one two-sample test."""

    __test__ = False  # not a pytest test class

    test: str
    p_value: float | None
    statistic: float | None
    effect: float | None
    effect_name: str
    details: dict[str, Detail] = field(default_factory=dict)
    warning: str | None = None


def min_attainable_p(n: int, m: int) -> float:
    """Smallest two-sided p-value any exact permutation test can reach with samples of n and m."""
    if n <= 0 or m <= 0:
        return 1.0
    return min(1.0, 2.0 / math.comb(n + m, n))


def detectable_effect(n: int, m: int, alpha: float) -> float:
    """Standardised effect detectable with 80 % power (normal approximation, two-sided)."""
    if n <= 0 or m <= 0:
        return math.inf
    return float(stats.norm.ppf(1 - alpha / 2) + POWER_Z) * math.sqrt(1 / n + 1 / m)


def size_warning(n: int, m: int, alpha: float, *, p_min: float | None = None, what: str = "") -> str | None:
    """A warning when samples of n and m cannot show drift, or only very large drift."""
    p_floor = min_attainable_p(n, m) if p_min is None else p_min
    if p_floor > alpha:
        return (
            f"too few traces ({n} vs {m}){what}: the smallest reachable p-value is {p_floor:.2g} > "
            f"alpha {alpha:g}, so this test cannot detect anything"
        )
    effect = detectable_effect(n, m, alpha)
    if effect > LARGE_EFFECT:
        return (
            f"small samples ({n} vs {m}){what}: only large shifts (about {effect:.1f} standard "
            "deviations or more) are detectable with 80 % power"
        )
    return None


# --- numeric -----------------------------------------------------------------------------


def numeric_test(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    kind: Literal["count", "continuous"],
    alpha: float,
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]] | None = None,
) -> TestResult:
    """Compare two numeric samples; ``pairs`` (per prompt: baseline values, current values)
    switches to the paired Wilcoxon signed-rank test."""
    base = np.asarray(baseline, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    n, m = base.size, cur.size
    if n < 2 or m < 2:
        return TestResult("none", None, None, None, "", warning=f"too few values to test ({n} vs {m})")
    details = numeric_details(base, cur)
    if np.unique(np.concatenate([base, cur])).size == 1:
        return TestResult("none (constant)", None, None, 0.0, "", details)
    if pairs is not None:
        return _wilcoxon_pairs(pairs, alpha, details)
    if kind == "count":
        p_value = _float(details["mwu_p"])
        r = _float(details["rank_biserial"])
        warning = size_warning(n, m, alpha)
        u = _float(details["mwu_u"])
        return TestResult("Mann-Whitney U", p_value, u, r, "rank-biserial r", details, warning)
    warning = size_warning(n, m, alpha)
    d = _float(details["ks_d"])
    return TestResult("Kolmogorov-Smirnov", _float(details["ks_p"]), d, d, "KS D", details, warning)


def numeric_details(base: FloatArray, cur: FloatArray) -> dict[str, Detail]:
    """Supplementary statistics of a numeric feature (reported, not used for the decision)."""
    n, m = base.size, cur.size
    with warnings.catch_warnings():  # "exact calculation unsuccessful, switching to asymp" is fine here
        warnings.simplefilter("ignore", RuntimeWarning)
        ks = stats.ks_2samp(cur, base)
    mwu = stats.mannwhitneyu(cur, base, alternative="two-sided")
    u = float(mwu.statistic)
    scale = float(np.std(base, ddof=1)) or float(np.std(np.concatenate([base, cur]), ddof=1))
    wasserstein = float(stats.wasserstein_distance(base, cur))
    median_b, median_c = float(np.median(base)), float(np.median(cur))
    psi_value, bins = psi(base, cur)
    return {
        "n_baseline": n,
        "n_current": m,
        "mean_baseline": float(np.mean(base)),
        "mean_current": float(np.mean(cur)),
        "median_baseline": median_b,
        "median_current": median_c,
        "p90_baseline": float(np.quantile(base, 0.9)),
        "p90_current": float(np.quantile(cur, 0.9)),
        "median_change": (median_c - median_b) / abs(median_b) if median_b else None,
        "ks_d": float(ks.statistic),
        "ks_p": float(ks.pvalue),
        "mwu_u": u,
        "mwu_p": _nan_to_one(float(mwu.pvalue)),
        "rank_biserial": 2.0 * u / (n * m) - 1.0,
        "wasserstein_norm": wasserstein / scale if scale > 0 else (0.0 if wasserstein == 0 else math.inf),
        "psi": psi_value,
        "psi_band": psi_band(psi_value),
        "psi_null": (bins - 1) * (1 / n + 1 / m),
    }


def _wilcoxon_pairs(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]], alpha: float, details: dict[str, Detail]
) -> TestResult:
    diffs = np.array([np.mean(np.log1p(c)) - np.mean(np.log1p(b)) for b, c in pairs], dtype=np.float64)
    k = diffs.size
    details = dict(details, pairs=k, median_ratio_change=float(np.expm1(np.median(diffs))))
    nonzero = diffs[diffs != 0]
    positive = float(np.sum(stats.rankdata(np.abs(nonzero))[nonzero > 0]))
    total = nonzero.size * (nonzero.size + 1) / 2
    r = (2 * positive - total) / total if total else 0.0
    p_min = min(1.0, 2.0 / 2.0**k)
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
    return TestResult(
        "Wilcoxon signed-rank (paired by prompt)",
        signed_rank_p(nonzero),
        positive,
        r,
        "rank-biserial r",
        details,
        warning,
    )


def signed_rank_p(differences: FloatArray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test on non-zero differences.

    Exact (all 2^k sign flips, ties kept as average ranks) up to 16 differences; above, scipy's
    exact distribution without ties, else its normal approximation with tie correction.
    (scipy's own choice for small samples with ties is a resampling test, ~1 s per call.)
    """
    k = differences.size
    if k == 0:
        return 1.0
    ranks = stats.rankdata(np.abs(differences))
    if k <= 16:
        signs = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
        null = signs @ ranks
        centre = ranks.sum() / 2
        observed = abs(float(ranks[differences > 0].sum()) - centre)
        return float(np.mean(np.abs(null - centre) >= observed - 1e-9))
    ties = np.unique(ranks).size < k
    result = stats.wilcoxon(differences, method="approx" if ties else "exact")
    return _nan_to_one(float(result.pvalue))


def psi(base: FloatArray, cur: FloatArray, bins: int = 10) -> tuple[float, int]:
    """Population stability index over the baseline's quantile bins, and the number of bins."""
    edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1)[1:-1]))
    base_counts = np.bincount(np.searchsorted(edges, base, side="right"), minlength=edges.size + 1)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1)
    eps = 1e-4
    p = np.maximum(base_counts / base.size, eps)
    q = np.maximum(cur_counts / cur.size, eps)
    return float(np.sum((q - p) * np.log(q / p))), int(edges.size + 1)


def psi_band(value: float) -> str:
    """The usual PSI reading: stable (< 0.1), moderate (< 0.25), major."""
    if value < PSI_BANDS[0]:
        return "stable"
    return "moderate" if value < PSI_BANDS[1] else "major"


# --- categorical and binary ----------------------------------------------------------------


def categorical_test(
    baseline: Sequence[str], current: Sequence[str], *, alpha: float, seed: int = 0
) -> TestResult:
    """Chi-square test of homogeneity, or Fisher's exact test for small expected counts."""
    n, m = len(baseline), len(current)
    if n < 1 or m < 1:
        return TestResult("none", None, None, None, "", warning=f"too few values to test ({n} vs {m})")
    categories = sorted(set(baseline) | set(current))
    table = np.array([[baseline.count(c) for c in categories], [current.count(c) for c in categories]])
    details: dict[str, Detail] = {"n_baseline": n, "n_current": m, "categories": len(categories)}
    for name, row in (("baseline", table[0]), ("current", table[1])):
        for category, count in zip(categories, row, strict=True):
            details[f"share_{name}[{category}]"] = float(count) / row.sum()
    js = float(js_distance(table[0].astype(np.float64), table[1].astype(np.float64))[0])
    if len(categories) < 2:
        return TestResult("none (constant)", None, None, 0.0, "JS distance", details)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    chi2 = stats.chi2_contingency(table, correction=False)
    cramers_v = math.sqrt(float(chi2.statistic) / (table.sum() * (min(table.shape) - 1)))
    details["cramers_v"] = cramers_v
    warning = size_warning(n, m, alpha)
    if expected.min() >= 5:
        return TestResult(
            "chi-square", float(chi2.pvalue), float(chi2.statistic), js, "JS distance", details, warning
        )
    if table.shape == (2, 2):
        fisher = stats.fisher_exact(table)
        return TestResult("Fisher exact", float(fisher.pvalue), None, js, "JS distance", details, warning)
    method = stats.MonteCarloMethod(n_resamples=4999, rng=np.random.default_rng(seed))
    fisher = stats.fisher_exact(table, method=method)
    return TestResult(
        "Fisher exact (Monte Carlo)", float(fisher.pvalue), None, js, "JS distance", details, warning
    )


def proportion_test(baseline: Sequence[bool], current: Sequence[bool], *, alpha: float) -> TestResult:
    """Two-proportion z-test (pooled), Fisher's exact test when expected counts are below 5."""
    n, m = len(baseline), len(current)
    if n < 1 or m < 1:
        return TestResult("none", None, None, None, "", warning=f"too few values to test ({n} vs {m})")
    x, y = int(sum(baseline)), int(sum(current))
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
        return TestResult("Fisher exact", float(fisher.pvalue), None, h, "Cohen's h", details, warning)
    z = (p2 - p1) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    p_value = float(2 * stats.norm.sf(abs(z)))
    return TestResult("two-proportion z", p_value, z, h, "Cohen's h", details, warning)


# --- text ----------------------------------------------------------------------------------


def profile_test(
    baseline: FloatArray,
    current: FloatArray,
    *,
    alpha: float,
    permutations: int = 999,
    seed: int = 0,
    blocks: Sequence[int] | None = None,
) -> TestResult:
    """Permutation test of the JS distance between the mean n-gram profiles of two groups.

    ``blocks`` (one id per row of baseline then current, e.g. the prompt) restricts the
    permutations to swaps within a block: with the same prompts on both sides, answers to one
    prompt resemble each other, and unrestricted permutations would make the test blind.
    """
    n, m = baseline.shape[0], current.shape[0]
    if n < 2 or m < 2:
        return TestResult("none", None, None, None, "", warning=f"too few texts to test ({n} vs {m})")
    pooled = np.vstack([baseline, current])
    pooled = pooled[:, pooled.sum(axis=0) > 0]  # empty buckets add nothing to JS; skip them
    if np.allclose(pooled, pooled[0]):
        return TestResult(
            "none (identical texts)", None, None, 0.0, "JS distance", {"n_baseline": n, "n_current": m}
        )
    observed = float(js_distance(baseline.mean(axis=0), current.mean(axis=0))[0])
    block = np.zeros(n + m, dtype=np.int64) if blocks is None else np.asarray(blocks, dtype=np.int64)
    # Rows sorted by block, then at random within it; the first k_b of block b go to baseline.
    sorted_block = np.sort(block, kind="stable")
    ids, starts, sizes = np.unique(sorted_block, return_index=True, return_counts=True)
    in_baseline = np.bincount(np.searchsorted(ids, block[:n]), minlength=ids.size)
    slot = np.searchsorted(ids, sorted_block)
    goes_to_baseline = (np.arange(n + m) - starts[slot]) < in_baseline[slot]
    rng = np.random.default_rng(seed)
    total = pooled.sum(axis=0)
    # Profiles are sparse (a text has a few hundred distinct n-grams): sparse x dense is ~10x faster.
    sparse_transposed = sparse.csr_matrix(pooled.T)
    null = np.empty(permutations, dtype=np.float64)
    for start in range(0, permutations, 100):  # chunks bound the memory for large samples
        size = min(100, permutations - start)
        order = np.lexsort((rng.random((size, n + m)), np.broadcast_to(block, (size, n + m))), axis=-1)
        assign = np.zeros((size, n + m), dtype=np.float64)
        np.put_along_axis(
            assign, order, np.broadcast_to(goes_to_baseline, (size, n + m)).astype(np.float64), axis=1
        )
        first_sum = np.asarray(sparse_transposed @ assign.T).T
        null[start : start + size] = js_distance(first_sum / n, (total - first_sum) / m)
    test = "permutation (n-gram JS)" if blocks is None else "permutation within prompts (n-gram JS)"
    if np.ptp(null) < 1e-7 and abs(observed - float(null.mean())) < 1e-7:
        # Every allowed permutation gives the observed value (e.g. the same prompt text on both
        # sides of every pair): there is nothing to test.
        return TestResult(
            "none (identical per prompt)",
            None,
            None,
            observed,
            "JS distance",
            {"n_baseline": n, "n_current": m},
        )
    exceed = int(np.sum(null >= observed - 1e-12))
    p_value = (1 + exceed) / (permutations + 1)
    details: dict[str, Detail] = {
        "n_baseline": n,
        "n_current": m,
        "js_null_mean": float(null.mean()),
        "js_excess": observed - float(null.mean()),
        "permutations": permutations,
    }
    p_min = max(1 / (permutations + 1), min_attainable_p(n, m))
    warning = size_warning(n, m, alpha, p_min=p_min)
    if blocks is not None:
        details["blocks"] = int(ids.size)
        movable = int(np.sum(sizes[(in_baseline > 0) & (in_baseline < sizes)]))
        details["traces_in_mixed_blocks"] = movable
        if movable < 4:
            warning = (
                "answers cannot be swapped between sides within any prompt: the test cannot detect anything"
            )
    return TestResult(test, p_value, observed, observed, "JS distance", details, warning)


def category_counts(values: Sequence[str]) -> Mapping[str, int]:
    """Counts of each category, most common first."""
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _float(value: Detail) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _nan_to_one(value: float) -> float:
    return 1.0 if math.isnan(value) else value
