"""Practical significance: the minimum effect a significant change needs to count as drift.

With 10^4 traces or more every feature becomes "significant": a 2 % latency wobble on a busy
machine gets q < 0.001. A feature is therefore DRIFT only when it is significant after
Benjamini-Hochberg **and** its effect reaches a minimum size; significant but smaller is
"changed (below threshold)".

Metrics (all absolute values; see docs/monitoring.md for the defaults and why):

``median_change``
    relative change of the median (per prompt, the median ratio change, when paired);
``p90_change``
    relative change of the 90th percentile (tail latency);
``wasserstein``
    Wasserstein distance divided by the baseline's standard deviation;
``psi``
    population stability index (bands 0.1 moderate, 0.25 major);
``js``
    Jensen-Shannon distance (base 2, 0..1) of the category shares or mean n-gram profiles;
``cohens_h``
    Cohen's h of two rates.

Override per feature with ``--min-effect FEATURE=VALUE`` (the feature's default metric) or
``--min-effect FEATURE=METRIC:VALUE``; ``0`` turns the minimum off (significance alone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

METRICS = ("median_change", "p90_change", "wasserstein", "psi", "js", "cohens_h")
NUMERIC_METRICS = frozenset({"median_change", "p90_change", "wasserstein", "psi"})


@dataclass(frozen=True)
class MinEffect:
    """The smallest effect, measured by ``metric``, that counts as drift."""

    metric: str
    value: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown effect metric {self.metric!r}; use one of {', '.join(METRICS)}")
        if not math.isfinite(self.value) or self.value < 0:
            raise ValueError(f"a minimum effect must be a number >= 0, got {self.value}")

    def describe(self) -> str:
        """``median_change >= 10%``-style text."""
        if self.metric.endswith("_change"):
            return f"{self.metric} >= {self.value:.0%}"
        return f"{self.metric} >= {self.value:g}"


DEFAULT_MIN_EFFECTS: dict[str, MinEffect] = {
    "prompt_tokens": MinEffect("median_change", 0.10),
    "completion_tokens": MinEffect("median_change", 0.10),
    "total_tokens": MinEffect("median_change", 0.10),
    "latency_ms": MinEffect("p90_change", 0.20),
    "response_chars": MinEffect("median_change", 0.10),
    "response_words": MinEffect("median_change", 0.10),
    "tool_calls": MinEffect("wasserstein", 0.10),
    "finish_reason": MinEffect("js", 0.05),
    "error": MinEffect("cohens_h", 0.10),
    "model": MinEffect("js", 0.05),
    "deployment": MinEffect("js", 0.05),
    "prompt_text": MinEffect("js", 0.05),
    "response_text": MinEffect("js", 0.05),
}
"""The documented default minimum effect of each feature."""


def min_effects(overrides: Mapping[str, MinEffect | float]) -> dict[str, MinEffect]:
    """The defaults with ``overrides`` applied (a bare number keeps the feature's metric)."""
    result = dict(DEFAULT_MIN_EFFECTS)
    for name, value in overrides.items():
        if name not in result:
            raise ValueError(f"unknown drift feature {name!r} in min_effect; known: {', '.join(result)}")
        effect = value if isinstance(value, MinEffect) else MinEffect(result[name].metric, float(value))
        _check_metric(name, effect.metric)
        result[name] = effect
    return result


def parse_min_effects(items: Iterable[str]) -> dict[str, MinEffect | float]:
    """Parse ``FEATURE=VALUE`` / ``FEATURE=METRIC:VALUE`` items (CLI and pytest option)."""
    parsed: dict[str, MinEffect | float] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise ValueError(f"--min-effect {item!r}: use FEATURE=VALUE or FEATURE=METRIC:VALUE")
        metric, colon, number = spec.rpartition(":")
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"--min-effect {item!r}: {number!r} is not a number") from None
        parsed[name] = MinEffect(metric.strip(), value) if colon else value
    min_effects(parsed)  # validates names, metrics and values
    return parsed


def observed(metric: str, details: Mapping[str, object], effect: float | None) -> float | None:
    """The value of ``metric`` for one feature, from its details (None when not measurable)."""
    if metric == "median_change":
        paired = details.get("median_ratio_change")
        value = paired if isinstance(paired, int | float) else details.get("median_change")
        if value is None and _number(details.get("median_baseline")) == 0:
            # from zero: any change of the median is infinitely large, none is zero
            return 0.0 if _number(details.get("median_current")) == 0 else math.inf
    elif metric == "p90_change":
        value = details.get("p90_change")
    elif metric == "wasserstein":
        value = details.get("wasserstein_norm")
    elif metric == "psi":
        value = details.get("psi")
    elif metric in ("js", "cohens_h"):
        value = effect
    else:  # pragma: no cover - MinEffect checks the metric
        raise ValueError(metric)
    number = _number(value)
    return None if number is None else abs(number)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _check_metric(name: str, metric: str) -> None:
    from pytest_llmops.monitoring.features import FEATURES_BY_NAME

    kind = FEATURES_BY_NAME[name].kind
    allowed = {
        "count": NUMERIC_METRICS,
        "continuous": NUMERIC_METRICS,
        "categorical": {"js"},
        "text": {"js"},
        "binary": {"cohens_h"},
    }[kind]
    if metric not in allowed:
        raise ValueError(
            f"min effect metric {metric!r} does not apply to {name} ({kind}); "
            f"use {', '.join(sorted(allowed))}"
        )
