"""Two-sample tests and effect sizes, one module per feature kind.

Each test returns a :class:`TestResult`: the test chosen (by feature kind and sample size),
its p-value (``None`` when no test is possible or meaningful, e.g. a feature constant over
both samples) and how it was computed (exact, asymptotic, Monte Carlo, permutation), an
effect size, supplementary statistics in ``details`` and a warning when the samples are too
small for the test to detect anything. p-values are corrected across features later
(Benjamini-Hochberg, in ``decide.py``); see docs/monitoring.md for the reasoning.
"""

from pytest_llmops.monitoring.stats.categorical import (
    categorical_test,
    category_counts,
    proportion_test,
    rate_test,
)
from pytest_llmops.monitoring.stats.common import (
    TestResult,
    detectable_effect,
    min_attainable_p,
    size_warning,
)
from pytest_llmops.monitoring.stats.numeric import numeric_details, numeric_test, psi_band, signed_rank_p
from pytest_llmops.monitoring.stats.profiles import profile_test
from pytest_llmops.monitoring.stats.weighted import Weighted, psi

__all__ = [
    "TestResult",
    "Weighted",
    "categorical_test",
    "category_counts",
    "detectable_effect",
    "min_attainable_p",
    "numeric_details",
    "numeric_test",
    "profile_test",
    "proportion_test",
    "psi",
    "psi_band",
    "rate_test",
    "signed_rank_p",
    "size_warning",
]
