"""The pytest side of tracking: one :class:`TrackingPlugin` per pytest process.

``plugin.py`` registers it in ``pytest_configure`` (its hooks live on the object, with the
state they share: the store, the writer, the summary rows). Constructing it imports nothing
heavy; mlflow is imported by the first test that is tracked.

Per process, under xdist too:
- a tracked test (``@pytest.mark.llmops``, or a test using ``llmops_run``) gets its run from
  :meth:`TrackingPlugin.track`, used by the ``llmops_run`` fixture; the run's end is written
  as soon as the report that decides the test's outcome is made (before an xdist worker
  sends it on), and completed at teardown with traces that ended later;
- a store that cannot be used is said once; tests then run untracked (see
  :meth:`TrackingPlugin._start`);
- its summary row travels on its teardown report to the controller;
- at the end, every process closes its writer; the controller (or the only process) ends the
  session's parent runs, prints the summary and writes ``--llmops-report``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import session as session_mod
from pytest_llmops import settings as settings_mod
from pytest_llmops.errors import TrackingError
from pytest_llmops.stash import reports_key, tracked_item_key
from pytest_llmops.tracking import PLUGIN_NAME, bootstrap, runs, testrun
from pytest_llmops.tracking import uri as uri_mod
from pytest_llmops.tracking.bootstrap import quiet_mlflow
from pytest_llmops.tracking.summary import (
    REPORT_ATTRIBUTE,
    UNTRACKED_ATTRIBUTE,
    Summary,
    TestRecord,
    session_metrics,
)
from pytest_llmops.tracking.testrun import TrackedTest, is_tracked, now_ms, tracked_key
from pytest_llmops.tracking.traces import Autolog, Collector
from pytest_llmops.validation import RunOptions, run_options

if TYPE_CHECKING:
    from mlflow.entities import Run

    from pytest_llmops.tracking.store import SessionStore
    from pytest_llmops.tracking.writer import StoreWriter

OWNER_KEY = "llmops_session_owner"
"""``workerinput`` key: the controller's :func:`.orphans.owner`, which owns the session."""
TRACKING_SERVER_PATHS = ("/v1/traces", "/mlflow-artifacts/")
MLFLOW_WARNINGS = r"ignore::Warning:mlflow(\.|$)"
"""MLflow's internal warnings (SQLAlchemy's deprecation warning from its store, type-hint
notices at trace start): under ``-W error`` MLflow catches them as errors and drops the trace."""

EXIT_STATUS = {
    pytest.ExitCode.OK: "FINISHED",
    pytest.ExitCode.NO_TESTS_COLLECTED: "FINISHED",
    pytest.ExitCode.TESTS_FAILED: "FAILED",
    pytest.ExitCode.INTERRUPTED: "KILLED",
    pytest.ExitCode.INTERNAL_ERROR: "FAILED",
    pytest.ExitCode.USAGE_ERROR: "FAILED",
}


def register(config: pytest.Config) -> None:
    """Register this process's :class:`TrackingPlugin` (from ``pytest_configure``)."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(TrackingPlugin(config), PLUGIN_NAME)


def get(config: pytest.Config) -> TrackingPlugin:
    """This process's :class:`TrackingPlugin`, registered now if it was not yet."""
    found: TrackingPlugin | None = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if found is None:  # a session whose collection had no tracked test (see the plugin's wiring)
        found = TrackingPlugin(config)
        config.pluginmanager.register(found, PLUGIN_NAME)
    return found


class TrackingPlugin:
    """Tracking state and hooks of one pytest process."""

    def __init__(self, config: pytest.Config) -> None:
        bootstrap.prepare_environment()
        self.config = config
        self.settings = settings_mod.get(config)
        uri_mod.check(self.settings.tracking_uri, self.settings.tracking_uri_source)
        self.uri = uri_mod.resolve_uri(self.settings.tracking_uri, self.settings.rootdir)
        self.session_id = session_mod.session_id(config)
        self.worker = session_mod.worker_id(config)
        self.is_worker = session_mod.is_worker(config)
        self.default_experiment = self.settings.experiment or testrun.DEFAULT_EXPERIMENT
        self.autolog = Autolog()
        self.records: list[TestRecord] = []
        self.summary: Summary | None = None
        self._store: SessionStore | None = None
        self._writer: StoreWriter | None = None
        self._pending: dict[str, TestRecord] = {}
        self._errors: list[str] = []
        self._untracked: dict[str, str] = {}
        """Tracked tests of this process that ran untracked, with the store's failure."""
        self.untracked = 0
        """Tracked tests that ran without their run (the store failed): counted in the
        controller, from their reports."""
        self.tracked_count = 0

    # -- lazily built state (health, orphans, the store's modules: not at plugin load) --
    @functools.cached_property
    def owner(self) -> str:
        """The session's owner (:func:`.orphans.owner`): the xdist controller, or this process."""
        from pytest_llmops.tracking import orphans

        workerinput = getattr(self.config, "workerinput", None) or {}
        return str(workerinput.get(OWNER_KEY) or orphans.owner())

    @property
    def store(self) -> SessionStore:
        if self._store is None:
            state_dir = self.settings.rootdir / ".llmops" / "tracking"
            from pytest_llmops.tracking.store import SessionStore

            self._store = SessionStore(self.uri, state_dir, self.session_id, self._parent_tags)
        return self._store

    def _parent_tags(self) -> dict[str, str]:
        """Tags of the session's parent runs (computed once, when the first is created)."""
        from pytest_llmops.secrets import session as secrets

        args = " ".join(str(a) for a in self.config.invocation_params.args)
        tags = testrun.parent_tags(f"pytest {args}".strip(), self.owner, self.settings)
        return secrets.record_scrubber(self.config).mapping(tags)

    @property
    def writer(self) -> StoreWriter:
        if self._writer is None:
            from pytest_llmops.secrets import session as secrets
            from pytest_llmops.tracking import offload
            from pytest_llmops.tracking.writer import StoreWriter

            self._writer = StoreWriter(
                self.uri,
                offload.wanted(self.uri, self.is_worker, self.tracked_count),
                scrubber=secrets.record_scrubber(self.config),  # no secret reaches the store
            )
        return self._writer

    # -- one test ---------------------------------------------------------------------
    @contextlib.contextmanager
    def track(self, item: pytest.Item) -> Iterator[Run | None]:
        """Run ``item`` inside its own MLflow run (the body of the ``llmops_run`` fixture);
        without one (None) when the store cannot be used (see :meth:`_start`)."""
        from pytest_llmops.tracking import traces

        tracked = self._start(item)
        if tracked is None:
            yield None
            return
        started = False
        try:
            with traces.capture(tracked.collector, tracked.options.autolog, self.autolog):
                started = True
                yield tracked.run
        finally:
            with quiet_mlflow():
                tracked.collector.hand_over(self.writer.log_trace)
            if tracked.outcome is None:  # no report decided it: interrupted, or capture failed
                self._end(item, tracked, item.stash.get(reports_key, {}), None if started else "error")
            elif len(tracked.collector.traces) != tracked.traces_at_end:  # traces ended since
                self._end(item, tracked, item.stash.get(reports_key, {}), tracked.outcome)
            runs.stop(tracked.run.info.run_id, runs.STATUS_OF_OUTCOME[tracked.outcome or "error"])

    def _start(self, item: pytest.Item) -> TrackedTest | None:
        """Create the test's run (and, for the session's first, the store, experiment and
        parent run). When the store cannot be used, the test runs untracked (None) and the
        failure is said once, in the summary: a store outage is not the tested code's
        fault, and a suite should not turn red, nor wait minutes per test, over it. A test
        that uses its run, traces or experiment itself (:func:`needs_tracking`), and every
        tracked test under ``--llmops-strict``, fails with the :class:`TrackingError` instead."""
        mark = item.get_closest_marker("llmops")
        options = run_options(item.nodeid, mark) if mark is not None else RunOptions()
        try:
            if self.failure is not None:
                raise self.failure
            ref = self.store.experiment(options.experiment or self.default_experiment)
            name = options.run_name or runs.run_name(item.nodeid)
            parent = ref.parent_run_id
            tags = testrun.start_tags(item, parent, options, self.settings, self.worker, self.session_id)
            with quiet_mlflow():
                run = runs.activate(self.writer.create_run(ref.experiment_id, name, tags, now_ms()))
        except TrackingError as error:
            failure = error
        except Exception as exc:
            from pytest_llmops.tracking import health

            diagnosed = health.diagnose(self.uri, exc)
            if diagnosed is None:
                raise  # this test's run (its tags...), not the store
            failure = diagnosed
            with contextlib.suppress(TrackingError), self.store.locked():
                self.store.record_failure(failure)
        else:
            collector = Collector(run.info.run_id, item.nodeid)
            tracked = TrackedTest(run, collector, ref.experiment_id, ref.name, options)
            item.stash[tracked_key] = tracked
            return tracked
        if failure.kind == "experiment" or self.settings.strict or testrun.needs_tracking(item):
            raise failure
        self._untracked[item.nodeid] = str(failure)
        return None

    @property
    def failure(self) -> TrackingError | None:
        """The tracking store's failure this process met, if any (then nothing is tracked)."""
        store_failure = self._store.failure if self._store is not None else None
        return store_failure or (self._writer.failure if self._writer is not None else None)

    def _end(
        self,
        item: pytest.Item,
        tracked: TrackedTest,
        reports: dict[str, pytest.TestReport],
        outcome: str | None = None,
    ) -> None:
        """Hand the run's end to the writer and keep the test's summary row."""
        finish, record = testrun.run_end(item, tracked, reports, outcome, self.settings.rootdir, self.worker)
        with quiet_mlflow():
            self.writer.finish_run(finish)
        self._pending[item.nodeid] = record

    def flush(self) -> None:
        """Everything handed to the writer so far is in the store once this returns."""
        if self._writer is not None:
            self._writer.flush()

    def flush_test(self, collector: Collector) -> bool:
        """Write a running test's finished traces now, unless the store is a tracking server:
        MLflow's REST client would then talk to it from inside the test's cassette (they are
        written when the test ends instead). Whether they were written."""
        collector.take_deferred()
        if uri_mod.is_server(self.uri):
            return False
        with quiet_mlflow():
            collector.hand_over(self.writer.log_trace)
            self.writer.flush()
        return True

    # -- hooks ------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Tracked tests request ``llmops_run`` first (their run wraps every other fixture),
        and ignore warnings raised inside MLflow even under ``-W error`` (a ``filterwarnings``
        mark takes precedence over ``-W``; an ini ``filterwarnings`` line does not)."""
        for item in items:
            if not isinstance(item, pytest.Function) or not is_tracked(item):
                continue
            self.tracked_count += 1
            # First, even when the test names it: set up before its cassette and torn down
            # after it, so that the run's own writes never go through the cassette.
            if "llmops_run" in item.fixturenames:
                item.fixturenames.remove("llmops_run")
            item.fixturenames.insert(0, "llmops_run")
            item.add_marker(pytest.mark.filterwarnings(MLFLOW_WARNINGS))

    def pytest_llmops_configure(self, config: pytest.Config, recorder: Any) -> None:
        """With a tracking server, its span (OTLP ``/v1/traces``) and artifact
        (``/api/2.0/mlflow-artifacts/``) endpoints are tracking traffic too, like the
        ``/api/*/mlflow/`` ones the cassettes already let through: never recorded or replayed."""
        if uri_mod.is_server(self.uri):
            sanitizer = recorder.sanitizer
            extra = tuple(p for p in TRACKING_SERVER_PATHS if p not in sanitizer.ignored_paths)
            sanitizer.ignored_paths = (*sanitizer.ignored_paths, *extra)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """xdist worker: tell the controller the session will use the store, before xdist
        tells it this worker's collection is done."""
        if self.is_worker and any(item.stash.get(tracked_item_key, False) for item in session.items):
            self.store.announce_tracked()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """xdist controller: the session's runs are ended here at session end, which needs
        mlflow; when a worker will track tests, import it now, while the workers run them."""
        if self.store.tracked_announced():
            bootstrap.start_import()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """The controller's background import of mlflow is done before the session-end hooks,
        which pytest runs under warning filters of its own (and before the process exits)."""
        try:
            return (yield)
        finally:
            bootstrap.wait_for_import()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist controller: the session's runs are owned by this process (it ends them)."""
        node.workerinput[OWNER_KEY] = self.owner

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.autolog.touched and not is_tracked(item):
            self.autolog.restore()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Write a tracked test's outcome as soon as a report decides it (its call, or a
        failed or skipped setup): an xdist worker sends the report on only after this, so
        a test seen passed has its run FINISHED in the store even if the session is killed
        the next moment (without xdist the helper process, which outlives a killed pytest,
        may still be writing it)."""
        report = yield
        tracked = item.stash.get(tracked_key, None)
        decides = report.when == "call" or (report.when == "setup" and not report.passed)
        if tracked is not None and tracked.outcome is None and decides:
            earlier: dict[str, pytest.TestReport] = item.stash.get(reports_key, {})
            self._end(item, tracked, {**earlier, report.when: report})
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Attach a tracked test's row to its teardown report (in the process that ran it),
        and collect rows (in the controller, or the only process)."""
        if report.when != "teardown":
            return
        record = self._pending.pop(report.nodeid, None)
        if record is not None:
            if report.failed and record.outcome not in ("failed", "error"):
                self._teardown_failed(record)
            setattr(report, REPORT_ATTRIBUTE, record.to_dict())
        if report.nodeid in self._untracked:  # the failure travels with the report
            setattr(report, UNTRACKED_ATTRIBUTE, self._untracked.pop(report.nodeid))
        if self.is_worker:
            return
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if data is not None:
            self.records.append(TestRecord.from_dict(data))
        failure = getattr(report, UNTRACKED_ATTRIBUTE, None)
        if failure:
            self.untracked += 1
            if failure not in self._errors:
                self._errors.append(failure)

    def _teardown_failed(self, record: TestRecord) -> None:
        from pytest_llmops.tracking.sqlruns import RunFinish

        record.outcome = "error"
        finish = RunFinish(record.run_id, "FAILED", now_ms(), tags={"llmops.outcome": "error"})
        with quiet_mlflow():
            self.writer.finish_run(finish)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
        """Close the writer; in the controller, end the parent runs and write the report.
        Whatever the store does (full, gone), the summary is made."""
        if self._writer is not None:
            try:
                with quiet_mlflow():
                    errors = self._writer.close()
            except Exception as exc:  # whatever happens, the summary is made
                errors = [self._failure_message(exc)]
            self._errors.extend(error for error in errors if error not in self._errors)
        if self.is_worker:
            if self._errors:
                with contextlib.suppress(TrackingError, OSError):
                    self.store.report_errors(self._errors)
            return
        try:
            status = EXIT_STATUS.get(pytest.ExitCode(exitstatus), "FAILED")
        except ValueError:
            status = "FAILED"
        try:
            parents = self.store.finish(status, self._session_metrics)
        except Exception as exc:
            parents = []
            self._errors.append(self._failure_message(exc))
        with contextlib.suppress(OSError):
            self._errors.extend(self.store.read_errors())
        summary = Summary(
            tracking_uri=self.uri,
            ui_command=uri_mod.ui_command(self.uri),
            session_id=self.session_id,
            records=self.records,
            parent_runs=[{**ref.as_row(), "status": status} for ref in parents],
            errors=list(dict.fromkeys(self._errors)),
            untracked=self.untracked,
        )
        self.summary = summary
        if self.settings.report is not None:
            from pytest_llmops.secrets import session as secrets

            try:
                summary.write(self.settings.report, scrub=secrets.record_scrubber(self.config).text)
            except OSError as exc:
                summary.errors.append(
                    f"pytest-llmops could not write the report {self.settings.report} ({exc}); "
                    "free space there, or give --llmops-report another path."
                )

    def _failure_message(self, exc: Exception) -> str:
        from pytest_llmops.tracking import health

        return str(health.failure(self.uri, exc))

    def _session_metrics(self, experiment: str) -> dict[str, float]:
        return session_metrics([r for r in self.records if r.experiment == experiment])

    def pytest_unconfigure(self) -> None:
        """Give the process back its openai autologging and its tracking URI."""
        self.autolog.restore()
        if self._store is not None:
            self._store.restore()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The ``llmops: MLflow runs`` section: the tracked tests, or what went wrong."""
        if self.is_worker or self.summary is None or not (self.summary.records or self.summary.errors):
            return  # nothing to show: no marked test ran, nothing went wrong
        terminalreporter.write_sep("-", "llmops: MLflow runs")
        for line in self.summary.lines():
            terminalreporter.write_line(line)
