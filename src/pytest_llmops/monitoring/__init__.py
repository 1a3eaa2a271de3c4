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
    from pytest_llmops.monitoring.drift import (
        DriftReport,
        DriftSettings,
        FeatureDrift,
        compare_features,
        compare_refs,
        compare_traces,
    )
    from pytest_llmops.monitoring.features import FEATURES, TraceFeatures, extract_features
    from pytest_llmops.monitoring.sources import RefError, load_traces, log_report, resolve_ref

_EXPORTS = {
    "DriftReport": "drift",
    "DriftSettings": "drift",
    "FeatureDrift": "drift",
    "compare_features": "drift",
    "compare_refs": "drift",
    "compare_traces": "drift",
    "FEATURES": "features",
    "TraceFeatures": "features",
    "extract_features": "features",
    "RefError": "sources",
    "load_traces": "sources",
    "log_report": "sources",
    "resolve_ref": "sources",
}

__all__ = [
    "FEATURES",
    "DriftReport",
    "DriftSettings",
    "FeatureDrift",
    "RefError",
    "TraceFeatures",
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
