"""What a drift comparison is made of: its settings, one result per feature, the examples, and
the report's data with its JSON form. Rendering (text, HTML) lives in ``report.py`` and the
``render_*`` modules; computing it in ``engine.py`` (local) and ``spark/`` (PySpark).

This module imports nothing else of ``pytest_llmops.monitoring`` but the thresholds: every
other module may import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pytest_llmops.monitoring.effects import MinEffect, min_effects

JSON_SCHEMA = "pytest-llmops/drift/2"
Detail = float | int | str | None
Status = Literal["drift", "changed (below threshold)", "no change", "not tested"]


@dataclass(frozen=True)
class DriftSettings:
    """How traces are compared.

    ``alpha`` is the false discovery rate for Benjamini-Hochberg across features;
    ``pairing="auto"`` pairs numeric features by prompt when at least ``min_pairs`` prompts
    appear on both sides and cover at least half of each side's traces (``"off"`` never pairs);
    ``features`` restricts the comparison to those names; ``min_effect`` overrides the minimum
    effect a significant feature needs to count as drift (``{"latency_ms": 0.3}`` or
    ``{"latency_ms": MinEffect("psi", 0.25)}``, see :mod:`pytest_llmops.monitoring.effects`);
    ``text_sample`` bounds the texts per side the permutation test of a text feature runs on
    (its effect, the JS distance, always uses every text).
    """

    alpha: float = 0.05
    pairing: Literal["auto", "off"] = "auto"
    min_pairs: int = 10
    permutations: int = 999
    seed: int = 0
    ngram: int = 3
    ngram_dim: int = 2048
    features: tuple[str, ...] | None = None
    min_effect: Mapping[str, MinEffect | float] = field(default_factory=dict)
    text_sample: int = 2000
    examples: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")
        from pytest_llmops.monitoring.features import FEATURES_BY_NAME

        named = [*(self.features or ()), *self.min_effect]
        unknown = sorted({name for name in named if name not in FEATURES_BY_NAME})
        if unknown:
            raise ValueError(
                f"unknown drift feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES_BY_NAME)}"
            )
        min_effects(self.min_effect)  # checks metrics and values

    def thresholds(self) -> dict[str, MinEffect]:
        """The minimum effect of every feature: the defaults with ``min_effect`` applied."""
        return min_effects(self.min_effect)


@dataclass
class FeatureDrift:
    """The comparison of one feature.

    ``status`` is ``"drift"`` (significant after Benjamini-Hochberg and at least the minimum
    effect), ``"changed (below threshold)"`` (significant, smaller), ``"no change"`` or
    ``"not tested"``; ``p_method`` says how the p-value was computed (``exact``,
    ``asymptotic``, ``Monte Carlo``, ``permutation``). ``summary`` holds what the plots need
    (value counts per side, or a sample of texts), not the raw values.
    """

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
    details: dict[str, Detail] = field(default_factory=dict)
    p_method: str | None = None
    min_effect: MinEffect | None = None
    practical_effect: float | None = None
    status: Status = "not tested"
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def tested(self) -> bool:
        """Whether a test ran (a constant or empty feature has no p-value)."""
        return self.p_value is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the value counts)."""
        return {
            "kind": self.kind,
            "description": self.description,
            "test": self.test,
            "p_method": self.p_method,
            "n_baseline": self.n_baseline,
            "n_current": self.n_current,
            "p_value": clean(self.p_value),
            "p_adjusted": clean(self.p_adjusted),
            "statistic": clean(self.statistic),
            "effect": clean(self.effect),
            "effect_name": self.effect_name,
            "min_effect": None
            if self.min_effect is None
            else {
                "metric": self.min_effect.metric,
                "value": self.min_effect.value,
                "observed": clean(self.practical_effect),
            },
            "status": self.status,
            "drifted": self.drifted,
            "warning": self.warning,
            "details": {key: clean(value) for key, value in self.details.items()},
        }


@dataclass(frozen=True)
class Example:
    """One prompt asked on both sides whose answers changed most: the answers side by side."""

    key: str
    prompt: str
    baseline: str
    current: str
    score: float
    baseline_details: dict[str, Detail] = field(default_factory=dict)
    current_details: dict[str, Detail] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "key": self.key,
            "prompt": self.prompt,
            "baseline": self.baseline,
            "current": self.current,
            "score": clean(self.score),
            "baseline_details": {k: clean(v) for k, v in self.baseline_details.items()},
            "current_details": {k: clean(v) for k, v in self.current_details.items()},
        }


@dataclass
class ReportData:
    """Drift between a baseline and a current set of traces (the data; see ``DriftReport``)."""

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
    examples: list[Example] = field(default_factory=list)
    engine: str = "local"

    @property
    def drifted(self) -> bool:
        """True when at least one feature drifted: significant after Benjamini-Hochberg at
        ``alpha`` and at least its minimum effect."""
        return any(feature.drifted for feature in self.features.values())

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted."""
        return [name for name, feature in self.features.items() if feature.drifted]

    @property
    def changed_below_threshold(self) -> list[str]:
        """Names of the features that changed significantly, but less than their minimum effect."""
        return [name for name, f in self.features.items() if f.status == "changed (below threshold)"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; see docs/monitoring.md for the schema."""
        return {
            "schema": JSON_SCHEMA,
            "created_at": self.created_at,
            "engine": self.engine,
            "baseline": {"ref": self.baseline_label, "traces": self.n_baseline},
            "current": {"ref": self.current_label, "traces": self.n_current},
            "alpha": self.alpha,
            "correction": "benjamini-hochberg",
            "paired_prompts": self.paired_prompts,
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "changed_below_threshold": self.changed_below_threshold,
            "warnings": self.warnings,
            "features": {name: feature.to_dict() for name, feature in self.features.items()},
            "examples": [example.to_dict() for example in self.examples],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def clean(value: object) -> object:
    """JSON has no NaN or infinity: map them to None (numpy scalars to Python numbers)."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, int | float | str):
        value = item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
