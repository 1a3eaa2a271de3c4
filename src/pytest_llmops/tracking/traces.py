"""Traces of marked tests: ``mlflow.openai.autolog()`` while they run, every trace they make
captured, tagged, summed up into the test's metrics and written to the store.

How a trace finds its test: while a marked test runs, ``mlflow.tracing.context(tags=...)``
puts ``llmops.nodeid`` and ``llmops.run_id`` on every trace that starts (MLflow itself adds
``mlflow.sourceRun``: the test's run, or the lab's nested run inside it).

How it is written, fast and complete: MLflow's exporter writes a trace to a SQL store span
by span, then the trace, which it then has to merge into the row the spans created (~24 ms
per trace on SQLite, measured, on the test's own thread); its asynchronous mode moves that
to a thread that competes with the test for the GIL and costs ~1 s per flush. The plugin
wraps MLflow's exporter instead: a trace tagged with a running test's run is taken whole
when its root span ends (nothing left pending: that is the flush), summed into the test's
metrics from memory (no query), and handed to the session's writer when the test ends
(:mod:`pytest_llmops.tracking.writer`), which writes the trace info and then its spans,
those of several traces at once (~7.5 ms a trace). Every other trace goes to MLflow's
exporter unchanged.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities import Trace

TAG_NODEID = "llmops.nodeid"
TAG_RUN = "llmops.run_id"
LLM_SPAN_TYPES = frozenset({"CHAT_MODEL", "LLM"})
"""Span types counted as LLM calls (what ``mlflow.openai.autolog()`` makes for chat and
completions calls; embeddings and tools are not counted)."""


@dataclass
class CallStats:
    """LLM calls, tokens and latency of one test, from its traces."""

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, trace: Trace) -> None:
        """Count the LLM spans of a finished trace."""
        spans_with_usage = 0
        for span in trace.data.spans:
            if span.span_type not in LLM_SPAN_TYPES:
                continue
            self.llm_calls += 1
            if span.end_time_ns and span.start_time_ns:
                self.latencies_ms.append((span.end_time_ns - span.start_time_ns) / 1e6)
            usage = _usage(span.get_attribute("mlflow.chat.tokenUsage"))
            if usage is not None:
                spans_with_usage += 1
                self._add_usage(usage)
        if not spans_with_usage:
            usage = _usage(trace.info.token_usage)
            if usage is not None:
                self._add_usage(usage)

    def _add_usage(self, usage: dict[str, Any]) -> None:
        prompt = int(usage.get("input_tokens") or 0)
        completion = int(usage.get("output_tokens") or 0)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.total_tokens += int(usage.get("total_tokens") or prompt + completion)

    def metrics(self) -> dict[str, float]:
        """The ``llmops.*`` metrics (latency only when there was a call)."""
        metrics = {
            "llmops.llm_calls": float(self.llm_calls),
            "llmops.prompt_tokens": float(self.prompt_tokens),
            "llmops.completion_tokens": float(self.completion_tokens),
            "llmops.total_tokens": float(self.total_tokens),
        }
        if self.latencies_ms:
            metrics["llmops.latency_ms_mean"] = sum(self.latencies_ms) / len(self.latencies_ms)
            metrics["llmops.latency_ms_max"] = max(self.latencies_ms)
        return metrics


def _usage(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) and value else None


class Collector:
    """The traces of one test's run, taken whole as they finish.

    They are handed to the writer when the test ends (or when ``llmops_traces`` asks), so
    that nothing is written to the store from inside the test's cassette.
    """

    def __init__(self, run_id: str, nodeid: str) -> None:
        self.run_id = run_id
        self.nodeid = nodeid
        self.stats = CallStats()
        self.traces: list[Trace] = []
        self._pending: list[Trace] = []
        self._deferred: dict[int, Any] = {}
        self._lock = threading.Lock()

    @property
    def trace_ids(self) -> list[str]:
        return [trace.info.trace_id for trace in self.traces]

    def take(self, otel_trace_id: int) -> None:
        """Take a finished trace out of MLflow's in-memory trace manager."""
        from mlflow.tracing.trace_manager import InMemoryTraceManager

        manager = InMemoryTraceManager.get_instance()  # type: ignore[no-untyped-call]
        managed = manager.pop_trace(otel_trace_id)
        if managed is None:
            return
        trace = managed.trace
        # A trace started in a thread of the test's has no context tags (context variables
        # do not cross threads) but MLflow linked it to the run: tag it now.
        trace.info.tags.setdefault(TAG_NODEID, self.nodeid)
        trace.info.tags.setdefault(TAG_RUN, self.run_id)
        with self._lock:
            self.stats.add(trace)
            self.traces.append(trace)
            self._pending.append(trace)

    def defer(self, otel_trace_id: int, root_span: Any) -> None:
        """A root span ended while spans of its trace (other threads) are still open."""
        with self._lock:
            self._deferred[otel_trace_id] = root_span

    def take_deferred(self, force: bool = False) -> None:
        """Take deferred traces whose spans have all ended (all of them when ``force``)."""
        if not self._deferred:
            return
        from mlflow.tracing.trace_manager import InMemoryTraceManager

        manager = InMemoryTraceManager.get_instance()  # type: ignore[no-untyped-call]
        with self._lock:
            ready = [t for t in self._deferred if force or not manager.has_open_spans(t)]
            for otel_trace_id in ready:
                del self._deferred[otel_trace_id]
        for otel_trace_id in ready:
            self.take(otel_trace_id)

    def pending(self, trace_id: str) -> Trace | None:
        """The finished trace ``trace_id`` if it is not handed to the writer yet: assessments
        added to its ``info.assessments`` are written with it (MLflow's ``start_trace``)."""
        with self._lock:
            return next((t for t in self._pending if t.info.trace_id == trace_id), None)

    def hand_over(self, write: Callable[[Trace], None]) -> None:
        """Pass the traces not yet handed over to ``write``, oldest first."""
        with self._lock:
            pending, self._pending = self._pending, []
        for trace in pending:
            write(trace)


_collectors: dict[str, Collector] = {}
_collectors_lock = threading.Lock()


def register(collector: Collector) -> None:
    """Route the traces tagged with the collector's run id to it."""
    with _collectors_lock:
        _collectors[collector.run_id] = collector


def unregister(collector: Collector) -> None:
    """Stop routing; traces still deferred are taken now, whatever is still open."""
    collector.take_deferred(force=True)
    with _collectors_lock:
        _collectors.pop(collector.run_id, None)


class CapturingExporter:
    """Wraps MLflow's span exporter: spans of traces tagged with a registered test run go to
    that run's :class:`Collector`, everything else to MLflow's exporter."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def export(self, spans: Sequence[Any]) -> Any:
        from mlflow.tracing.trace_manager import InMemoryTraceManager
        from opentelemetry.sdk.trace.export import SpanExportResult

        manager = InMemoryTraceManager.get_instance()  # type: ignore[no-untyped-call]
        others = []
        for span in spans:
            collector = _owner(manager, span.context.trace_id)
            if collector is None:
                others.append(span)
            elif span.parent is None:
                if manager.has_open_spans(span.context.trace_id):
                    collector.defer(span.context.trace_id, span)
                else:
                    collector.take(span.context.trace_id)
            else:
                collector.take_deferred()
        if others:
            return self.inner.export(others)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))

    def __getattr__(self, name: str) -> Any:
        # MLflow reads its exporter's attributes (its async queue, its client) when flushing.
        return getattr(self.inner, name)


def _owner(manager: Any, otel_trace_id: int) -> Collector | None:
    if not _collectors:
        return None
    trace_id = manager.get_mlflow_trace_id_from_otel_id(otel_trace_id)
    if trace_id is None:
        return None
    with manager.get_trace(trace_id) as trace:
        if trace is None:
            return None
        run_id = trace.info.tags.get(TAG_RUN) or trace.info.trace_metadata.get("mlflow.sourceRun")
    return _collectors.get(run_id) if run_id else None


def install_exporter() -> bool:
    """Wrap the exporter of MLflow's current tracer provider (again, if MLflow replaced the
    provider, e.g. after ``mlflow.set_tracking_uri``). False when tracing is off or MLflow
    changed shape, in which case MLflow exports traces itself and metrics stay empty."""
    from mlflow.tracing import provider

    provider._get_tracer(__name__)  # initialises the tracer provider once
    processor = provider._get_span_processor()  # type: ignore[no-untyped-call]
    exporter = getattr(processor, "span_exporter", None)
    if exporter is None:
        return False
    if not isinstance(exporter, CapturingExporter):
        processor.span_exporter = CapturingExporter(exporter)
    return True


@contextlib.contextmanager
def capture(collector: Collector, autolog: bool, switch: Autolog) -> Iterator[None]:
    """While the block runs: openai autologging as the test wants it, and every trace that
    starts tagged with the test and routed to ``collector``."""
    import mlflow

    register(collector)
    try:
        install_exporter()
        switch.want(autolog)
        with mlflow.tracing.context(tags={TAG_NODEID: collector.nodeid, TAG_RUN: collector.run_id}):
            yield
    finally:
        unregister(collector)


class Autolog:
    """``mlflow.openai.autolog()`` switched per test: on for marked tests (unless
    ``autolog=False``), back to what the user had for other tests. Switching costs ~1.2 ms,
    so it happens only when the wanted state changes."""

    def __init__(self) -> None:
        self.user_enabled: bool | None = None

    def want(self, enabled: bool) -> None:
        """Make openai autologging ``enabled`` for the test about to run."""
        from mlflow.utils.autologging_utils import autologging_is_disabled, get_autologging_config

        if self.user_enabled is None:
            disabled = get_autologging_config("openai", "disable", None)  # type: ignore[no-untyped-call]
            self.user_enabled = disabled is False
        if autologging_is_disabled("openai") != enabled:  # type: ignore[no-untyped-call]
            return
        import mlflow.openai

        # disable_for_unsupported_versions must stay False: MLflow declares openai < 3, and the
        # flag would silently switch tracing off with openai 3.x (PITFALLS.md).
        mlflow.openai.autolog(disable=not enabled, disable_for_unsupported_versions=False, silent=True)

    def restore(self) -> None:
        """Back to the user's own setting (for a test that is not marked)."""
        if self.user_enabled is not None:
            self.want(self.user_enabled)

    @property
    def touched(self) -> bool:
        return self.user_enabled is not None
