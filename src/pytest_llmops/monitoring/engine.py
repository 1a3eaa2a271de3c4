"""The local engine: compare two :class:`~pytest_llmops.monitoring.columns.FeatureColumns`.

Every feature is summarised per side the way the Spark engine summarises it (value counts of
numbers, counts of categories, sums of n-gram profiles, a bounded sample of texts), then the
same tests and the same decision run on those summaries. Memory and time grow linearly with
the traces: 100,000 per side take seconds (benchmarks/bench_drift.py).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_llmops.monitoring import stats
from pytest_llmops.monitoring.columns import FeatureColumns
from pytest_llmops.monitoring.decide import decide, selected_specs
from pytest_llmops.monitoring.examples import find_examples
from pytest_llmops.monitoring.features import FeatureSpec
from pytest_llmops.monitoring.model import DriftSettings, FeatureDrift
from pytest_llmops.monitoring.pairing import Pairing, pair_prompts
from pytest_llmops.monitoring.report import DriftReport
from pytest_llmops.monitoring.text import js_distance, profile_matrix, profile_sum

BoolArray = npt.NDArray[np.bool_]


def compare_columns(
    baseline: FeatureColumns,
    current: FeatureColumns,
    *,
    settings: DriftSettings | None = None,
    baseline_label: str = "baseline",
    current_label: str = "current",
) -> DriftReport:
    """Compare the feature columns of a baseline with the current ones."""
    settings = settings or DriftSettings()
    pairing = pair_prompts(baseline, current, settings)
    results = {
        spec.name: compare_feature(spec, baseline, current, pairing, settings)
        for spec in selected_specs(settings)
    }
    decide(results, settings)
    warnings = []
    if not len(baseline) or not len(current):
        warnings.append(f"nothing to compare: {len(baseline)} baseline and {len(current)} current traces")
    return DriftReport(
        baseline_label=baseline_label,
        current_label=current_label,
        n_baseline=len(baseline),
        n_current=len(current),
        alpha=settings.alpha,
        paired_prompts=pairing.count,
        features=results,
        warnings=warnings,
        settings=settings,
        examples=find_examples(baseline, current, pairing, settings),
    )


def compare_feature(
    spec: FeatureSpec,
    baseline: FeatureColumns,
    current: FeatureColumns,
    pairing: Pairing,
    settings: DriftSettings,
) -> FeatureDrift:
    """Summarise one feature on both sides and test it."""
    base, cur = baseline[spec.name], current[spec.name]
    seed = settings.seed + zlib.crc32(spec.name.encode())
    summary: dict[str, Any]
    if spec.kind in ("count", "continuous"):
        weighted = stats.Weighted.of(base), stats.Weighted.of(cur)
        diffs = pairing.differences(base, cur, settings.min_pairs)
        result = stats.numeric_test(*weighted, kind=spec.kind, alpha=settings.alpha, pairs=diffs)
        sizes = weighted[0].total, weighted[1].total
        summary = {"weighted": weighted}
    elif spec.kind == "categorical":
        counts = _category_counts(base), _category_counts(cur)
        result = stats.categorical_test(*counts, alpha=settings.alpha, seed=seed)
        sizes = sum(counts[0].values()), sum(counts[1].values())
        summary = {"counts": counts}
    elif spec.kind == "binary":
        result = stats.rate_test(int(base.sum()), base.size, int(cur.sum()), cur.size, alpha=settings.alpha)
        sizes = base.size, cur.size
        summary = {
            "counts": (
                {"error": int(base.sum()), "ok": int(base.size - base.sum())},
                {"error": int(cur.sum()), "ok": int(cur.size - cur.sum())},
            )
        }
    else:
        result, sizes, summary = _compare_text(spec, base, cur, pairing, settings, seed)
    return FeatureDrift(
        name=spec.name,
        kind=spec.kind,
        description=spec.description,
        test=result.test,
        n_baseline=int(sizes[0]),
        n_current=int(sizes[1]),
        p_value=result.p_value,
        p_adjusted=None,
        statistic=result.statistic,
        effect=result.effect,
        effect_name=result.effect_name,
        drifted=False,
        warning=result.warning,
        details=result.details,
        p_method=result.p_method,
        summary=summary,
    )


def _compare_text(
    spec: FeatureSpec,
    base: np.ndarray,
    cur: np.ndarray,
    pairing: Pairing,
    settings: DriftSettings,
    seed: int,
) -> tuple[stats.TestResult, tuple[int, int], dict[str, Any]]:
    """Permutation test on (a sample of) the texts; JS distance of the mean profiles of all of them."""
    base_rows = np.array([bool(text) for text in base], dtype=np.bool_)
    cur_rows = np.array([bool(text) for text in cur], dtype=np.bool_)
    sizes = int(base_rows.sum()), int(cur_rows.sum())
    paired = pairing.count > 0 and spec.name != "prompt_text"  # prompt_text: the input distribution itself
    rng = np.random.default_rng(seed)
    sampled = max(sizes) > settings.text_sample
    if sampled:
        base_rows, cur_rows = _sample(
            base_rows, cur_rows, pairing if paired else None, settings.text_sample, rng
        )
    base_texts, cur_texts = list(base[base_rows]), list(cur[cur_rows])
    blocks = list(pairing.blocks(base_rows, cur_rows)) if paired else None
    # Answers to one prompt resemble each other: swap sides only within a prompt. Every prompt
    # is its own block (one seen on one side only simply cannot move).
    result = stats.profile_test(
        profile_matrix(base_texts, settings.ngram, settings.ngram_dim),
        profile_matrix(cur_texts, settings.ngram, settings.ngram_dim),
        alpha=settings.alpha,
        permutations=settings.permutations,
        seed=seed,
        blocks=blocks,
    )
    if sampled and result.p_value is not None:
        full = float(
            js_distance(
                profile_sum([t for t in base if t], settings.ngram, settings.ngram_dim),
                profile_sum([t for t in cur if t], settings.ngram, settings.ngram_dim),
            )[0]
        )
        result.details.update(
            js_sample=result.effect, sample_baseline=len(base_texts), sample_current=len(cur_texts)
        )
        result.effect = full
        result.test += f", on a sample of {len(base_texts)}/{len(cur_texts)}"
    return result, sizes, {"texts": (base_texts[:500], cur_texts[:500])}


def _sample(
    base_rows: BoolArray, cur_rows: BoolArray, pairing: Pairing | None, size: int, rng: np.random.Generator
) -> tuple[BoolArray, BoolArray]:
    """At most about ``size`` texts per side: whole prompts when paired, else rows at random."""
    if pairing is None:
        return _sample_rows(base_rows, size, rng), _sample_rows(cur_rows, size, rng)
    codes = np.concatenate([pairing.base_codes[base_rows], pairing.cur_codes[cur_rows]])
    prompts = rng.permutation(np.unique(codes[codes >= 0]))
    rows_per_prompt = np.bincount(codes[codes >= 0], minlength=pairing.keys.size)[prompts]
    chosen = prompts[np.cumsum(rows_per_prompt) <= 2 * size]
    keep = np.zeros(pairing.keys.size + 1, dtype=np.bool_)
    keep[chosen] = True
    base_keep = base_rows & keep[pairing.base_codes]  # code -1 reads keep[-1]: the unused last slot
    cur_keep = cur_rows & keep[pairing.cur_codes]
    return base_keep, cur_keep


def _sample_rows(rows: BoolArray, size: int, rng: np.random.Generator) -> BoolArray:
    index = np.flatnonzero(rows)
    if index.size <= size:
        return rows
    chosen = np.zeros_like(rows)
    chosen[rng.choice(index, size, replace=False)] = True
    return chosen


def _category_counts(values: np.ndarray) -> dict[str, int]:
    present = np.array([value is not None for value in values], dtype=np.bool_)
    categories, counts = np.unique(values[present].astype(str), return_counts=True)
    return {str(c): int(k) for c, k in zip(categories, counts, strict=True)}
