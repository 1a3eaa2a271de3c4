"""Writing what tests leave: their runs (see :mod:`.sqlruns`) and their traces.

A trace costs ~6 ms of MLflow SQL-store work on SQLite (one chat call: two spans, measured
over 200). What is done here to keep it low:

- a trace is written info first, then spans (MLflow's own exporter does the reverse and
  then merges the trace info into the row the spans created: ~24 ms per trace);
- traces are written in batches (:data:`TRACE_BATCH`, and whenever the session or
  ``llmops_traces`` flushes): the spans of the whole batch in one ``log_spans`` call
  (~2.4 ms less per trace);
- within a batch, MLflow's per-trace lookup of the experiment is made once per experiment
  (:class:`_SqlBatch`: it was ~40 % of ``start_trace``).

Traces go through MLflow's own ``TracingClient``: their storage (trace info, tags,
metadata, spans, analytics columns, rollups) is MLflow's and changes from release to release.

Without xdist, a helper process writes them (:mod:`.offload`), on another core. Under
xdist each worker writes its own: the workers already use the cores, and a thread would
not help (the work is Python holding the GIL).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmops.errors import TrackingError
from pytest_llmops.tracking import health
from pytest_llmops.tracking.offload import HelperGone, TraceProcess
from pytest_llmops.tracking.sqlruns import RunFinish, Runs, is_mlflow_sql_store, runs_for

if TYPE_CHECKING:
    from mlflow.entities import Run, Trace

    from pytest_llmops.secrets.records import RecordScrubber

_logger = logging.getLogger(__name__)

TRACE_BATCH = 25
"""Traces kept before they are written together. A run may end in the store before its
traces do, until the next batch or flush (at the latest when the session ends)."""


# -- the writes themselves ------------------------------------------------------------
def write_traces(tracing_client: Any, traces: Sequence[Trace]) -> dict[str, Exception]:
    """Write finished traces: each one's info (tags and metadata in one insert), then the
    spans of all of them, one ``log_spans`` call per experiment. Returns the errors by trace id.

    The reverse of MLflow's own order (spans first, which creates a bare trace row that the
    trace info then has to be merged into, row by row): ~8 ms per trace instead of ~24 ms
    on SQLite. A store without span logging gets the spans as an artifact, as MLflow does.
    """
    from mlflow.tracing.utils import add_size_stats_to_trace_metadata

    errors: dict[str, Exception] = {}
    started: dict[str, list[tuple[Trace, Any]]] = defaultdict(list)
    for trace in traces:
        try:
            add_size_stats_to_trace_metadata(trace)
            info = tracing_client.start_trace(trace.info)
        except Exception as exc:
            errors[trace.info.trace_id] = exc
        else:
            started[info.experiment_id].append((trace, info))
    for experiment_id, pairs in started.items():
        try:
            _log_spans(tracing_client, experiment_id, pairs)
        except Exception:
            for pair in pairs:  # one by one, to tell which trace failed
                try:
                    _log_spans(tracing_client, experiment_id, [pair])
                except Exception as exc:
                    errors[pair[0].info.trace_id] = exc
    return errors


def _log_spans(tracing_client: Any, experiment_id: str, pairs: Sequence[tuple[Trace, Any]]) -> None:
    from mlflow.exceptions import RestException

    try:
        tracing_client.log_spans(experiment_id, [span for trace, _ in pairs for span in trace.data.spans])
    except (NotImplementedError, RestException) as exc:
        if isinstance(exc, RestException) and "not supported" not in str(exc):
            raise
        for trace, info in pairs:
            tracing_client._upload_trace_data(info, trace.data)


class _SqlBatch:
    """What :func:`write_traces` needs of a ``TracingClient``, for one batch written to MLflow's
    own SQL store: its ``start_trace`` and ``log_spans``, on a shallow copy of the store
    whose ``get_experiment`` answers from the batch's first lookup of each experiment.

    ``start_trace`` reads the experiment for every trace (is it active, where do its
    artifacts go): ~40 % of its cost on SQLite, measured. The shared store is not touched.
    """

    def __init__(self, tracing_client: Any, store: Any) -> None:
        self._client = tracing_client
        self._store = copy.copy(store)
        lookup = store.get_experiment
        experiments: dict[str, Any] = {}

        def get_experiment(experiment_id: str) -> Any:
            key = str(experiment_id)
            if key not in experiments:
                experiments[key] = lookup(experiment_id)
            return experiments[key]

        self._store.get_experiment = get_experiment

    @classmethod
    def wrap(cls, tracing_client: Any) -> Any:
        """The batch view for MLflow's own SQL store, else ``tracing_client`` itself."""
        store = tracing_client.store
        return cls(tracing_client, store) if is_mlflow_sql_store(store) else tracing_client

    def start_trace(self, trace_info: Any) -> Any:
        return self._store.start_trace(trace_info)

    def log_spans(self, location: str, spans: list[Any]) -> Any:
        return self._store.log_spans(location, spans)

    def _upload_trace_data(self, trace_info: Any, trace_data: Any) -> None:
        self._client._upload_trace_data(trace_info, trace_data)


def _message(uri: str, what: str, exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"pytest-llmops could not write {what} to {uri}: {text}"


class _Clients:
    """The run writer and a ``TracingClient`` for one URI, made when first needed."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._pair: tuple[Runs, Any] | None = None

    def get(self) -> tuple[Runs, Any]:
        if self._pair is None:
            from mlflow import MlflowClient
            from mlflow.tracing.client import TracingClient

            self._pair = (runs_for(MlflowClient(self.uri)), TracingClient(self.uri))
        return self._pair


class StoreWriter:
    """Writes runs' ends as they come and traces in batches, collecting the errors (a
    tracking failure is reported in the summary; it does not fail the tests). Once the
    store itself fails (:func:`.health.diagnose`: full, read-only, locked, gone...), that is
    said once and nothing more is written.

    With ``offload``, traces and run ends go to a helper process (:mod:`.offload`) started
    with the first of them, once it is ready; until then, or if it cannot serve, this
    writer writes them itself.

    With ``scrubber``, every trace, run name, param and tag is scrubbed of the session's
    secrets as it is handed over, before anything is written or sent to the helper.
    """

    def __init__(self, uri: str, offload: bool = False, scrubber: RecordScrubber | None = None) -> None:
        self.uri = uri
        self._scrubber = scrubber
        self.errors: list[str] = []
        self._clients = _Clients(uri)
        self._traces: list[Trace] = []
        self._offload = offload
        self._helper: TraceProcess | None = None
        self.failure: TrackingError | None = None
        """The store failure met, if any: from then on nothing is written."""

    def log_trace(self, trace: Trace) -> None:
        """Write a finished trace (with the next batch)."""
        if self.failure is not None:
            return
        if self._scrubber is not None:
            trace = self._scrubber.trace(trace)
        helper = self._helper_process()
        if helper is not None:
            helper.send(trace)
            return
        self._traces.append(trace)
        if len(self._traces) >= TRACE_BATCH:
            self.flush()

    def create_run(self, experiment_id: str, name: str, tags: Mapping[str, str], start_time_ms: int) -> Run:
        """Create a test's run now (an error is the test's: it cannot run untracked)."""
        if self._scrubber is not None:
            name, tags = self._scrubber.text(name), self._scrubber.mapping(tags)
        return self._clients.get()[0].create(experiment_id, name, tags, start_time_ms)

    def finish_run(self, finish: RunFinish) -> None:
        """Write the end of a run now (the helper's next write, with one)."""
        if self.failure is not None:
            return
        if self._scrubber is not None:
            scrub = self._scrubber.mapping
            finish = dataclasses.replace(finish, params=scrub(finish.params), tags=scrub(finish.tags))
        helper = self._helper_process()
        if helper is not None:
            helper.send_finish(finish)
            return
        try:
            self._clients.get()[0].finish(finish)
        except Exception as exc:
            self._failed(f"run {finish.run_id}", exc)

    def flush(self) -> None:
        """Write the traces kept so far (and wait for the helper to write what it has)."""
        if self._helper is not None and self._helper.ready:
            self._ask_helper(self._helper.flush)
        traces, self._traces = self._traces, []
        if not traces or self.failure is not None:
            return
        try:
            errors = write_traces(_SqlBatch.wrap(self._clients.get()[1]), traces)
        except Exception as exc:
            errors = {trace.info.trace_id: exc for trace in traces}
        for trace_id, error in errors.items():
            self._failed(f"trace {trace_id}", error)

    def _helper_process(self) -> TraceProcess | None:
        if self._helper is None and self._offload:
            self._offload = False  # one attempt
            try:
                self._helper = TraceProcess.start(self.uri)
            except OSError as exc:
                _logger.warning("pytest-llmops: writing traces in this process (%s)", exc)
        return self._helper if self._helper is not None and self._helper.ready else None

    def _ask_helper(self, request: Callable[[], list[str]]) -> None:
        """Run a request to the helper; if it is gone, take its traces back to write here."""
        assert self._helper is not None
        try:
            for message in request():
                self._error(message)
        except HelperGone as exc:
            _logger.warning("pytest-llmops: writing traces in this process from now on: %s", exc)
            taken_back, self._helper = self._helper.take_back(), None
            for item in taken_back:
                if isinstance(item, RunFinish):
                    self.finish_run(item)
                else:
                    self._traces.append(item)

    def _failed(self, what: str, exc: Exception) -> None:
        """A write failed: the store's failure (said once), or this one write's error."""
        failure = health.diagnose(self.uri, exc)
        if failure is None:
            self._error(_message(self.uri, what, exc))
        elif self.failure is None:
            self.failure = failure
            self._error(str(failure))

    def _error(self, message: str) -> None:
        _logger.warning(message)
        self.errors.append(message)

    def close(self) -> list[str]:
        """Write everything, stop the helper; the errors met, as messages."""
        if self._helper is not None:
            if self._helper.ready:
                self._ask_helper(self._helper.close)
            else:
                self._helper.stop()  # still starting: it was handed nothing
            self._helper = None
        self.flush()
        return list(self.errors)
