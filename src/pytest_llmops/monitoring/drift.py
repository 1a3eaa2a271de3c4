"""Compare two sets of traces feature by feature, correct for multiple testing, report.

Public entry points: :func:`compare_traces` (traces in memory: MLflow ``Trace`` objects, their
dict form, flat dicts or :class:`TraceFeatures`) and :func:`compare_refs` (two references to
runs in an MLflow store, see :mod:`pytest_llmops.monitoring.sources`).
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from scipy import stats as scipy_stats

from pytest_llmops.monitoring import stats
from pytest_llmops.monitoring.features import FEATURES, FeatureSpec, TraceFeatures, extract_all
from pytest_llmops.monitoring.text import ngram_profiles

JSON_SCHEMA = "pytest-llmops/drift/1"


@dataclass(frozen=True)
class DriftSettings:
    """How traces are compared.

    ``alpha`` is the false discovery rate for Benjamini-Hochberg across features;
    ``pairing="auto"`` pairs numeric features by prompt when at least ``min_pairs`` prompts
    appear on both sides and cover at least half of each side's traces (``"off"`` never pairs);
    ``features`` restricts the comparison to those names.
    """

    alpha: float = 0.05
    pairing: Literal["auto", "off"] = "auto"
    min_pairs: int = 10
    permutations: int = 999
    seed: int = 0
    ngram: int = 3
    ngram_dim: int = 2048
    features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")


@dataclass
class FeatureDrift:
    """The comparison of one feature."""

    name: str
    kind: str
    description: str
    test: str
    n_baseline: int
    n_current: int
    p_value: float | None
    p_adjusted: float | None
    statistic: float | None
    effect: float | None
    effect_name: str
    drifted: bool
    warning: str | None
    details: dict[str, stats.Detail] = field(default_factory=dict)
    baseline_values: list[Any] = field(default_factory=list, repr=False)
    current_values: list[Any] = field(default_factory=list, repr=False)

    @property
    def tested(self) -> bool:
        """Whether a test ran (a constant or empty feature has no p-value)."""
        return self.p_value is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the raw values)."""
        return {
            "kind": self.kind,
            "description": self.description,
            "test": self.test,
            "n_baseline": self.n_baseline,
            "n_current": self.n_current,
            "p_value": _clean(self.p_value),
            "p_adjusted": _clean(self.p_adjusted),
            "statistic": _clean(self.statistic),
            "effect": _clean(self.effect),
            "effect_name": self.effect_name,
            "drifted": self.drifted,
            "warning": self.warning,
            "details": {key: _clean(value) for key, value in self.details.items()},
        }


@dataclass
class DriftReport:
    """Drift between a baseline and a current set of traces."""

    baseline_label: str
    current_label: str
    n_baseline: int
    n_current: int
    alpha: float
    paired_prompts: int
    features: dict[str, FeatureDrift]
    warnings: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    settings: DriftSettings = field(default_factory=DriftSettings, repr=False)

    @property
    def drifted(self) -> bool:
        """True when at least one feature drifted (after Benjamini-Hochberg at ``alpha``)."""
        return any(feature.drifted for feature in self.features.values())

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted."""
        return [name for name, feature in self.features.items() if feature.drifted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; see docs/monitoring.md for the schema."""
        return {
            "schema": JSON_SCHEMA,
            "created_at": self.created_at,
            "baseline": {"ref": self.baseline_label, "traces": self.n_baseline},
            "current": {"ref": self.current_label, "traces": self.n_current},
            "alpha": self.alpha,
            "correction": "benjamini-hochberg",
            "paired_prompts": self.paired_prompts,
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "warnings": self.warnings,
            "features": {name: feature.to_dict() for name, feature in self.features.items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_text(self, width: int = 110) -> str:
        """The report as a terminal table."""
        from pytest_llmops.monitoring.report import render_text

        return render_text(self, width=width)

    def to_html(self) -> str:
        """The report as a self-contained HTML page with plots (matplotlib, imported here)."""
        from pytest_llmops.monitoring.report import render_html

        return render_html(self)


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
    baseline: Sequence[TraceFeatures],
    current: Sequence[TraceFeatures],
    *,
    settings: DriftSettings | None = None,
    baseline_label: str = "baseline",
    current_label: str = "current",
) -> DriftReport:
    """Compare already extracted features (what :func:`compare_traces` does after extraction)."""
    settings = settings or DriftSettings()
    specs = _selected_specs(settings)
    paired = _paired_keys(baseline, current, settings)
    results = {spec.name: _compare_feature(spec, baseline, current, paired, settings) for spec in specs}
    _benjamini_hochberg(list(results.values()), settings.alpha)
    warnings = []
    if not baseline or not current:
        warnings.append(f"nothing to compare: {len(baseline)} baseline and {len(current)} current traces")
    return DriftReport(
        baseline_label=baseline_label,
        current_label=current_label,
        n_baseline=len(baseline),
        n_current=len(current),
        alpha=settings.alpha,
        paired_prompts=len(paired),
        features=results,
        warnings=warnings,
        settings=settings,
    )


def compare_refs(
    baseline_ref: str,
    current_ref: str,
    tracking_uri: str | None = None,
    *,
    settings: DriftSettings | None = None,
) -> DriftReport:
    """Compare the traces behind two references (run id, ``session:ID``, ``EXPERIMENT[:FILTER]``)."""
    from pytest_llmops.monitoring.sources import load_traces

    baseline = load_traces(baseline_ref, tracking_uri)
    current = load_traces(current_ref, tracking_uri)
    return compare_traces(
        baseline, current, settings=settings, baseline_label=baseline_ref, current_label=current_ref
    )


# --- one feature ---------------------------------------------------------------------------


def _compare_feature(
    spec: FeatureSpec,
    baseline: Sequence[TraceFeatures],
    current: Sequence[TraceFeatures],
    paired: set[str],
    settings: DriftSettings,
) -> FeatureDrift:
    seed = settings.seed + zlib.crc32(spec.name.encode())
    if spec.kind in ("count", "continuous"):
        base_values = _present(baseline, spec.name)
        cur_values = _present(current, spec.name)
        pairs = _pairs(baseline, current, spec.name, paired, settings) if paired else None
        result = stats.numeric_test(
            base_values,
            cur_values,
            kind=spec.kind,
            alpha=settings.alpha,
            pairs=pairs,
        )
    elif spec.kind == "categorical":
        base_values = _present(baseline, spec.name)
        cur_values = _present(current, spec.name)
        result = stats.categorical_test(base_values, cur_values, alpha=settings.alpha, seed=seed)
    elif spec.kind == "binary":
        base_values = [bool(getattr(trace, spec.name)) for trace in baseline]
        cur_values = [bool(getattr(trace, spec.name)) for trace in current]
        result = stats.proportion_test(base_values, cur_values, alpha=settings.alpha)
    else:
        base_traces = [t for t in baseline if getattr(t, spec.name)]
        cur_traces = [t for t in current if getattr(t, spec.name)]
        base_values = [getattr(t, spec.name) for t in base_traces]
        cur_values = [getattr(t, spec.name) for t in cur_traces]
        blocks = None
        if paired and spec.name != "prompt_text":
            # Answers to one prompt resemble each other: swap sides only within a prompt. Every
            # prompt is its own block (one seen on one side only simply cannot move); never pool
            # the unmatched prompts into one block, that block's make-up depends on the sides.
            keys = sorted({t.key or "" for t in [*base_traces, *cur_traces]})
            index = {key: i for i, key in enumerate(keys)}
            blocks = [index[t.key or ""] for t in [*base_traces, *cur_traces]]
        result = stats.profile_test(
            ngram_profiles(base_values, settings.ngram, settings.ngram_dim),
            ngram_profiles(cur_values, settings.ngram, settings.ngram_dim),
            alpha=settings.alpha,
            permutations=settings.permutations,
            seed=seed,
            blocks=blocks,
        )
    return FeatureDrift(
        name=spec.name,
        kind=spec.kind,
        description=spec.description,
        test=result.test,
        n_baseline=len(base_values),
        n_current=len(cur_values),
        p_value=result.p_value,
        p_adjusted=None,
        statistic=result.statistic,
        effect=result.effect,
        effect_name=result.effect_name,
        drifted=False,
        warning=result.warning,
        details=result.details,
        baseline_values=list(base_values),
        current_values=list(cur_values),
    )


def _benjamini_hochberg(results: list[FeatureDrift], alpha: float) -> None:
    tested = [result for result in results if result.p_value is not None]
    if not tested:
        return
    adjusted = scipy_stats.false_discovery_control([result.p_value for result in tested], method="bh")
    for result, q in zip(tested, np.atleast_1d(adjusted), strict=True):
        result.p_adjusted = float(q)
        result.drifted = bool(q <= alpha)


def _selected_specs(settings: DriftSettings) -> list[FeatureSpec]:
    if settings.features is None:
        return list(FEATURES)
    known = {spec.name for spec in FEATURES}
    unknown = sorted(set(settings.features) - known)
    if unknown:
        raise ValueError(f"unknown drift feature(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [spec for spec in FEATURES if spec.name in settings.features]


def _present(traces: Sequence[TraceFeatures], name: str) -> list[Any]:
    return [value for value in (getattr(trace, name) for trace in traces) if value is not None]


def _paired_keys(
    baseline: Sequence[TraceFeatures], current: Sequence[TraceFeatures], settings: DriftSettings
) -> set[str]:
    """Prompts to pair on, or none: a suite run twice asks the same prompts as often on each side.

    Pairing needs at least ``min_pairs`` prompts asked equally often on both sides, covering at
    least half of each side's traces. Traffic that merely repeats popular prompts does not pair.
    """
    if settings.pairing == "off":
        return set()
    base_counts = Counter(t.key for t in baseline if t.key)
    cur_counts = Counter(t.key for t in current if t.key)
    keys = {key for key, count in base_counts.items() if cur_counts.get(key) == count}
    covered_base = sum(base_counts[key] for key in keys)
    covered_cur = sum(cur_counts[key] for key in keys)
    if len(keys) < settings.min_pairs or covered_base < len(baseline) / 2 or covered_cur < len(current) / 2:
        return set()
    return {key for key in keys if key is not None}


def _pairs(
    baseline: Sequence[TraceFeatures],
    current: Sequence[TraceFeatures],
    name: str,
    paired: set[str],
    settings: DriftSettings,
) -> list[tuple[list[float], list[float]]] | None:
    """Per paired prompt: (baseline values, current values), or None when too few pairs remain.

    Only prompts with as many values on each side: the difference of two means of equally many
    exchangeable values is symmetric about 0, which the signed-rank test needs.
    """
    base: dict[str, list[float]] = defaultdict(list)
    cur: dict[str, list[float]] = defaultdict(list)
    for traces, into in ((baseline, base), (current, cur)):
        for trace in traces:
            value = getattr(trace, name)
            if trace.key in paired and value is not None:
                into[trace.key].append(float(value))
    pairs = [(base[key], cur[key]) for key in sorted(paired) if base[key] and len(base[key]) == len(cur[key])]
    return pairs if len(pairs) >= settings.min_pairs else None


def _clean(value: object) -> object:
    """JSON has no NaN or infinity: map them to None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value
