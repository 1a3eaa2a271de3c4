"""The pytest side of tracking: one :class:`TrackingPlugin` per pytest process.

``plugin.py`` registers it in ``pytest_configure`` (its hooks live on the object, with the
state they share: the store, the writer, the summary rows). Constructing it imports nothing
heavy; mlflow is imported by the first test that is tracked.

Per process, under xdist too:
- a tracked test (``@pytest.mark.llmops``, or a test using ``llmops_run``) gets its run from
  :meth:`TrackingPlugin.track`, used by the ``llmops_run`` fixture;
- its summary row travels on its teardown report to the controller;
- at the end, every process closes its writer; the controller (or the only process) ends the
  session's parent runs, prints the summary and writes ``--llmops-report``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import session as session_mod
from pytest_llmops import settings as settings_mod
from pytest_llmops.cassettes.fixtures import cassette_key, reports_key
from pytest_llmops.tracking import bootstrap, runs
from pytest_llmops.tracking import store as tracking_store
from pytest_llmops.tracking import uri as uri_mod
from pytest_llmops.tracking.bootstrap import quiet_mlflow
from pytest_llmops.tracking.summary import REPORT_ATTRIBUTE, Summary, TestRecord
from pytest_llmops.tracking.traces import Autolog, Collector
from pytest_llmops.validation import RunOptions, run_options

if TYPE_CHECKING:
    from mlflow.entities import Run

    from pytest_llmops.tracking.writer import StoreWriter

PLUGIN_NAME = "llmops-tracking"
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


def check_uri(settings: settings_mod.Settings) -> None:
    """A tracking URI MLflow cannot use is a usage error at start-up, said in one line."""
    uri = settings.tracking_uri
    problem = uri_mod.problem(uri) if uri else None
    if problem:
        raise pytest.UsageError(
            f"The MLflow tracking URI {uri!r} ({settings.tracking_uri_source}) {problem} "
            "Or unset it to use the embedded store .llmops/mlflow.db."
        )


def get(config: pytest.Config) -> TrackingPlugin:
    """This process's :class:`TrackingPlugin`."""
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is None:
        raise RuntimeError("pytest-llmops tracking is not configured (is the plugin disabled?)")
    return plugin  # type: ignore[no-any-return]


def is_tracked(item: pytest.Item) -> bool:
    """Whether a test runs inside its own MLflow run."""
    return item.get_closest_marker("llmops") is not None or "llmops_run" in getattr(item, "fixturenames", ())


@dataclass
class TrackedTest:
    """A test while its run is open (stashed on the item)."""

    run: Run
    collector: Collector
    experiment_id: str


tracked_key = pytest.StashKey[TrackedTest]()


class TrackingPlugin:
    """Tracking state and hooks of one pytest process."""

    def __init__(self, config: pytest.Config) -> None:
        bootstrap.prepare_environment()
        self.config = config
        self.settings = settings_mod.get(config)
        check_uri(self.settings)
        self.uri = uri_mod.resolve_uri(self.settings.tracking_uri, self.settings.rootdir)
        self.session_id = session_mod.session_id(config)
        self.worker = session_mod.worker_id(config)
        self.is_worker = session_mod.is_worker(config)
        self.default_experiment = self.settings.experiment or tracking_store.DEFAULT_EXPERIMENT
        self.autolog = Autolog()
        self.records: list[TestRecord] = []
        self.summary: Summary | None = None
        self._store: tracking_store.SessionStore | None = None
        self._writer: StoreWriter | None = None
        self._pending: dict[str, TestRecord] = {}
        self._errors: list[str] = []

    # -- lazily built state -----------------------------------------------------------
    @property
    def store(self) -> tracking_store.SessionStore:
        if self._store is None:
            state_dir = self.settings.rootdir / ".llmops" / "tracking"
            self._store = tracking_store.SessionStore(self.uri, state_dir, self.session_id, self._parent_tags)
        return self._store

    def _parent_tags(self) -> dict[str, str]:
        """Tags of the session's parent runs (computed once, when the first is created)."""
        args = " ".join(str(a) for a in self.config.invocation_params.args)
        tags = {"llmops.mode": self.settings.mode, "llmops.command": runs.clip(f"pytest {args}".strip())}
        commit = tracking_store.git_commit(str(self.settings.rootdir))
        if commit:
            tags.update({"llmops.git_commit": commit, "mlflow.source.git.commit": commit})
        return tags

    @property
    def writer(self) -> StoreWriter:
        if self._writer is None:
            from pytest_llmops.tracking import offload
            from pytest_llmops.tracking.writer import StoreWriter

            self._writer = StoreWriter(self.uri, offload=offload.wanted(self.uri, self.is_worker))
        return self._writer

    # -- one test ---------------------------------------------------------------------
    @contextlib.contextmanager
    def track(self, item: pytest.Item) -> Iterator[Run]:
        """Run ``item`` inside its own MLflow run (the body of the ``llmops_run`` fixture)."""
        from pytest_llmops.tracking import traces

        mark = item.get_closest_marker("llmops")
        options = run_options(item.nodeid, mark) if mark is not None else RunOptions()
        ref = self.store.experiment(options.experiment or self.default_experiment)
        writer = self.writer
        name = options.run_name or runs.run_name(item.nodeid)
        with quiet_mlflow():
            run = runs.activate(
                writer.create_run(ref.experiment_id, name, self._start_tags(item, ref, options), _now_ms())
            )
        collector = Collector(run.info.run_id, item.nodeid)
        item.stash[tracked_key] = TrackedTest(run, collector, ref.experiment_id)
        started = False
        try:
            with traces.capture(collector, options.autolog, self.autolog):
                started = True
                yield run
        finally:
            with quiet_mlflow():
                collector.hand_over(writer.log_trace)
            self._finish(item, options, ref.name, run, collector, "error" if not started else None)

    def _start_tags(
        self, item: pytest.Item, ref: tracking_store.ExperimentRef, options: RunOptions
    ) -> dict[str, str]:
        """Tags known when the test starts (written with the run, in one insert)."""
        tags = {
            "mlflow.parentRunId": ref.parent_run_id,
            "mlflow.source.type": "LOCAL",
            "mlflow.source.name": item.nodeid.split("::", 1)[0],
            "llmops.nodeid": item.nodeid,
            "llmops.mode": self.settings.mode,
            "llmops.worker": self.worker,
            "llmops.session_id": self.session_id,
        }
        commit = tracking_store.git_commit(str(self.settings.rootdir))
        if commit:
            tags.update({"llmops.git_commit": commit, "mlflow.source.git.commit": commit})
        tags.update({key: runs.clip(value) for key, value in (options.tags or {}).items()})
        return tags

    def _finish(
        self,
        item: pytest.Item,
        options: RunOptions,
        experiment: str,
        run: Run,
        collector: Collector,
        outcome: str | None = None,
    ) -> None:
        """Hand the run's end to the writer and keep the test's summary row."""
        from pytest_llmops.tracking.sqlruns import RunFinish

        reports = item.stash.get(reports_key, {})
        result = outcome or runs.outcome(reports)
        status = runs.STATUS_OF_OUTCOME[result]
        runs.stop(run.info.run_id, status)
        call = reports.get("call")
        duration = float(call.duration) if call is not None else 0.0
        metrics = {"llmops.duration_s": duration, **collector.stats.metrics()}
        params = {**runs.scalar_params(item), **{k: str(v) for k, v in (options.params or {}).items()}}
        tags = {"llmops.outcome": result}
        cassette = item.stash.get(cassette_key, None)
        if cassette is not None:
            tags["llmops.cassette"] = _relative(Path(cassette.path), self.settings.rootdir)
        with quiet_mlflow():
            self.writer.finish_run(RunFinish(run.info.run_id, status, _now_ms(), params, metrics, tags))
        stats = collector.stats
        self._pending[item.nodeid] = TestRecord(
            nodeid=item.nodeid,
            outcome=result,
            run_id=run.info.run_id,
            experiment=experiment,
            worker=self.worker,
            duration_s=duration,
            llm_calls=stats.llm_calls,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            total_tokens=stats.total_tokens,
            latency_ms_mean=metrics.get("llmops.latency_ms_mean"),
            latency_ms_max=metrics.get("llmops.latency_ms_max"),
        )

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

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.autolog.touched and not is_tracked(item):
            self.autolog.restore()

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
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if data is not None and not self.is_worker:
            self.records.append(TestRecord.from_dict(data))

    def _teardown_failed(self, record: TestRecord) -> None:
        from pytest_llmops.tracking.sqlruns import RunFinish

        record.outcome = "error"
        finish = RunFinish(record.run_id, "FAILED", _now_ms(), tags={"llmops.outcome": "error"})
        with quiet_mlflow():
            self.writer.finish_run(finish)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
        """Close the writer; in the controller, end the parent runs and write the report."""
        if self._writer is not None:
            with quiet_mlflow():
                errors = self._writer.close()
            if errors and self.is_worker:
                self.store.report_errors(errors)
            self._errors.extend(errors)
        if self.is_worker:
            return
        try:
            status = EXIT_STATUS.get(pytest.ExitCode(exitstatus), "FAILED")
        except ValueError:
            status = "FAILED"
        parents = self.store.finish(status, self._parent_metrics)
        summary = Summary(
            tracking_uri=self.uri,
            ui_command=uri_mod.ui_command(self.uri),
            session_id=self.session_id,
            records=self.records,
            parent_runs=[
                {
                    "experiment": ref.name,
                    "experiment_id": ref.experiment_id,
                    "parent_run_id": ref.parent_run_id,
                    "status": status,
                }
                for ref in parents
            ],
            errors=self._errors + self.store.read_errors(),
        )
        self.summary = summary
        if self.settings.report is not None:
            summary.write(self.settings.report)

    def _parent_metrics(self, experiment: str) -> dict[str, float]:
        """Totals of the tests that ran in ``experiment``, logged on its session run."""
        records = [r for r in self.records if r.experiment == experiment]
        if not records:
            return {}
        totals = Summary("", "", "", records).totals()
        metrics = {
            "llmops.tests": float(totals["tests"]),
            "llmops.llm_calls": float(totals["llm_calls"]),
            "llmops.prompt_tokens": float(totals["prompt_tokens"]),
            "llmops.completion_tokens": float(totals["completion_tokens"]),
            "llmops.total_tokens": float(totals["total_tokens"]),
        }
        for name, count in totals["outcomes"].items():
            metrics[f"llmops.{name}"] = float(count)
        return metrics

    def pytest_unconfigure(self) -> None:
        """Give the process back its openai autologging and its tracking URI."""
        self.autolog.restore()
        if self._store is not None:
            self._store.restore()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or self.summary is None or not (self.summary.records or self.summary.errors):
            return  # nothing to show: no marked test ran, nothing went wrong
        terminalreporter.write_sep("-", "llmops: MLflow runs")
        for line in self.summary.lines():
            terminalreporter.write_line(line)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _relative(path: Path, rootdir: Path) -> str:
    try:
        return str(path.resolve().relative_to(rootdir.resolve()))
    except ValueError:
        return str(path)
