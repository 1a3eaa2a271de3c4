"""Rows of Databricks model serving inference tables, read as flat traces.

An inference table logs each request to a serving endpoint as one row: ``request`` and
``response`` are the JSON bodies (OpenAI chat format for chat endpoints and external models
such as Azure OpenAI), with ``status_code``, the latency (``execution_time_ms`` in legacy
tables, ``execution_duration_ms`` in AI Gateway tables), the time (``timestamp_ms``, or
``request_time``), the request id and, in legacy tables, ``request_metadata`` (``endpoint_name``,
``model_name``). :func:`serving_to_flat` turns a row into the flat form that
``features.from_flat_dict`` reads; the Spark engine computes the same columns in SQL
(``spark/frames.py``), and a test checks that both agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pytest_llmops.monitoring.features import completion_parts, messages_text

SERVING_COLUMNS = frozenset({"request", "response", "status_code"})


def is_serving_row(row: Mapping[str, Any]) -> bool:
    """Whether a row has the inference-table shape (and not the flat one)."""
    return set(row) >= SERVING_COLUMNS and "prompt" not in row


def serving_to_flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """The flat trace of one inference-table row."""
    request = _json(row.get("request"))
    response = _json(row.get("response"))
    status = int(row.get("status_code") or 200)
    error = status >= 400 or not response or "error" in response
    finish, text, tool_calls = completion_parts(response) if not error else (None, "", 0)
    raw_usage = response.get("usage")
    usage: Mapping[str, Any] = raw_usage if isinstance(raw_usage, Mapping) else {}
    metadata = row.get("request_metadata") or {}
    metadata = dict(metadata) if isinstance(metadata, Mapping) else dict(metadata or [])
    deployment = metadata.get("endpoint_name") or row.get("served_entity_id") or request.get("model")
    latency = row.get("execution_time_ms")
    if latency is None:
        latency = row.get("execution_duration_ms")
    flat: dict[str, Any] = {
        "trace_id": row.get("databricks_request_id") or row.get("client_request_id") or "",
        "prompt": messages_text(request.get("messages") or []),
        "response": text,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "latency_ms": latency,
        "finish_reason": finish,
        "error": error,
        "tool_calls": None if error else tool_calls,
        "model": response.get("model") or None,
        "deployment": deployment,
    }
    timestamp = serving_timestamp_ms(row)
    if timestamp is not None:
        flat["timestamp_ms"] = timestamp
    return flat


def serving_timestamp_ms(row: Mapping[str, Any]) -> float | None:
    """``timestamp_ms``, or ``request_time`` (AI Gateway tables) in milliseconds."""
    if row.get("timestamp_ms") is not None:
        return float(row["timestamp_ms"])
    moment = row.get("request_time")
    if isinstance(moment, datetime):
        return moment.timestamp() * 1000
    return None


def _json(value: object) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str | bytes) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}
