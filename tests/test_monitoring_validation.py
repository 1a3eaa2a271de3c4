"""Calibration and power of drift detection on seeded synthetic traces (the fast version).

``benchmarks/drift_validation.py`` runs 500 repetitions of every scenario with the default
settings and prints the table of docs/monitoring.md. Here fewer repetitions and 199
permutations for the text test (its p-value stays exact, only coarser) keep this under
~15 s; the seeds are fixed, so the counts below are reproducible, not flaky.
"""

from __future__ import annotations

import pytest

from pytest_llmops.monitoring.drift import DriftSettings
from pytest_llmops.monitoring.validation import SCENARIOS, Scenario, simulate, wilson

ALPHA = 0.05
FAST = DriftSettings(alpha=ALPHA, permutations=199)


def scenario(name: str, n: int = 50) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name and s.n == n)


def test_false_alarm_rate_stays_at_or_below_alpha() -> None:
    outcomes = [
        simulate(scenario("no shift, suite"), 120, FAST, seed=11),
        simulate(scenario("no shift, traffic"), 80, FAST, seed=11),
    ]
    flagged = sum(o.flagged for o in outcomes)
    total = sum(o.repetitions for o in outcomes)
    assert flagged / total <= ALPHA, f"{flagged} false alarms in {total} comparisons"
    for outcome in outcomes:  # neither design alone is clearly above alpha
        assert wilson(outcome.flagged, outcome.repetitions)[0] < ALPHA, outcome


@pytest.mark.parametrize(
    "name", ["+20 % completion tokens, suite", "finish reason length 4 % -> 40 %, suite"]
)
def test_known_shifts_are_detected_at_least_80_percent_of_the_time(name: str) -> None:
    outcome = simulate(scenario(name), 25, FAST, seed=12)
    assert outcome.rate >= 0.8, f"detected {outcome.flagged} of 25"
    assert outcome.target_rate >= 0.7, f"the shifted feature itself flagged {outcome.target_flagged} of 25"


def test_wilson_interval() -> None:
    low, high = wilson(5, 100)
    assert low == pytest.approx(0.0215, abs=1e-3) and high == pytest.approx(0.1118, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
