"""Simulated comparisons that measure the false-alarm rate and the power of drift detection.

Used by ``benchmarks/drift_validation.py`` (500+ repetitions, prints the table in
docs/monitoring.md) and, with fewer repetitions, by ``tests/test_monitoring_validation.py``.
Every repetition draws a new suite (or new traffic) and new traces from fixed seeds, so the
numbers are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pytest_llmops.monitoring.drift import DriftSettings, compare_traces
from pytest_llmops.monitoring.synthetic import NO_SHIFT, Generator, Shift


@dataclass(frozen=True)
class Scenario:
    """One row of the validation table: how traces are drawn and what shifts."""

    name: str
    shift: Shift = NO_SHIFT
    mode: Literal["suite", "traffic"] = "suite"
    n: int = 50
    target: str | None = None  # the feature the shift is about (None: no shift)


LENGTH_20 = Shift(finish_mix={"stop": 0.75, "length": 0.20, "content_filter": 0.05})
LENGTH_40 = Shift(finish_mix={"stop": 0.55, "length": 0.40, "content_filter": 0.05})
TOKENS_20 = Shift(completion_scale=1.2)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("no shift, suite"),
    Scenario("no shift, suite", n=15),
    Scenario("no shift, traffic", mode="traffic"),
    Scenario("no shift, traffic", mode="traffic", n=300),
    Scenario("+20 % completion tokens, suite", TOKENS_20, target="completion_tokens"),
    Scenario("+20 % completion tokens, traffic", TOKENS_20, mode="traffic", target="completion_tokens"),
    Scenario(
        "+20 % completion tokens, traffic", TOKENS_20, mode="traffic", n=300, target="completion_tokens"
    ),
    Scenario("finish reason length 4 % -> 20 %, suite", LENGTH_20, target="finish_reason"),
    Scenario("finish reason length 4 % -> 40 %, suite", LENGTH_40, target="finish_reason"),
    Scenario(
        "finish reason length 4 % -> 20 %, traffic", LENGTH_20, mode="traffic", n=150, target="finish_reason"
    ),
    Scenario("error rate 2 % -> 12 %, suite", Shift(error_rate=0.12), target="error"),
    Scenario("error rate 2 % -> 25 %, suite", Shift(error_rate=0.25), target="error"),
    Scenario("latency +30 %, suite", Shift(latency_scale=1.3), target="latency_ms"),
    Scenario(
        "answers open with 'Certainly! Here is my answer:', suite",
        Shift(preamble="Certainly! Here is my answer: "),
        target="response_text",
    ),
    Scenario("new model version, suite", Shift(model="gpt-4o-2024-11-20"), target="model"),
)
NULL_SCENARIOS = tuple(s for s in SCENARIOS if s.target is None)


@dataclass(frozen=True)
class Outcome:
    """How often drift was flagged over the repetitions of a scenario."""

    scenario: Scenario
    repetitions: int
    flagged: int  # any feature drifted
    target_flagged: int  # the shifted feature itself drifted
    seconds: float

    @property
    def rate(self) -> float:
        """Share of repetitions flagged: the false-alarm rate without a shift, else the power."""
        return self.flagged / self.repetitions

    @property
    def target_rate(self) -> float:
        """Share of repetitions in which the shifted feature itself was flagged."""
        return self.target_flagged / self.repetitions

    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of :attr:`rate`."""
        return wilson(self.flagged, self.repetitions)


def simulate(
    scenario: Scenario, repetitions: int, settings: DriftSettings | None = None, seed: int = 0
) -> Outcome:
    """Run ``repetitions`` comparisons of ``scenario``."""
    import time

    start = time.perf_counter()
    flagged = target_flagged = 0
    for rep in range(repetitions):
        generator = Generator(mode=scenario.mode, suite_seed=seed * 100_003 + rep)
        baseline = generator.traces(scenario.n, seed=seed * 1_000_003 + 2 * rep)
        current = generator.traces(scenario.n, seed=seed * 1_000_003 + 2 * rep + 1, shift=scenario.shift)
        report = compare_traces(baseline, current, settings=settings)
        flagged += report.drifted
        if scenario.target is not None:
            target_flagged += report.features[scenario.target].drifted
    return Outcome(scenario, repetitions, flagged, target_flagged, time.perf_counter() - start)


def wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def table(outcomes: list[Outcome], alpha: float) -> str:
    """A Markdown table of outcomes."""
    lines = [
        "| scenario | traces per side | repetitions | flagged (any feature) | 95 % CI "
        "| target feature flagged | s per comparison |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for outcome in outcomes:
        low, high = outcome.interval()
        target = f"{outcome.target_rate:.1%}" if outcome.scenario.target else "-"
        lines.append(
            f"| {outcome.scenario.name} | {outcome.scenario.n} | {outcome.repetitions} | {outcome.rate:.1%} |"
            f" {low:.1%} - {high:.1%} | {target} | {outcome.seconds / outcome.repetitions:.3f} |"
        )
    lines.append(f"\nalpha = {alpha:g} (false discovery rate, Benjamini-Hochberg across features).")
    return "\n".join(lines)


@dataclass(frozen=True)
class ScaleOutcome:
    """False alarms at scale: how often any feature was DRIFT, and how often the shifted
    feature changed significantly but stayed below its minimum effect."""

    shift: Shift
    n: int
    repetitions: int
    flagged: int
    below_threshold: int
    seconds: float

    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the false-alarm rate."""
        return wilson(self.flagged, self.repetitions)


def simulate_columns(
    shift: Shift,
    *,
    n: int,
    repetitions: int,
    seed: int = 0,
    mode: Literal["suite", "traffic"] = "traffic",
    settings: DriftSettings | None = None,
) -> ScaleOutcome:
    """``repetitions`` comparisons of ``n`` traces per side drawn as columns (vectorised), the
    current side shifted by ``shift`` (e.g. a 2 % latency wobble that should not alarm)."""
    import time

    from pytest_llmops.monitoring.engine import compare_columns
    from pytest_llmops.monitoring.synthetic_columns import draw_columns

    start = time.perf_counter()
    flagged = below = 0
    for rep in range(repetitions):
        generator = Generator(mode=mode, suite_seed=seed * 100_003 + rep)
        baseline = draw_columns(generator, n, seed * 1_000_003 + 2 * rep)
        current = draw_columns(generator, n, seed * 1_000_003 + 2 * rep + 1, shift)
        report = compare_columns(baseline, current, settings=settings)
        flagged += report.drifted
        below += bool(report.changed_below_threshold)
    return ScaleOutcome(shift, n, repetitions, flagged, below, time.perf_counter() - start)
