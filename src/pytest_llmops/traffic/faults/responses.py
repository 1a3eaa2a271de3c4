"""Serving a fault: the response Azure OpenAI would send (or the transport error a client
would meet), built for ``httpx2`` or ``httpx``."""

from __future__ import annotations

import functools
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

from pytest_llmops.traffic.faults.bodies import (
    REGION,
    completion_body,
    content_filtered_body,
    rate_limited_body,
    server_error_body,
    stream_events,
)
from pytest_llmops.traffic.faults.hub import Fault

CUT_MESSAGE = "peer closed connection without sending complete message body (incomplete chunked read)"
# What the transports say: the sync ones pass the socket's error on, the async ones anyio's.
TIMEOUT_MESSAGE = {False: "timed out", True: ""}
REFUSED_MESSAGE = {False: "[Errno 111] Connection refused", True: "All connection attempts failed"}
MODEL_SESSION = f"d{uuid.uuid4().int % 1000:03d}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
"""The ``azureml-model-session`` header of injected answers (the model server's session)."""


def request_facts(request: Any) -> tuple[str, str, bool]:
    """(deployment, api-version, stream) of an Azure OpenAI request."""
    path = request.url.path
    found = re.search(r"/deployments/([^/]+)/", path)
    try:
        body = json.loads(request.content or b"{}")
    except (ValueError, UnicodeDecodeError, RuntimeError):
        body = {}
    body = body if isinstance(body, dict) else {}
    deployment = found.group(1) if found else str(body.get("model") or "gpt-4o")
    api_version = request.url.params.get("api-version") or "v1"
    return deployment, api_version, bool(body.get("stream"))


def _headers(request: Any, deployment: str, content_type: str = "application/json") -> dict[str, str]:
    headers = {
        "content-type": content_type,
        "apim-request-id": str(uuid.uuid4()),
        "x-request-id": str(uuid.uuid4()),
        "azureml-model-session": MODEL_SESSION,
        "x-ms-region": REGION,
        "x-ms-deployment-name": deployment,
        "x-ms-rai-invoked": "true",
        "x-content-type-options": "nosniff",
        "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
    }
    client_id = request.headers.get("x-ms-client-request-id")
    if client_id:
        headers["x-ms-client-request-id"] = client_id
    return headers


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def respond(fault: Fault, request: Any, lib: ModuleType, asynchronous: bool = False) -> Any:
    """The response (a ``lib.Response``) for ``fault``, or raise the transport error it is
    (as a sync or an async transport raises it)."""
    if fault.kind == "timeout":
        raise lib.ReadTimeout(TIMEOUT_MESSAGE[asynchronous], request=request)
    if fault.kind == "connection_error":
        raise lib.ConnectError(REFUSED_MESSAGE[asynchronous], request=request)
    deployment, api_version, stream = request_facts(request)
    headers = _headers(request, deployment)
    if fault.kind == "429":
        seconds = max(1, math.ceil(fault.retry_after))
        headers.update(
            {
                "retry-after": str(seconds),
                "retry-after-ms": str(int(fault.retry_after * 1000)),
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-remaining-tokens": "0",
            }
        )
        body = rate_limited_body(deployment, api_version, seconds, fault.code)
        return lib.Response(429, headers=headers, content=_json(body), request=request)
    if fault.kind in ("500", "503"):
        status = int(fault.kind)
        body = server_error_body(status)
        return lib.Response(status, headers=headers, content=_json(body), request=request)
    if fault.kind == "content_filter" and fault.where == "prompt":
        return lib.Response(400, headers=headers, content=_json(content_filtered_body()), request=request)
    filter_shape = fault.shape if fault.kind == "content_filter" else None
    if stream:
        events = [b"data: " + _json(event) + b"\n\n" for event in stream_events(deployment, filter_shape)]
        if filter_shape:
            events.append(b"data: [DONE]\n\n")
            cut_after = None
        else:
            cut_after = fault.after_chunks
        headers["content-type"] = "text/event-stream; charset=utf-8"
        error = lib.RemoteProtocolError(CUT_MESSAGE, request=request)
        events_stream = stream_class(lib)(events, cut_after, error)
        return lib.Response(200, headers=headers, stream=events_stream, request=request)
    payload = _json(completion_body(deployment, filter_shape))
    if filter_shape:
        return lib.Response(200, headers=headers, content=payload, request=request)
    # A cut non-streamed answer: half of the JSON body arrives, then the connection drops.
    half = [payload[: len(payload) // 2]]
    error = lib.RemoteProtocolError(CUT_MESSAGE, request=request)
    return lib.Response(200, headers=headers, stream=stream_class(lib)(half, 1, error), request=request)


@functools.cache
def stream_class(lib: ModuleType) -> type:
    """A ``lib`` byte stream that yields its chunks, then raises ``error`` if ``cut_after`` is set."""

    class CutStream(lib.SyncByteStream, lib.AsyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, chunks: list[bytes], cut_after: int | None, error: Exception) -> None:
            self.chunks = chunks if cut_after is None else chunks[:cut_after]
            self.error = error if cut_after is not None else None

        def __iter__(self) -> Iterator[bytes]:
            yield from self.chunks
            if self.error is not None:
                raise self.error

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in self.chunks:
                yield chunk
            if self.error is not None:
                raise self.error

    return CutStream
