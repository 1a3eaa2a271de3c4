"""Text features: a permutation test of the Jensen-Shannon distance between the mean n-gram
profiles of two groups of texts (rows of dense or sparse profile matrices)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from pytest_llmops.monitoring.stats.common import Detail, TestResult, min_attainable_p, size_warning
from pytest_llmops.monitoring.text import FloatArray, js_distance


def profile_test(
    baseline: FloatArray | sparse.csr_matrix,
    current: FloatArray | sparse.csr_matrix,
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
    pooled = sparse.vstack([sparse.csr_matrix(baseline), sparse.csr_matrix(current)], format="csr")
    used = np.asarray(pooled.sum(axis=0)).ravel() > 0
    pooled = pooled[:, used]  # empty buckets add nothing to JS; skip them
    if _all_rows_equal(pooled):
        return TestResult(
            "none (identical texts)", None, None, 0.0, "JS distance", {"n_baseline": n, "n_current": m}
        )
    total = np.asarray(pooled.sum(axis=0)).ravel()
    first_observed = np.asarray(pooled[:n].sum(axis=0)).ravel()
    observed = float(js_distance(first_observed / n, (total - first_observed) / m)[0])
    block = np.zeros(n + m, dtype=np.int64) if blocks is None else np.asarray(blocks, dtype=np.int64)
    # Rows sorted by block, then at random within it; the first k_b of block b go to baseline.
    sorted_block = np.sort(block, kind="stable")
    ids, starts, sizes = np.unique(sorted_block, return_index=True, return_counts=True)
    in_baseline = np.bincount(np.searchsorted(ids, block[:n]), minlength=ids.size)
    slot = np.searchsorted(ids, sorted_block)
    goes_to_baseline = (np.arange(n + m) - starts[slot]) < in_baseline[slot]
    rng = np.random.default_rng(seed)
    transposed = sparse.csr_matrix(pooled.T)
    null = np.empty(permutations, dtype=np.float64)
    for start in range(0, permutations, 100):  # chunks bound the memory for large samples
        size = min(100, permutations - start)
        order = np.lexsort((rng.random((size, n + m)), np.broadcast_to(block, (size, n + m))), axis=-1)
        assign = np.zeros((size, n + m), dtype=np.float64)
        np.put_along_axis(
            assign, order, np.broadcast_to(goes_to_baseline, (size, n + m)).astype(np.float64), axis=1
        )
        first_sum = np.asarray(transposed @ assign.T).T
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
    return TestResult(test, p_value, observed, observed, "JS distance", details, warning, "permutation")


def _all_rows_equal(rows: sparse.csr_matrix) -> bool:
    """Whether every row equals the first (within floating-point noise)."""
    first = rows[0]
    squared = np.asarray(rows.multiply(rows).sum(axis=1)).ravel()
    dots = np.asarray((rows @ first.T).todense()).ravel()
    distance = squared - 2 * dots + float(first.multiply(first).sum())
    return bool(np.all(distance < 1e-12))
