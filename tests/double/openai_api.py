"""Azure OpenAI chat completions on the lab double: auth, deployments, faults, TPM limit, SSE.

Routes: ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` and the
v1 form ``POST /openai/v1/chat/completions`` (deployment in the body's ``model``).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import openai_wire as wire
from .openai_content import complete, stable_id
from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .server import LabDouble

DEFAULT_API_KEY = "double-api-key-0000"
DEFAULT_BEARER_TOKEN = "double-bearer-token"
DEFAULT_MODEL_VERSIONS = {"gpt-4o": "gpt-4o-2024-11-20", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
# What the rate-limit headers report when no limit is configured.
NOMINAL_TOKENS_PER_MINUTE = 1_000_000


@dataclass(frozen=True)
class _Fault:
    status: int
    content_filter: bool
    retry_after: float


class OpenAIDouble:
    """State and knobs of the Azure OpenAI API (``double.openai``); ``reset()`` restores defaults.

    Knobs: ``api_key``, ``bearer_tokens``, ``deployments``, ``model_versions``, ``region``,
    ``tokens_per_minute`` (None = unlimited), ``requests_per_minute`` (None = not enforced),
    ``rate_limit_window`` (seconds, 60; shorten it to test recovery quickly),
    ``response_delay`` and ``chunk_delay`` (seconds, to simulate latency).
    """

    def __init__(self, double: LabDouble) -> None:
        self._lock: threading.RLock = double.lock
        self.reset()

    def reset(self) -> None:
        """Restore the defaults and forget faults and rate-limit history."""
        with self._lock:
            self.api_key = DEFAULT_API_KEY
            self.bearer_tokens: set[str] = {DEFAULT_BEARER_TOKEN}
            self.deployments: set[str] = {"gpt-4o"}
            self.model_versions: dict[str, str] = dict(DEFAULT_MODEL_VERSIONS)
            self.region = "Sweden Central"
            self.system_fingerprint = "fp_ee1d74bde0"
            self.tokens_per_minute: int | None = None
            self.requests_per_minute: int | None = None
            self.rate_limit_window = 60.0
            self.response_delay = 0.0
            self.chunk_delay = 0.0
            self._faults: deque[_Fault] = deque()
            self._cuts: deque[int] = deque()
            self._admitted: deque[tuple[float, int]] = deque()

    def close(self) -> None:
        """Nothing to release: the API keeps no resources outside the server."""

    def fail_next(self, status: int | str = 429, count: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``count`` chat requests with a fault instead of a completion.

        ``status``: 429 (RateLimitReached, with ``Retry-After`` and ``retry-after-ms``; a
        fractional ``retry_after`` keeps client retries fast), 500, 503, or
        ``"content_filter"`` (400 with Azure's content filter body). Faults come after the
        auth and deployment checks, like the real service's.
        """
        content_filter = status == "content_filter"
        code = 400 if content_filter else int(status)
        if code not in (400, 429, 500, 503):
            raise ValueError(f"unsupported fault status {status!r}")
        with self._lock:
            self._faults.extend(_Fault(code, content_filter, retry_after) for _ in range(count))

    def cut_next_stream(self, after_chunks: int = 3, count: int = 1) -> None:
        """Drop the connection of the next ``count`` streamed answers after ``after_chunks``
        SSE events, without the chunked encoding's last chunk: what a client sees when the
        service or a proxy cuts a stream."""
        with self._lock:
            self._cuts.extend([after_chunks] * count)

    @property
    def pending_faults(self) -> int:
        """Faults scripted with ``fail_next`` and not yet served."""
        with self._lock:
            return len(self._faults)

    def tokens_used(self) -> int:
        """Tokens charged within the current rate-limit window."""
        with self._lock:
            self._expire(time.monotonic())
            return sum(tokens for _, tokens in self._admitted)

    # -- rate limiting -----------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        while self._admitted and self._admitted[0][0] <= now - self.rate_limit_window:
            self._admitted.popleft()

    def _limits(self) -> tuple[int, int]:
        tokens = self.tokens_per_minute or NOMINAL_TOKENS_PER_MINUTE
        # Azure grants 6 requests per minute for every 1000 tokens per minute.
        requests = self.requests_per_minute or max(1, tokens * 6 // 1000)
        return tokens, requests

    def _admit(self, charge: int) -> tuple[int | None, dict[str, str]]:
        """Charge a request against the sliding window: (retry-after seconds or None, headers)."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            used = sum(tokens for _, tokens in self._admitted)
            count = len(self._admitted)
            tpm, rpm = self.tokens_per_minute, self.requests_per_minute
            over_tokens = tpm is not None and used + charge > tpm
            over_requests = rpm is not None and count + 1 > rpm
            retry_after: int | None = None
            if over_tokens or over_requests:
                retry_after = self._seconds_until_room(now, used, count, charge)
            else:
                self._admitted.append((now, charge))
                used, count = used + charge, count + 1
            token_limit, request_limit = self._limits()
            headers = {
                "x-ratelimit-limit-tokens": str(token_limit),
                "x-ratelimit-remaining-tokens": str(max(0, token_limit - used)),
                "x-ratelimit-limit-requests": str(request_limit),
                "x-ratelimit-remaining-requests": str(max(0, request_limit - count)),
            }
            return retry_after, headers

    def _seconds_until_room(self, now: float, used: int, count: int, charge: int) -> int:
        # Walk the window oldest first until enough has expired for this request to fit.
        tpm, rpm = self.tokens_per_minute, self.requests_per_minute
        fits_at = now + self.rate_limit_window
        for at, tokens in self._admitted:
            used, count = used - tokens, count - 1
            if (tpm is None or used + charge <= tpm) and (rpm is None or count + 1 <= rpm):
                fits_at = at + self.rate_limit_window
                break
        return max(1, math.ceil(fits_at - now))

    # -- the endpoint ------------------------------------------------------------------------

    def _base_headers(self, request: Request, deployment: str) -> dict[str, str]:
        headers = {
            "apim-request-id": str(uuid.uuid4()),
            "x-request-id": str(uuid.uuid4()),
            "x-ms-region": self.region,
            "x-ms-deployment-name": deployment,
            "x-ms-rai-invoked": "true",
            "x-content-type-options": "nosniff",
            "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
        }
        if "x-ms-client-request-id" in request.headers:
            headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
        return headers

    def _auth_error(self, request: Request) -> Response | None:
        key = request.headers.get("api-key")
        if key is not None:
            if key == self.api_key:
                return None
            return json_response(401, wire.azure_error("401", wire.INVALID_KEY_MESSAGE))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            if token in self.bearer_tokens:
                return None
            return json_response(401, wire.azure_error("401", wire.INVALID_TOKEN_MESSAGE))
        return json_response(401, wire.azure_error("401", wire.INVALID_KEY_MESSAGE))

    def _fault_response(self, fault: _Fault, headers: dict[str, str], api_version: str) -> Response:
        if fault.content_filter:
            return json_response(400, wire.content_filtered(), headers)
        if fault.status == 429:
            seconds = max(1, math.ceil(fault.retry_after))
            retry = {"retry-after": str(seconds), "retry-after-ms": str(int(fault.retry_after * 1000))}
            body = wire.rate_limited(headers["x-ms-deployment-name"], self.region, api_version, seconds)
            return json_response(429, body, {**headers, **retry})
        return json_response(fault.status, wire.server_error(fault.status), headers)

    def chat_completions(self, request: Request) -> Response:
        """Handle one chat completions request (either URL form)."""
        v1 = "deployment" not in request.params
        api_version = request.query.get("api-version", "v1" if v1 else "")
        if not api_version:
            return json_response(404, wire.azure_error("404", "Resource not found"))
        auth_error = self._auth_error(request)
        if auth_error is not None:
            return auth_error
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            return json_response(400, wire.openai_error(message, "invalid_request_error", None, None))
        deployment = str(body.get("model", "")) if v1 else request.params["deployment"]
        headers = self._base_headers(request, deployment)
        with self._lock:
            known = deployment in self.deployments
            fault = self._faults.popleft() if known and self._faults else None
        if not known:
            return json_response(404, wire.deployment_not_found(), headers)
        if fault is not None:
            return self._fault_response(fault, headers, api_version)
        invalid = _validate(body)
        if invalid is not None:
            return json_response(400, invalid, headers)

        completion = complete(body)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        # Azure charges the prompt plus the *requested* maximum up front, else what was produced.
        charge = completion.prompt_tokens + (
            limit if isinstance(limit, int) else completion.completion_tokens
        )
        retry_after, limit_headers = self._admit(charge)
        headers.update(limit_headers)
        if retry_after is not None:
            headers.update({"retry-after": str(retry_after), "retry-after-ms": str(retry_after * 1000)})
            body_429 = wire.rate_limited(deployment, self.region, api_version, retry_after)
            return json_response(429, body_429, headers)

        if self.response_delay:
            time.sleep(self.response_delay)
        model = self.model_versions.get(deployment, deployment)
        completion_id = "chatcmpl-" + stable_id([deployment, body], 29)
        created = int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = wire.stream_chunks(
                completion, completion_id, model, created, self.system_fingerprint, include_usage
            )
            headers.update({"content-type": "text/event-stream; charset=utf-8", "x-accel-buffering": "no"})
            with self._lock:
                cut = self._cuts.popleft() if self._cuts else None
            return Response(200, headers=headers, stream=self._sse(chunks, cut))
        payload = wire.completion_payload(completion, completion_id, model, created, self.system_fingerprint)
        return json_response(200, payload, headers)

    def _sse(self, chunks: list[dict[str, Any]], cut: int | None = None) -> Iterator[bytes]:
        for index, chunk in enumerate(chunks):
            if index == cut:
                # The server drops the connection without the terminating chunk.
                raise ConnectionResetError("stream cut by the lab double")
            if self.chunk_delay:
                time.sleep(self.chunk_delay)
            yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"


def _validate(body: dict[str, Any]) -> dict[str, Any] | None:
    """The 400 body for a malformed request, or None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return wire.openai_error(
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            "messages",
            "missing_required_parameter",
        )
    if body.get("stream_options") is not None and not body.get("stream"):
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return wire.openai_error(message, "invalid_request_error", "stream_options", None)
    return None


def register(double: LabDouble) -> OpenAIDouble:
    """Add the Azure OpenAI routes to ``double`` and return their state object."""
    api = OpenAIDouble(double)
    double.route("POST", r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions", api.chat_completions)
    double.route("POST", r"/openai/v1/chat/completions", api.chat_completions)
    double.route(
        "*", r"/openai/.*", lambda request: json_response(404, wire.azure_error("404", "Resource not found"))
    )
    return api
