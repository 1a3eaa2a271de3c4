"""The decision, shared by every engine: Benjamini-Hochberg across the tested features, then
the practical gate (a significant feature is DRIFT only when its effect reaches the minimum
of :mod:`~pytest_llmops.monitoring.effects`)."""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats

from pytest_llmops.monitoring.effects import observed
from pytest_llmops.monitoring.features import FEATURES, FeatureSpec
from pytest_llmops.monitoring.model import DriftSettings, Example, FeatureDrift
from pytest_llmops.monitoring.report import DriftReport


def decide(results: dict[str, FeatureDrift], settings: DriftSettings) -> None:
    """Set ``p_adjusted``, ``min_effect``, ``practical_effect``, ``status`` and ``drifted``."""
    thresholds = settings.thresholds()
    tested = [result for result in results.values() if result.p_value is not None]
    if tested:
        adjusted = scipy_stats.false_discovery_control([r.p_value for r in tested], method="bh")
        for result, q in zip(tested, np.atleast_1d(adjusted), strict=True):
            result.p_adjusted = float(q)
    for result in results.values():
        minimum = thresholds[result.name]
        result.min_effect = minimum
        result.practical_effect = observed(minimum.metric, result.details, result.effect)
        if result.p_adjusted is None:
            result.status = "not tested"
        elif result.p_adjusted > settings.alpha:
            result.status = "no change"
        elif result.practical_effect is None or result.practical_effect >= minimum.value:
            result.status = "drift"  # an effect that cannot be measured leaves it to significance
        else:
            result.status = "changed (below threshold)"
        result.drifted = result.status == "drift"


def build_report(
    results: dict[str, FeatureDrift],
    settings: DriftSettings,
    *,
    labels: tuple[str, str],
    sizes: tuple[int, int],
    paired_prompts: int,
    examples: list[Example],
    engine: str = "local",
) -> DriftReport:
    """Decide (:func:`decide`) and put the report together, whichever engine made the results."""
    decide(results, settings)
    warnings = []
    if not sizes[0] or not sizes[1]:
        warnings.append(f"nothing to compare: {sizes[0]} baseline and {sizes[1]} current traces")
    return DriftReport(
        baseline_label=labels[0],
        current_label=labels[1],
        n_baseline=sizes[0],
        n_current=sizes[1],
        alpha=settings.alpha,
        paired_prompts=paired_prompts,
        features=results,
        warnings=warnings,
        settings=settings,
        examples=examples,
        engine=engine,
    )


def selected_specs(settings: DriftSettings) -> list[FeatureSpec]:
    """The features to compare, in the documented order."""
    if settings.features is None:
        return list(FEATURES)
    return [spec for spec in FEATURES if spec.name in settings.features]
