"""Drift inside pytest: ``--llmops-drift-baseline=REF`` compares this session's traces with
a baseline when the session ends, and ``llmops_drift`` lets a test assert on it.

This session is ``session:<its id>``: the session runs of the MLflow tracking and their test
runs. The comparison runs once the tracking has written every trace (a wrapper around
``pytest_sessionfinish``), in the controller under xdist, and is logged to the session's
parent run. ``--llmops-fail-on-drift`` turns a drifted session's exit status from 0 into 1
(failing tests keep theirs), as does a comparison that could not run, except on a first
session with nothing before it; ``--llmops-drift-html=PATH`` writes the HTML report;
``--llmops-min-effect FEATURE=VALUE`` sets a minimum effect as ``pytest-llmops drift
--min-effect`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import extras
from pytest_llmops import session as session_mod
from pytest_llmops import settings as settings_mod
from pytest_llmops.errors import MissingExtra
from pytest_llmops.extras import DRIFT_MODULES

if TYPE_CHECKING:
    from pytest_llmops.monitoring.model import DriftSettings
    from pytest_llmops.monitoring.report import DriftReport


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
    from pytest_llmops.monitoring.mlflow_store import client_for

    client = client_for(uri)
    # Nothing earlier (a first session) is a RefError: never this session against itself.
    resolved = sources.resolve_ref(ref, client, exclude_session=session_mod.session_id(config))
    experiment = ref.partition("@")[2]
    session = resolved.runs[0].data.tags[sources.SESSION_ID_TAG]
    return f"session:{session}@{experiment}" if experiment else f"session:{session}"


def drift_settings(config: pytest.Config, *, replayed: bool) -> DriftSettings:
    """The comparison's settings: ``--llmops-min-effect``, and no latency for a replayed session."""
    from pytest_llmops.monitoring.effects import parse_min_effects
    from pytest_llmops.monitoring.features import FEATURES
    from pytest_llmops.monitoring.model import DriftSettings

    # Replayed calls take the plugin's time, not the model's: latency says nothing.
    features = tuple(spec.name for spec in FEATURES if spec.name != "latency_ms") if replayed else None
    min_effect = parse_min_effects(settings_mod.get(config).drift_min_effect)
    return DriftSettings(features=features, min_effect=min_effect)


def comparer(config: pytest.Config) -> Callable[..., DriftReport]:
    """The ``llmops_drift`` fixture's function: ``(baseline=None, current=None)`` to a report,
    ``baseline`` defaulting to ``--llmops-drift-baseline``."""
    extras.require("llmops_drift", *extras.DRIFT_MODULES)

    def run(baseline: str | None = None, current: str | None = None) -> DriftReport:
        ref = baseline or settings_mod.get(config).drift_baseline
        if not ref:
            raise pytest.UsageError(
                "llmops_drift needs a baseline: pass llmops_drift(baseline='session:latest') or run "
                "pytest with --llmops-drift-baseline=REF"
            )
        return compare(config, ref, current)

    return run


def compare(config: pytest.Config, baseline: str, current: str | None = None) -> DriftReport:
    """Compare ``baseline`` with ``current`` (default: this session so far, flushed first)."""
    from pytest_llmops.monitoring.drift import compare_refs
    from pytest_llmops.tracking import hooks

    plugin = hooks.get(config)
    plugin.flush()
    replayed = settings_mod.get(config).is_replay and current is None
    settings = drift_settings(config, replayed=replayed)
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
        self.first_session = False
        self.gate: str | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        result = yield  # the tracking has ended its runs and written every trace now
        if session_mod.is_worker(self.config):
            return result
        from pytest_llmops.monitoring.sources import NoEarlierSession

        options = settings_mod.get(self.config)
        try:
            self.report = compare(self.config, self.baseline)
            self._log_and_write(options.drift_html)
        except NoEarlierSession as error:
            self.first_session = True
            self.error = f"{type(error).__name__}: {error}"
        except Exception as error:  # the session's outcome stands; the section says what failed
            self.error = f"{type(error).__name__}: {error}"
        if options.drift_fail and session.exitstatus == pytest.ExitCode.OK:
            if self.report is not None and self.report.drifted:
                self.gate = "drift"
            elif self.error is not None and not self.first_session:
                self.gate = "no comparison"
            if self.gate is not None:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return result

    def _log_and_write(self, html_path: Path | None) -> None:
        from pytest_llmops.monitoring.mlflow_store import client_for, log_report
        from pytest_llmops.monitoring.sources import resolve_ref
        from pytest_llmops.secrets import session as secrets

        assert self.report is not None
        scrub = secrets.record_scrubber(self.config).text  # the session's secrets, as in cassettes
        html = self.report.to_html()
        if html_path is not None:
            html_path.parent.mkdir(parents=True, exist_ok=True)
            html_path.write_text(scrub(html), encoding="utf-8")
        uri = _tracking_uri(self.config)
        client = client_for(uri)
        parent = resolve_ref(current_ref(self.config), client).runs[0]
        log_report(self.report, uri, run_id=parent.info.run_id, client=client, html=html, scrub=scrub)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if session_mod.is_worker(self.config) or (self.report is None and self.error is None):
            return
        terminalreporter.write_sep("-", f"llmops: drift against {self.baseline}")
        if self.error is not None:
            terminalreporter.write_line(f"no comparison: {self.error}")
        else:
            assert self.report is not None
            for line in self.report.to_text().splitlines():
                terminalreporter.write_line(line)
            html = settings_mod.get(self.config).drift_html
            if html is not None:
                terminalreporter.write_line(f"HTML report: {html}")
        if self.gate == "drift":
            terminalreporter.write_line("exit status 1: the session drifted (--llmops-fail-on-drift)")
        elif self.gate == "no comparison":
            terminalreporter.write_line(
                "exit status 1: the drift comparison could not run (--llmops-fail-on-drift)"
            )


def check_options(config: pytest.Config) -> None:
    """Usage errors before any test runs: a bad ``--llmops-min-effect``, an unwritable
    ``--llmops-drift-html``, drift options without a baseline."""
    options = settings_mod.get(config)
    if options.drift_min_effect:
        from pytest_llmops.monitoring.effects import parse_min_effects

        try:
            parse_min_effects(options.drift_min_effect)
        except ValueError as error:
            raise pytest.UsageError(f"--llmops-min-effect: {error}") from None
    if (options.drift_fail or options.drift_html) and not options.drift_baseline:
        raise pytest.UsageError(
            "--llmops-fail-on-drift and --llmops-drift-html need a baseline: add "
            "--llmops-drift-baseline=REF (e.g. session:latest-live)."
        )
    if options.drift_html is not None and not session_mod.is_worker(config):
        from pytest_llmops.monitoring.command import check_writable

        problem = check_writable(options.drift_html)
        if problem:
            raise pytest.UsageError(
                f"--llmops-drift-html cannot be written: {problem}. Pass a writable path."
            )


def register(config: pytest.Config) -> None:
    """Add the drift section to this session when a baseline is given."""
    check_options(config)
    baseline = settings_mod.get(config).drift_baseline
    if baseline:
        try:
            extras.require("--llmops-drift-baseline", *DRIFT_MODULES, "mlflow")
        except MissingExtra as exc:
            raise pytest.UsageError(str(exc)) from None
        config.pluginmanager.register(DriftPlugin(config, baseline), "llmops-drift")
