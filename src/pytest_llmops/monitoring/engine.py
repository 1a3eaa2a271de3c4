"""The local engine: compare two :class:`~pytest_llmops.monitoring.columns.FeatureColumns`.

Every feature is summarised per side the way the Spark engine summarises it (value counts of
numbers, counts of categories, sums of n-gram profiles, a bounded sample of texts), then the
same tests and the same decision run on those summaries. Memory and time grow linearly with
the traces: 100,000 per side take seconds (benchmarks/bench_drift.py).
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

from pytest_llmops.monitoring.columns import FeatureColumns
from pytest_llmops.monitoring.decide import build_report, selected_specs
from pytest_llmops.monitoring.examples import find_examples
from pytest_llmops.monitoring.features import FeatureSpec
from pytest_llmops.monitoring.model import DriftSettings, FeatureDrift
from pytest_llmops.monitoring.pairing import Pairing, pair_prompts
from pytest_llmops.monitoring.report import DriftReport
from pytest_llmops.monitoring.stats.weighted import Weighted
from pytest_llmops.monitoring.summaries import (
    CategorySummary,
    NumericSummary,
    RateSummary,
    Summary,
    TextSummary,
    category_counts,
    feature_result,
)
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
    return build_report(
        results,
        settings,
        labels=(baseline_label, current_label),
        sizes=(len(baseline), len(current)),
        paired_prompts=pairing.count,
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
    return feature_result(spec, summarise(spec, baseline, current, pairing, settings), settings)


def summarise(
    spec: FeatureSpec,
    baseline: FeatureColumns,
    current: FeatureColumns,
    pairing: Pairing,
    settings: DriftSettings,
) -> Summary:
    """What the test of one feature needs, from the columns of both sides."""
    base, cur = baseline[spec.name], current[spec.name]
    if spec.kind in ("count", "continuous"):
        diffs = pairing.differences(base, cur, settings.min_pairs)
        return NumericSummary(Weighted.of(base), Weighted.of(cur), diffs)
    if spec.kind == "categorical":
        return CategorySummary(category_counts(base), category_counts(cur))
    if spec.kind == "binary":
        return RateSummary(int(base.sum()), base.size, int(cur.sum()), cur.size)
    return _text_summary(spec, base, cur, pairing, settings)


def _text_summary(
    spec: FeatureSpec, base: np.ndarray, cur: np.ndarray, pairing: Pairing, settings: DriftSettings
) -> TextSummary:
    """Profiles of (a sample of) the texts; JS distance of the mean profiles of all of them."""
    base_rows = np.array([bool(text) for text in base], dtype=np.bool_)
    cur_rows = np.array([bool(text) for text in cur], dtype=np.bool_)
    sizes = int(base_rows.sum()), int(cur_rows.sum())
    paired = pairing.count > 0 and spec.name != "prompt_text"  # prompt_text: the input distribution itself
    seed = settings.seed + zlib.crc32(spec.name.encode())
    full_js = None
    if max(sizes) > settings.text_sample:
        full_js = float(
            js_distance(
                profile_sum(list(base[base_rows]), settings.ngram, settings.ngram_dim),
                profile_sum(list(cur[cur_rows]), settings.ngram, settings.ngram_dim),
            )[0]
        )
        rng = np.random.default_rng(seed)
        base_rows, cur_rows = _sample(
            base_rows, cur_rows, pairing if paired else None, settings.text_sample, rng
        )
    base_texts, cur_texts = list(base[base_rows]), list(cur[cur_rows])
    # Answers to one prompt resemble each other: swap sides only within a prompt. Every prompt
    # is its own block (one seen on one side only simply cannot move).
    return TextSummary(
        profile_matrix(base_texts, settings.ngram, settings.ngram_dim),
        profile_matrix(cur_texts, settings.ngram, settings.ngram_dim),
        sizes,
        blocks=list(pairing.blocks(base_rows, cur_rows)) if paired else None,
        full_js=full_js,
        texts=(base_texts[:500], cur_texts[:500]),
    )


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
