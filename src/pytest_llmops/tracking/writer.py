"""Writing what finished tests leave: their runs' ends and their traces.

Per test with one LLM call that is ~15 ms of MLflow SQL-store work on SQLite (measured:
ending a run ~6.8 ms, a trace ~7.5 ms) on top of creating the run (~3.5 ms, when the test
starts). What is done here to keep it low:

- a trace is written info first, then spans (MLflow's own exporter does the reverse and
  then merges the trace info into the row the spans created: ~24 ms per trace);
- traces are written in batches (:data:`TRACE_BATCH`, and whenever the session or
  ``llmops_traces`` flushes): the spans of the whole batch in one ``log_spans`` call
  (~2.4 ms less per trace);
- a run's params, metrics and tags go in one ``log_batch``, then one status update.

Writing in a helper process was measured and dropped: the SQLite store takes one writer at
a time, so the tests' process waited for the helper's transactions when creating its next
run (SQLite's busy handler sleeps 1, 2, 5, 10 ms...) and nothing was gained; a background
thread cannot help either, the work is Python holding the GIL.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Trace

_logger = logging.getLogger(__name__)

PARAM_VALUE_LIMIT = 6000
TRACE_BATCH = 25
"""Traces kept before they are written together. A run may end in the store before its
traces do, until the next batch or flush (at the latest when the session ends)."""


@dataclass(frozen=True)
class RunFinish:
    """The end of a test's run: what to log, then the status."""

    run_id: str
    status: str
    end_time_ms: int
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


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


def finish_run(client: MlflowClient, finish: RunFinish) -> None:
    """Log a test run's params, metrics and tags in one batch, then terminate it."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    metrics = [Metric(k, float(v), finish.end_time_ms, 0) for k, v in finish.metrics.items()]
    params = [Param(k, str(v)[:PARAM_VALUE_LIMIT]) for k, v in finish.params.items()]
    tags = [RunTag(k, str(v)) for k, v in finish.tags.items()]
    try:
        client.log_batch(finish.run_id, metrics=metrics, params=params, tags=tags)
    except MlflowException:
        if not params:
            raise
        # The test logged a param of the same name itself, with another value: keep its value.
        existing = client.get_run(finish.run_id).data.params
        params = [p for p in params if p.key not in existing]
        client.log_batch(finish.run_id, metrics=metrics, params=params, tags=tags)
    client.set_terminated(finish.run_id, finish.status, end_time=finish.end_time_ms)


def _message(uri: str, what: str, exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"pytest-llmops could not write {what} to {uri}: {text}"


class _Clients:
    """An ``MlflowClient`` and a ``TracingClient`` for one URI, made when first needed."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._pair: tuple[Any, Any] | None = None

    def get(self) -> tuple[Any, Any]:
        if self._pair is None:
            from mlflow import MlflowClient
            from mlflow.tracing.client import TracingClient

            self._pair = (MlflowClient(self.uri), TracingClient(self.uri))
        return self._pair


class StoreWriter:
    """Writes runs' ends as they come and traces in batches, collecting the errors (a
    tracking failure is reported in the summary; it does not fail the tests)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.errors: list[str] = []
        self._clients = _Clients(uri)
        self._traces: list[Trace] = []

    def log_trace(self, trace: Trace) -> None:
        """Write a finished trace (with the next batch)."""
        self._traces.append(trace)
        if len(self._traces) >= TRACE_BATCH:
            self.flush()

    def finish_run(self, finish: RunFinish) -> None:
        """Write the end of a run now."""
        try:
            finish_run(self._clients.get()[0], finish)
        except Exception as exc:
            self._error(_message(self.uri, f"run {finish.run_id}", exc))

    def flush(self) -> None:
        """Write the traces kept so far."""
        traces, self._traces = self._traces, []
        if not traces:
            return
        try:
            errors = write_traces(self._clients.get()[1], traces)
        except Exception as exc:
            errors = {trace.info.trace_id: exc for trace in traces}
        for trace_id, error in errors.items():
            self._error(_message(self.uri, f"trace {trace_id}", error))

    def _error(self, message: str) -> None:
        _logger.warning(message)
        self.errors.append(message)

    def close(self) -> list[str]:
        """Flush; the errors met, as messages."""
        self.flush()
        return list(self.errors)
