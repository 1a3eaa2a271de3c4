"""What an engine hands over for each feature, and the test run on it.

An engine (local: ``engine.py``; Spark: ``spark/engine.py``) summarises each feature of both
sides: value counts of numbers (and the per-prompt changes when paired), counts of
categories, counts of errors, or a sample of text profiles with the JS distance of all texts.
:func:`feature_result` runs the same test on it whichever engine made it, so both engines
reach the same decisions.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from pytest_llmops.monitoring import stats
from pytest_llmops.monitoring.features import FeatureSpec
from pytest_llmops.monitoring.model import DriftSettings, FeatureDrift
from pytest_llmops.monitoring.stats.weighted import FloatArray, Weighted


@dataclass(frozen=True)
class NumericSummary:
    """Value counts per side; per paired prompt, the change in mean ``log1p`` (None: unpaired)."""

    base: Weighted
    cur: Weighted
    differences: FloatArray | None = None


@dataclass(frozen=True)
class CategorySummary:
    """Count of each category per side."""

    base: dict[str, int]
    cur: dict[str, int]


@dataclass(frozen=True)
class RateSummary:
    """``x`` of ``n`` baseline and ``y`` of ``m`` current values are true."""

    x: int
    n: int
    y: int
    m: int


@dataclass(frozen=True)
class TextSummary:
    """Profiles of the texts the permutation test runs on (all, or a sample), their prompts
    (``blocks``, when paired), how many texts each side has, and the JS distance of the mean
    profiles of all of them when the test ran on a sample."""

    base_profiles: sparse.csr_matrix
    cur_profiles: sparse.csr_matrix
    sizes: tuple[int, int]
    blocks: list[int] | None = None
    full_js: float | None = None
    texts: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))


Summary = NumericSummary | CategorySummary | RateSummary | TextSummary


def feature_result(spec: FeatureSpec, summary: Summary, settings: DriftSettings) -> FeatureDrift:
    """The test of one feature, from its summary (not yet corrected or gated: ``decide``)."""
    seed = settings.seed + zlib.crc32(spec.name.encode())
    plot: dict[str, Any]
    if isinstance(summary, NumericSummary):
        result = stats.numeric_test(
            summary.base,
            summary.cur,
            kind="count" if spec.kind == "count" else "continuous",
            alpha=settings.alpha,
            pairs=summary.differences,
        )
        sizes = summary.base.total, summary.cur.total
        plot = {"weighted": (summary.base, summary.cur)}
    elif isinstance(summary, CategorySummary):
        result = stats.categorical_test(summary.base, summary.cur, alpha=settings.alpha, seed=seed)
        sizes = sum(summary.base.values()), sum(summary.cur.values())
        plot = {"counts": (summary.base, summary.cur)}
    elif isinstance(summary, RateSummary):
        result = stats.rate_test(summary.x, summary.n, summary.y, summary.m, alpha=settings.alpha)
        sizes = summary.n, summary.m
        plot = {
            "counts": (
                {"error": summary.x, "ok": summary.n - summary.x},
                {"error": summary.y, "ok": summary.m - summary.y},
            )
        }
    else:
        result = stats.profile_test(
            summary.base_profiles,
            summary.cur_profiles,
            alpha=settings.alpha,
            permutations=settings.permutations,
            seed=seed,
            blocks=summary.blocks,
        )
        if summary.full_js is not None and result.p_value is not None:
            shape = summary.base_profiles.shape[0], summary.cur_profiles.shape[0]
            result.details.update(js_sample=result.effect, sample_baseline=shape[0], sample_current=shape[1])
            result.effect = summary.full_js
            result.test += f", on a sample of {shape[0]}/{shape[1]}"
        sizes = summary.sizes
        plot = {"texts": summary.texts}
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
        summary=plot,
    )


def category_counts(values: np.ndarray) -> dict[str, int]:
    """Counts per category of an object column (``None`` left out)."""
    present = np.array([value is not None for value in values], dtype=np.bool_)
    categories, counts = np.unique(values[present].astype(str), return_counts=True)
    return {str(c): int(k) for c, k in zip(categories, counts, strict=True)}
