"""The drift fixture, ``llmops_drift``: thin, its domain imported on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_llmops.monitoring.report import DriftReport


@pytest.fixture
def llmops_drift(pytestconfig: pytest.Config) -> Callable[..., DriftReport]:
    """Compare traces for drift from a test: ``llmops_drift(baseline=None, current=None)``
    returns a ``DriftReport``. ``baseline`` defaults to ``--llmops-drift-baseline``;
    ``current`` to this session's traces so far. REFs: a run id, ``session:ID``,
    ``session:latest[@EXPERIMENT]``, or ``EXPERIMENT[:FILTER]``.

    Example::

        @pytest.mark.llmops
        def test_no_drift_since_last_release(azure_openai_client, llmops_drift):
            ...  # the calls to compare
            report = llmops_drift(baseline="session:latest@release")
            assert not report.drifted, report.to_text()
    """
    from pytest_llmops import extras, settings
    from pytest_llmops.monitoring.session import compare

    extras.require("llmops_drift", *extras.DRIFT_MODULES)

    def run(baseline: str | None = None, current: str | None = None) -> DriftReport:
        ref = baseline or settings.get(pytestconfig).drift_baseline
        if not ref:
            raise pytest.UsageError(
                "llmops_drift needs a baseline: pass llmops_drift(baseline='session:latest') or run "
                "pytest with --llmops-drift-baseline=REF"
            )
        return compare(pytestconfig, ref, current)

    return run
