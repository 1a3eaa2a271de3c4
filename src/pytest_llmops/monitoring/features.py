"""Per-trace features for drift detection.

One :class:`TraceFeatures` per trace, extracted from any of three forms:

- an ``mlflow.entities.Trace`` (duck-typed: anything with ``to_dict()`` returning the
  ``{"info": ..., "data": {"spans": [...]}}`` shape; mlflow itself is never imported here);
- that same shape as a plain dict (a trace exported with ``Trace.to_dict()`` or read from JSON);
- a flat dict, the synthetic form used by tests and benchmarks (see :func:`from_flat_dict`).

What an ``mlflow.openai.autolog()`` trace of an openai 3.x chat completion holds in MLflow 3.17
(measured; see docs/monitoring.md): one span of type ``CHAT_MODEL`` named ``Completions`` whose
JSON-encoded attributes include ``mlflow.spanInputs`` (the request: ``model`` is the Azure
*deployment*, ``messages``, ``tools``, ``stream``), ``mlflow.spanOutputs`` (the response, for
streams the aggregated completion; ``model`` is the served model version),
``mlflow.chat.tokenUsage`` (``input_tokens``/``output_tokens``/``total_tokens``) and
``mlflow.llm.model``; the trace info has ``state`` (``OK``/``ERROR``), ``execution_duration_ms``,
``request_preview``/``response_preview`` and metadata ``mlflow.sourceRun`` (the run id) and
``mlflow.trace.tokenUsage``. An error call (e.g. HTTP 500) gives ``state=ERROR``, span status
``STATUS_CODE_ERROR``, an ``exception`` event and no outputs or token usage.

Features of a trace with several LLM spans (an agent, a user's ``@mlflow.trace`` function):
token counts and tool calls are summed over the LLM spans; the completion text, finish reason,
model and deployment are those of the last LLM span; latency is the whole trace's duration.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

FeatureKind = Literal["count", "continuous", "categorical", "binary", "text"]

LLM_SPAN_TYPES = frozenset({"CHAT_MODEL", "LLM"})


@dataclass(frozen=True)
class TraceFeatures:
    """The features of one trace; ``None`` where the trace does not have the value."""

    trace_id: str
    prompt_tokens: float | None
    completion_tokens: float | None
    total_tokens: float | None
    latency_ms: float | None
    response_chars: float | None
    response_words: float | None
    tool_calls: float | None
    finish_reason: str | None
    error: bool
    model: str | None
    deployment: str | None
    prompt_text: str
    response_text: str
    key: str | None = None
    """Pairing key: a hash of the request messages. The same prompt in two runs has the same key."""
    run_id: str | None = None
    nodeid: str | None = None


@dataclass(frozen=True)
class FeatureSpec:
    """A feature that drift detection compares: its name, kind and meaning."""

    name: str
    kind: FeatureKind
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("prompt_tokens", "count", "prompt (input) tokens"),
    FeatureSpec("completion_tokens", "count", "completion (output) tokens"),
    FeatureSpec("total_tokens", "count", "total tokens"),
    FeatureSpec("latency_ms", "continuous", "trace duration in milliseconds"),
    FeatureSpec("response_chars", "count", "characters in the completion text"),
    FeatureSpec("response_words", "count", "words in the completion text"),
    FeatureSpec("tool_calls", "count", "tool calls requested by the model"),
    FeatureSpec("finish_reason", "categorical", "finish reason (stop, length, tool_calls, ...)"),
    FeatureSpec("error", "binary", "the call failed (error rate)"),
    FeatureSpec("model", "categorical", "model version that answered"),
    FeatureSpec("deployment", "categorical", "deployment (the request's model parameter)"),
    FeatureSpec("prompt_text", "text", "character n-gram profile of the prompt"),
    FeatureSpec("response_text", "text", "character n-gram profile of the completion"),
)
FEATURES_BY_NAME: dict[str, FeatureSpec] = {spec.name: spec for spec in FEATURES}


def feature_value(features: TraceFeatures, name: str) -> float | str | bool | None:
    """The value of feature ``name`` for one trace; ``None`` (or ``""`` for text) when absent."""
    value: float | str | bool | None = getattr(features, name)
    return value


def extract_features(trace: object) -> TraceFeatures:
    """Features of one trace given as an MLflow ``Trace``, its ``to_dict()`` form or a flat dict."""
    if isinstance(trace, TraceFeatures):
        return trace
    if isinstance(trace, Mapping):
        if "info" in trace and "data" in trace:
            return from_trace_dict(trace)
        return from_flat_dict(trace)
    to_dict = getattr(trace, "to_dict", None)
    if callable(to_dict):
        return from_trace_dict(to_dict())
    raise TypeError(
        f"Cannot extract drift features from {type(trace).__name__}: pass an mlflow Trace, "
        "its to_dict() form, or a flat dict (see pytest_llmops.monitoring.features.from_flat_dict)."
    )


def extract_all(traces: Iterable[object]) -> list[TraceFeatures]:
    """Features of every trace, in order."""
    return [extract_features(trace) for trace in traces]


def from_flat_dict(data: Mapping[str, Any]) -> TraceFeatures:
    """Features from the flat, synthetic form.

    Keys (all optional): ``trace_id``, ``prompt``, ``response``, ``prompt_tokens``,
    ``completion_tokens``, ``total_tokens`` (default: their sum), ``latency_ms``,
    ``finish_reason``, ``error`` (bool), ``tool_calls`` (an int or a list), ``model``,
    ``deployment``, ``key`` (pairing key, default: a hash of ``prompt``), ``run_id``, ``nodeid``.
    """
    error = bool(data.get("error", False))
    prompt = str(data.get("prompt") or "")
    response = "" if error else str(data.get("response") or "")
    prompt_tokens = _number(data.get("prompt_tokens"))
    completion_tokens = _number(data.get("completion_tokens"))
    total_tokens = _number(data.get("total_tokens"))
    if total_tokens is None and prompt_tokens is not None and completion_tokens is not None:
        total_tokens = prompt_tokens + completion_tokens
    tool_calls_value = data.get("tool_calls")
    tool_calls = (
        float(len(tool_calls_value))
        if isinstance(tool_calls_value, Sequence) and not isinstance(tool_calls_value, str)
        else _number(tool_calls_value)
    )
    if tool_calls is None and not error:
        tool_calls = 0.0
    key = data.get("key")
    return TraceFeatures(
        trace_id=str(data.get("trace_id") or ""),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=total_tokens,
        latency_ms=_number(data.get("latency_ms")),
        response_chars=None if error else float(len(response)),
        response_words=None if error else float(len(response.split())),
        tool_calls=tool_calls,
        finish_reason=None if error else _text_or_none(data.get("finish_reason")),
        error=error,
        model=_text_or_none(data.get("model")),
        deployment=_text_or_none(data.get("deployment")),
        prompt_text=prompt,
        response_text=response,
        key=str(key) if key is not None else (_hash_text(prompt) if prompt else None),
        run_id=_text_or_none(data.get("run_id")),
        nodeid=_text_or_none(data.get("nodeid")),
    )


def from_trace_dict(data: Mapping[str, Any]) -> TraceFeatures:
    """Features from an MLflow trace in its ``Trace.to_dict()`` form."""
    info: Mapping[str, Any] = data.get("info") or {}
    spans: list[Mapping[str, Any]] = list((data.get("data") or {}).get("spans") or [])
    metadata: Mapping[str, Any] = info.get("trace_metadata") or info.get("request_metadata") or {}
    tags: Mapping[str, Any] = info.get("tags") or {}
    llm_spans = sorted(
        (span for span in spans if _attribute(span, "mlflow.spanType") in LLM_SPAN_TYPES),
        key=lambda span: int(span.get("start_time_unix_nano") or 0),
    )
    calls = [_llm_call(span) for span in llm_spans]
    state = str(info.get("state") or info.get("status") or "")
    error = state in {"ERROR", "TraceStatus.ERROR"} or any(call.error for call in calls)

    prompt_tokens, completion_tokens, total_tokens = _sum_usage(calls)
    if not calls or (prompt_tokens is None and completion_tokens is None and not error):
        usage = _json_value(metadata.get("mlflow.trace.tokenUsage"))
        if isinstance(usage, Mapping):
            prompt_tokens = _number(usage.get("input_tokens"))
            completion_tokens = _number(usage.get("output_tokens"))
            total_tokens = _number(usage.get("total_tokens"))
    last = calls[-1] if calls else None
    if last is not None:
        prompt_text, response_text = last.prompt_text, last.response_text
        key = last.key
    else:
        prompt_text = str(info.get("request_preview") or "")
        response_text = "" if error else str(info.get("response_preview") or "")
        key = _hash_text(prompt_text) if prompt_text else None
    tool_calls = None if error else float(sum(call.tool_calls for call in calls))
    return TraceFeatures(
        trace_id=str(info.get("trace_id") or info.get("request_id") or ""),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=total_tokens,
        latency_ms=_latency_ms(info, spans),
        response_chars=None if error else float(len(response_text)),
        response_words=None if error else float(len(response_text.split())),
        tool_calls=tool_calls,
        finish_reason=None if error or last is None else last.finish_reason,
        error=error,
        model=last.model if last is not None else None,
        deployment=last.deployment if last is not None else None,
        prompt_text=prompt_text,
        response_text="" if error else response_text,
        key=key,
        run_id=_text_or_none(metadata.get("mlflow.sourceRun")),
        nodeid=_text_or_none(tags.get("llmops.nodeid") or metadata.get("llmops.nodeid")),
    )


@dataclass(frozen=True)
class _LLMCall:
    """What one LLM span says."""

    prompt_tokens: float | None
    completion_tokens: float | None
    total_tokens: float | None
    finish_reason: str | None
    tool_calls: int
    model: str | None
    deployment: str | None
    prompt_text: str
    response_text: str
    key: str | None
    error: bool


def _llm_call(span: Mapping[str, Any]) -> _LLMCall:
    inputs = _attribute(span, "mlflow.spanInputs")
    outputs = _attribute(span, "mlflow.spanOutputs")
    inputs = inputs if isinstance(inputs, Mapping) else {}
    outputs = outputs if isinstance(outputs, Mapping) else {}
    status = span.get("status") or {}
    status_code = str(status.get("code") if isinstance(status, Mapping) else status)
    error = status_code in {"STATUS_CODE_ERROR", "ERROR"}

    usage = _attribute(span, "mlflow.chat.tokenUsage")
    if isinstance(usage, Mapping):
        prompt_tokens = _number(usage.get("input_tokens"))
        completion_tokens = _number(usage.get("output_tokens"))
        total_tokens = _number(usage.get("total_tokens"))
    else:
        raw = outputs.get("usage")
        raw = raw if isinstance(raw, Mapping) else {}
        prompt_tokens = _number(raw.get("prompt_tokens", raw.get("input_tokens")))
        completion_tokens = _number(raw.get("completion_tokens", raw.get("output_tokens")))
        total_tokens = _number(raw.get("total_tokens"))
    if total_tokens is None and prompt_tokens is not None and completion_tokens is not None:
        total_tokens = prompt_tokens + completion_tokens

    finish_reason, response_text, tool_calls = completion_parts(outputs)
    messages = inputs.get("messages") or inputs.get("input") or []
    prompt_text = messages_text(messages)
    canonical = json.dumps(messages, sort_keys=True, default=str) if messages else ""
    model = outputs.get("model") or None
    deployment = inputs.get("model") or _attribute(span, "model")
    return _LLMCall(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=total_tokens,
        finish_reason=finish_reason,
        tool_calls=tool_calls,
        model=str(model) if model else None,
        deployment=str(deployment) if deployment else None,
        prompt_text=prompt_text,
        response_text=response_text,
        key=_hash_text(canonical) if canonical else None,
        error=error,
    )


def completion_parts(outputs: Mapping[str, Any]) -> tuple[str | None, str, int]:
    """Finish reason, text and number of tool calls of a chat completion or a Responses API reply."""
    choices = outputs.get("choices")
    if isinstance(choices, list) and choices:
        choice = choices[0] if isinstance(choices[0], Mapping) else {}
        message = choice.get("message") or {}
        content = message.get("content") if isinstance(message, Mapping) else None
        calls = message.get("tool_calls") if isinstance(message, Mapping) else None
        finish = choice.get("finish_reason")
        return (str(finish) if finish else None, _content_text(content), len(calls or []))
    output = outputs.get("output")
    if isinstance(output, list):  # Responses API
        texts: list[str] = []
        tool_calls = 0
        for item in output:
            if not isinstance(item, Mapping):
                continue
            if item.get("type") == "function_call":
                tool_calls += 1
            texts.append(_content_text(item.get("content")))
        status = outputs.get("status")
        incomplete = outputs.get("incomplete_details")
        reason = incomplete.get("reason") if isinstance(incomplete, Mapping) else None
        finish = reason or ("tool_calls" if tool_calls else status)
        return (str(finish) if finish else None, "".join(texts), tool_calls)
    return (None, "", 0)


def _content_text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                parts.append(str(part.get("text") or ""))
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)


def messages_text(messages: object) -> str:
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return ""
    lines = []
    for message in messages:
        if isinstance(message, Mapping):
            lines.append(_content_text(message.get("content")))
    return "\n".join(line for line in lines if line)


def _sum_usage(calls: Sequence[_LLMCall]) -> tuple[float | None, float | None, float | None]:
    def total(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return float(sum(present)) if present else None

    return (
        total([call.prompt_tokens for call in calls]),
        total([call.completion_tokens for call in calls]),
        total([call.total_tokens for call in calls]),
    )


def _latency_ms(info: Mapping[str, Any], spans: Sequence[Mapping[str, Any]]) -> float | None:
    duration = _number(info.get("execution_duration_ms", info.get("execution_time_ms")))
    if duration is not None:
        return duration
    roots = [span for span in spans if not span.get("parent_span_id")]
    if roots:
        start = _number(roots[0].get("start_time_unix_nano"))
        end = _number(roots[0].get("end_time_unix_nano"))
        if start is not None and end is not None:
            return (end - start) / 1e6
    return None


def _attribute(span: Mapping[str, Any], name: str) -> Any:
    """A span attribute; MLflow stores them JSON-encoded (``'"CHAT_MODEL"'``)."""
    attributes = span.get("attributes") or {}
    return _json_value(attributes.get(name)) if isinstance(attributes, Mapping) else None


def _json_value(value: object) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text_or_none(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _hash_text(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
