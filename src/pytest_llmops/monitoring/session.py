"""Drift inside pytest: ``--llmops-drift-baseline=REF`` compares this session's traces with
a baseline when the session ends, and ``llmops_drift`` lets a test assert on it.

This session is ``session:<its id>``: the session runs of the MLflow tracking and their test
runs. The comparison runs once the tracking has written every trace (a wrapper around
``pytest_sessionfinish``), in the controller under xdist, and is logged to MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import session as session_mod
from pytest_llmops import settings as settings_mod

if TYPE_CHECKING:
    from pytest_llmops.monitoring.drift import DriftReport


def current_ref(config: pytest.Config) -> str:
    """The REF of this pytest session's traces."""
    return f"session:{session_mod.session_id(config)}"


def _tracking_uri(config: pytest.Config) -> str:
    from pytest_llmops.tracking import hooks

    return hooks.get(config).uri


def baseline_ref(config: pytest.Config, ref: str, uri: str) -> str:
    """``session:latest[@EXPERIMENT]`` means the latest session *before this one*: that
    session's ``session:ID[@EXPERIMENT]``."""
    if not ref.startswith("session:latest"):
        return ref
    from pytest_llmops.monitoring import sources

    client = sources.client_for(uri)
    # Nothing earlier (a first session) is a RefError: never this session against itself.
    resolved = sources.resolve_ref(ref, client, exclude_session=session_mod.session_id(config))
    experiment = ref.partition("@")[2]
    session = resolved.runs[0].data.tags[sources.SESSION_ID_TAG]
    return f"session:{session}@{experiment}" if experiment else f"session:{session}"


def compare(config: pytest.Config, baseline: str, current: str | None = None) -> DriftReport:
    """Compare ``baseline`` with ``current`` (default: this session so far, flushed first)."""
    from pytest_llmops.monitoring.drift import compare_refs
    from pytest_llmops.tracking import hooks

    plugin = hooks.get(config)
    plugin.flush()
    settings = None
    replayed = settings_mod.get(config).is_replay and current is None
    if replayed:
        # Replayed calls take the plugin's time, not the model's: latency says nothing.
        from pytest_llmops.monitoring.drift import DriftSettings
        from pytest_llmops.monitoring.features import FEATURES

        settings = DriftSettings(features=tuple(spec.name for spec in FEATURES if spec.name != "latency_ms"))
    baseline = baseline_ref(config, baseline, plugin.uri)
    report = compare_refs(baseline, current or current_ref(config), plugin.uri, settings=settings)
    if replayed:
        report.warnings.append("latency_ms not compared: this session replayed its calls from cassettes")
    return report


class DriftPlugin:
    """Registered when ``--llmops-drift-baseline`` is given."""

    def __init__(self, config: pytest.Config, baseline: str) -> None:
        self.config = config
        self.baseline = baseline
        self.report: DriftReport | None = None
        self.error: str | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        result = yield  # the tracking has ended its runs and written every trace now
        if session_mod.is_worker(self.config):
            return result
        try:
            from pytest_llmops.monitoring.sources import client_for, log_report, resolve_ref

            uri = _tracking_uri(self.config)
            self.report = compare(self.config, self.baseline)
            client = client_for(uri)
            parent = resolve_ref(current_ref(self.config), client).runs[0]
            from pytest_llmops.secrets import session as secrets

            scrub = secrets.record_scrubber(self.config).text  # the session's secrets, as in cassettes
            log_report(self.report, uri, run_id=parent.info.run_id, client=client, scrub=scrub)
        except Exception as error:  # the session's outcome stands; the section says what failed
            self.error = f"{type(error).__name__}: {error}"
        return result

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if session_mod.is_worker(self.config) or (self.report is None and self.error is None):
            return
        terminalreporter.write_sep("-", f"llmops: drift against {self.baseline}")
        if self.error is not None:
            terminalreporter.write_line(f"no comparison: {self.error}")
            return
        assert self.report is not None
        for line in self.report.to_text().splitlines():
            terminalreporter.write_line(line)


def register(config: pytest.Config) -> None:
    """Add the drift section to this session when a baseline is given."""
    baseline = settings_mod.get(config).drift_baseline
    if baseline:
        config.pluginmanager.register(DriftPlugin(config, baseline), "llmops-drift")


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

    def run(baseline: str | None = None, current: str | None = None) -> DriftReport:
        ref = baseline or settings_mod.get(pytestconfig).drift_baseline
        if not ref:
            raise pytest.UsageError(
                "llmops_drift needs a baseline: pass llmops_drift(baseline='session:latest') or run "
                "pytest with --llmops-drift-baseline=REF"
            )
        return compare(pytestconfig, ref, current)

    return run
