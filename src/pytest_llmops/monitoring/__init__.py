"""Monitoring: per-trace features, two-sample drift tests, reports.

Importing this package is free: the names below are loaded on first use (numpy and scipy
with the statistics, mlflow only to read or log runs, matplotlib only for HTML).

    from pytest_llmops.monitoring import compare_refs, compare_traces

    report = compare_refs("session:latest", "run:0123...", tracking_uri)
    assert not report.drifted, report.to_text()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_llmops.monitoring.columns import FeatureColumns
    from pytest_llmops.monitoring.drift import compare_features, compare_refs, compare_traces
    from pytest_llmops.monitoring.effects import MinEffect
    from pytest_llmops.monitoring.engine import compare_columns
    from pytest_llmops.monitoring.features import FEATURES, TraceFeatures, extract_features
    from pytest_llmops.monitoring.mlflow_store import StoreError, log_report
    from pytest_llmops.monitoring.model import DriftSettings, Example, FeatureDrift
    from pytest_llmops.monitoring.report import DriftReport
    from pytest_llmops.monitoring.sources import RefError, load_traces, resolve_ref
    from pytest_llmops.monitoring.window import TimeWindow

_EXPORTS = {
    "DriftReport": "report",
    "DriftSettings": "model",
    "Example": "model",
    "FeatureDrift": "model",
    "FeatureColumns": "columns",
    "MinEffect": "effects",
    "TimeWindow": "window",
    "compare_columns": "engine",
    "compare_features": "drift",
    "compare_refs": "drift",
    "compare_traces": "drift",
    "FEATURES": "features",
    "TraceFeatures": "features",
    "extract_features": "features",
    "RefError": "sources",
    "StoreError": "mlflow_store",
    "load_traces": "sources",
    "log_report": "mlflow_store",
    "resolve_ref": "sources",
}

__all__ = [
    "FEATURES",
    "DriftReport",
    "DriftSettings",
    "Example",
    "FeatureColumns",
    "FeatureDrift",
    "MinEffect",
    "RefError",
    "StoreError",
    "TimeWindow",
    "TraceFeatures",
    "compare_columns",
    "compare_features",
    "compare_refs",
    "compare_traces",
    "extract_features",
    "load_traces",
    "log_report",
    "resolve_ref",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"pytest_llmops.monitoring.{module}"), name)
