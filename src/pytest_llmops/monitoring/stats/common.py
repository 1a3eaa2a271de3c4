"""What every test returns, and when samples are too small to show anything."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy import stats

Detail = float | int | str | None
POWER_Z = 0.8416212335729143  # z for 80 % power
LARGE_EFFECT = 0.8  # Cohen's "large": warn when only effects beyond this are detectable


@dataclass
class TestResult:
    """Outcome of one two-sample test; ``p_method`` says how the p-value was computed."""

    __test__ = False  # not a pytest test class

    test: str
    p_value: float | None
    statistic: float | None
    effect: float | None
    effect_name: str
    details: dict[str, Detail] = field(default_factory=dict)
    warning: str | None = None
    p_method: str | None = None


def min_attainable_p(n: int, m: int) -> float:
    """Smallest two-sided p-value any exact permutation test can reach with samples of n and m:
    ``2 / C(n + m, n)``, in logarithms (the binomial coefficient overflows a float past
    about 1,000 per side)."""
    if n <= 0 or m <= 0:
        return 1.0
    log_comb = math.lgamma(n + m + 1) - math.lgamma(n + 1) - math.lgamma(m + 1)
    return min(1.0, math.exp(math.log(2.0) - log_comb))


def detectable_effect(n: int, m: int, alpha: float) -> float:
    """Standardised effect detectable with 80 % power (normal approximation, two-sided)."""
    if n <= 0 or m <= 0:
        return math.inf
    return float(stats.norm.ppf(1 - alpha / 2) + POWER_Z) * math.sqrt(1 / n + 1 / m)


def size_warning(n: int, m: int, alpha: float, *, p_min: float | None = None, what: str = "") -> str | None:
    """A warning when samples of n and m cannot show drift, or only very large drift."""
    p_floor = min_attainable_p(n, m) if p_min is None else p_min
    if p_floor > alpha:
        return (
            f"too few traces ({n} vs {m}){what}: the smallest reachable p-value is {p_floor:.2g} > "
            f"alpha {alpha:g}, so this test cannot detect anything"
        )
    effect = detectable_effect(n, m, alpha)
    if effect > LARGE_EFFECT:
        return (
            f"small samples ({n} vs {m}){what}: only large shifts (about {effect:.1f} standard "
            "deviations or more) are detectable with 80 % power"
        )
    return None


def as_float(value: Detail) -> float:
    """A detail as a float (NaN when it is not a number)."""
    return float(value) if isinstance(value, int | float) else math.nan


def nan_to_one(value: float) -> float:
    """A p-value scipy could not compute (NaN) is no evidence: 1."""
    return 1.0 if math.isnan(value) else value
