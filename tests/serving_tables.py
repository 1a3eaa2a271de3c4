"""Rows of a Databricks model serving inference table (the legacy schema: request and response
JSON bodies, status code, execution time, timestamp, request id, request metadata), made from
synthetic flat traces, for the drift tests of both engines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

SCHEMA_COLUMNS = (
    "databricks_request_id",
    "client_request_id",
    "date",
    "timestamp_ms",
    "status_code",
    "execution_time_ms",
    "sampling_fraction",
    "request",
    "response",
    "request_metadata",
)


def serving_row(trace: dict[str, Any], index: int, start_ms: int = 1_764_547_200_000) -> dict[str, Any]:
    """One inference-table row for a flat synthetic trace (an Azure OpenAI external model)."""
    system, _, user = str(trace["prompt"]).partition("\n")
    request = {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": 800,
    }
    timestamp = start_ms + index * 1000
    if trace.get("error"):
        status = 500
        response: dict[str, Any] = {"error_code": "INTERNAL_ERROR", "message": "upstream 500"}
    else:
        status = 200
        tool_calls = int(trace.get("tool_calls") or 0)
        message: dict[str, Any] = {"role": "assistant", "content": trace.get("response") or None}
        if tool_calls:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
                for i in range(tool_calls)
            ]
        usage = {
            "prompt_tokens": trace["prompt_tokens"],
            "completion_tokens": trace["completion_tokens"],
            "total_tokens": trace["prompt_tokens"] + trace["completion_tokens"],
        }
        response = {
            "id": f"chatcmpl-{index}",
            "object": "chat.completion",
            "created": timestamp // 1000,
            "model": trace["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": trace["finish_reason"]}],
            "usage": usage,
        }
    return {
        "databricks_request_id": f"req-{trace['trace_id']}",
        "client_request_id": None,
        "date": datetime.fromtimestamp(timestamp / 1000, UTC).date(),
        "timestamp_ms": timestamp,
        "status_code": status,
        "execution_time_ms": round(trace["latency_ms"]),
        "sampling_fraction": 1.0,
        "request": json.dumps(request),
        "response": json.dumps(response),
        "request_metadata": {
            "model_name": "gpt-4o",
            "endpoint_name": trace["deployment"],
            "model_version": "1",
        },
    }


def write_parquet(rows: list[dict[str, Any]], path: str) -> None:
    """Write inference-table rows with the table's column types (request_metadata a map)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("databricks_request_id", pa.string()),
            ("client_request_id", pa.string()),
            ("date", pa.date32()),
            ("timestamp_ms", pa.int64()),
            ("status_code", pa.int32()),
            ("execution_time_ms", pa.int64()),
            ("sampling_fraction", pa.float64()),
            ("request", pa.string()),
            ("response", pa.string()),
            ("request_metadata", pa.map_(pa.string(), pa.string())),
        ]
    )
    prepared = [{**row, "request_metadata": list(row["request_metadata"].items())} for row in rows]
    pq.write_table(pa.Table.from_pylist(prepared, schema=schema), path)
