"""Compare two sets of traces feature by feature, correct for multiple testing, report.

Public entry points: :func:`compare_traces` (traces in memory: MLflow ``Trace`` objects, their
dict form, flat dicts or :class:`TraceFeatures`), :func:`compare_features` (features already
extracted) and :func:`compare_refs` (two REFs: runs in an MLflow store, or JSON Lines /
Parquet files, see :mod:`pytest_llmops.monitoring.sources`). The work is done by the local
engine (:mod:`pytest_llmops.monitoring.engine`) on feature columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_llmops.monitoring.columns import FeatureColumns
from pytest_llmops.monitoring.engine import compare_columns
from pytest_llmops.monitoring.features import TraceFeatures, extract_all
from pytest_llmops.monitoring.model import JSON_SCHEMA, DriftSettings, Example, FeatureDrift
from pytest_llmops.monitoring.report import DriftReport
from pytest_llmops.monitoring.window import TimeWindow

__all__ = [
    "JSON_SCHEMA",
    "DriftReport",
    "DriftSettings",
    "Example",
    "FeatureDrift",
    "compare_features",
    "compare_refs",
    "compare_traces",
]


def compare_traces(
    baseline: Iterable[object],
    current: Iterable[object],
    *,
    settings: DriftSettings | None = None,
    baseline_label: str = "baseline",
    current_label: str = "current",
) -> DriftReport:
    """Compare the traces of a baseline with the current ones, feature by feature."""
    return compare_features(
        extract_all(baseline),
        extract_all(current),
        settings=settings,
        baseline_label=baseline_label,
        current_label=current_label,
    )


def compare_features(
    baseline: Sequence[TraceFeatures] | FeatureColumns,
    current: Sequence[TraceFeatures] | FeatureColumns,
    *,
    settings: DriftSettings | None = None,
    baseline_label: str = "baseline",
    current_label: str = "current",
) -> DriftReport:
    """Compare already extracted features (what :func:`compare_traces` does after extraction)."""
    return compare_columns(
        baseline if isinstance(baseline, FeatureColumns) else FeatureColumns.from_features(baseline),
        current if isinstance(current, FeatureColumns) else FeatureColumns.from_features(current),
        settings=settings,
        baseline_label=baseline_label,
        current_label=current_label,
    )


def compare_refs(
    baseline_ref: str,
    current_ref: str,
    tracking_uri: str | None = None,
    *,
    settings: DriftSettings | None = None,
    window: TimeWindow | None = None,
) -> DriftReport:
    """Compare the traces behind two REFs (run id, ``session:ID``, ``EXPERIMENT[:FILTER]``, or a
    ``.jsonl``/``.parquet`` file); ``window`` keeps the traces of a time window."""
    from pytest_llmops.monitoring.loading import load_columns

    return compare_columns(
        load_columns(baseline_ref, tracking_uri, window=window),
        load_columns(current_ref, tracking_uri, window=window),
        settings=settings,
        baseline_label=baseline_ref,
        current_label=current_ref,
    )
