"""Azure OpenAI chat completions on the lab double: auth, deployments, faults, TPM limit, SSE.

Routes: ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` and the
v1 form ``POST /openai/v1/chat/completions`` (deployment in the body's ``model``).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import openai_wire as wire
from .openai_content import Completion, complete, count_tokens, stable_id, truncate_tokens
from .openai_limits import DEFAULT_CAPACITY, REQUESTS_PER_1000_TOKENS, Limits, Window, limits_for
from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .server import LabDouble

DEFAULT_API_KEY = "double-api-key-0000"
DEFAULT_BEARER_TOKEN = "double-bearer-token"
DEFAULT_MODEL_VERSIONS = {"gpt-4o": "gpt-4o-2024-11-20", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
REGION_NAMES = {
    "eastus2": "East US 2",
    "northcentralus": "North Central US",
    "swedencentral": "Sweden Central",
    "switzerlandwest": "Switzerland West",
}
"""How ``x-ms-region`` names the lab's regions."""


@dataclass(frozen=True)
class _Fault:
    status: int
    content_filter: bool
    retry_after: float
    where: str = "prompt"
    shape: str = "no_message"
    code: str = "RateLimitReached"


class OpenAIDouble:
    """State and knobs of the Azure OpenAI API (``double.openai``); ``reset()`` restores defaults.

    Knobs: ``api_key``, ``bearer_tokens``, ``deployments``, ``model_versions``, ``region``
    (``regions`` per deployment), ``capacities`` (per deployment, thousands of tokens per
    minute; ``DEFAULT_CAPACITY`` for the others), ``requests_per_1000_tokens`` (6, gpt-4o's),
    ``tokens_per_minute`` and ``requests_per_minute`` (override every deployment's limits;
    ``tokens_per_minute`` alone enforces tokens only), ``rate_limit_window`` (seconds, 60;
    shorten it to test recovery quickly), ``rate_limit_code`` (the 429's ``error.code``),
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
            self.regions: dict[str, str] = {}
            self.capacities: dict[str, int] = {}
            self.requests_per_1000_tokens = REQUESTS_PER_1000_TOKENS
            self.system_fingerprint = "fp_ee1d74bde0"
            self.tokens_per_minute: int | None = None
            self.requests_per_minute: int | None = None
            self.rate_limit_window = 60.0
            self.rate_limit_code = "RateLimitReached"
            self.response_delay = 0.0
            self.chunk_delay = 0.0
            self.model_session = f"d{uuid.uuid4().int % 1000:03d}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
            self._faults: deque[_Fault] = deque()
            self._cuts: deque[int] = deque()
            self._windows: dict[str, Window] = {}

    def close(self) -> None:
        """Nothing to release: the API keeps no resources outside the server."""

    def add_deployment(
        self, name: str, model_version: str, capacity: int | None = None, location: str | None = None
    ) -> None:
        """Serve a deployment (what ARM does once its creation finished): its model version,
        capacity (its rate limits) and the region ``x-ms-region`` names."""
        with self._lock:
            self.deployments.add(name)
            self.model_versions[name] = model_version
            if capacity is not None:
                self.capacities[name] = capacity
            if location is not None:
                self.regions[name] = REGION_NAMES.get(location, location)

    def fail_next(
        self,
        status: int | str = 429,
        count: int = 1,
        retry_after: float = 1.0,
        *,
        where: str = "prompt",
        shape: str = "no_message",
        code: str = "RateLimitReached",
    ) -> None:
        """Answer the next ``count`` chat requests with a fault instead of a completion.

        ``status``: 429 (with ``Retry-After`` and ``retry-after-ms``; a fractional
        ``retry_after`` keeps client retries fast; ``code``: ``RateLimitReached`` or ``"429"``,
        the two bodies Azure sends), 500, 503, or ``"content_filter"``: ``where="prompt"``, a
        400 with Azure's content filter body; ``where="completion"``, a 200 whose choice the
        filter cut (``finish_reason: content_filter``), in ``shape`` (``no_message``: no
        ``message`` key, a stream's last chunk without ``delta``; ``role_only``; ``partial``).
        Faults come after the auth and deployment checks, like the real service's.
        """
        content_filter = status == "content_filter"
        code_status = 400 if content_filter else int(status)
        if code_status not in (400, 429, 500, 503):
            raise ValueError(f"unsupported fault status {status!r}")
        if where not in ("prompt", "completion") or shape not in wire.FILTER_SHAPES:
            raise ValueError(f"unsupported where={where!r} or shape={shape!r}")
        if code not in wire.RATE_LIMIT_CODES:
            raise ValueError(f"unsupported 429 code {code!r}: use one of {wire.RATE_LIMIT_CODES}")
        fault = _Fault(code_status, content_filter, retry_after, where, shape, code)
        with self._lock:
            self._faults.extend([fault] * count)

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

    def tokens_used(self, deployment: str | None = None) -> int:
        """Tokens charged within the current rate-limit window (of one deployment, or all)."""
        with self._lock:
            now = time.monotonic()
            windows = [w for name, w in self._windows.items() if deployment in (None, name)]
            for window in windows:
                window.expire(now, self.rate_limit_window)
            return sum(window.used for window in windows)

    # -- rate limiting -----------------------------------------------------------------------

    def limits(self, deployment: str) -> Limits:
        """The limits of ``deployment`` now (its capacity's, or the overrides')."""
        with self._lock:
            capacity = self.capacities.get(deployment, DEFAULT_CAPACITY)
            return limits_for(
                capacity, self.requests_per_1000_tokens, self.tokens_per_minute, self.requests_per_minute
            )

    def _window(self, deployment: str) -> Window:
        return self._windows.setdefault(deployment, Window())

    def _admit(self, deployment: str, charge: int) -> tuple[int | None, dict[str, str]]:
        """Charge a request against its deployment's window: (retry-after seconds or None, headers)."""
        now = time.monotonic()
        with self._lock:
            limits, window = self.limits(deployment), self._window(deployment)
            retry_after = window.admit(now, charge, limits, self.rate_limit_window)
            return retry_after, window.headers(now, limits, self.rate_limit_window, retry_after)

    def _limit_headers(self, deployment: str) -> dict[str, str]:
        """The rate-limit headers of an answer that charged nothing."""
        with self._lock:
            window = self._window(deployment)
            return window.headers(time.monotonic(), self.limits(deployment), self.rate_limit_window)

    # -- the endpoint ------------------------------------------------------------------------

    def _base_headers(self, request: Request, deployment: str) -> dict[str, str]:
        headers = {
            "apim-request-id": str(uuid.uuid4()),
            "azureml-model-session": self.model_session,
            "x-request-id": str(uuid.uuid4()),
            "x-ms-region": self.regions.get(deployment, self.region),
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
        deployment = headers["x-ms-deployment-name"]
        headers.update(self._limit_headers(deployment))
        if fault.content_filter:
            return json_response(400, wire.content_filtered(), headers)
        if fault.status == 429:
            seconds = max(1, math.ceil(fault.retry_after))
            retry = {"retry-after": str(seconds), "retry-after-ms": str(int(fault.retry_after * 1000))}
            body = wire.rate_limited(deployment, headers["x-ms-region"], api_version, seconds, fault.code)
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
        filter_shape = None
        if fault is not None and fault.content_filter and fault.where == "completion":
            filter_shape = fault.shape  # answered, then cut by the filter: charged like any answer
        elif fault is not None:
            return self._fault_response(fault, headers, api_version)
        invalid = _validate(body, api_version)
        if invalid is not None:
            return json_response(400, invalid, headers)

        completion = complete(body)
        if filter_shape is not None:
            completion = _cut_by_the_filter(completion)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        # Azure charges the prompt plus the *requested* maximum up front, else what was produced.
        charge = completion.prompt_tokens + (
            limit if isinstance(limit, int) else completion.completion_tokens
        )
        retry_after, limit_headers = self._admit(deployment, charge)
        headers.update(limit_headers)
        if retry_after is not None:
            headers.update({"retry-after": str(retry_after), "retry-after-ms": str(retry_after * 1000)})
            region = headers["x-ms-region"]
            body_429 = wire.rate_limited(deployment, region, api_version, retry_after, self.rate_limit_code)
            return json_response(429, body_429, headers)

        if self.response_delay:
            time.sleep(self.response_delay)
        model = self.model_versions.get(deployment, deployment)
        completion_id = "chatcmpl-" + stable_id([deployment, body], 29)
        created = int(time.time())
        fingerprint = self.system_fingerprint
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = wire.stream_chunks(
                completion, completion_id, model, created, fingerprint, include_usage, filter_shape
            )
            headers.update({"content-type": "text/event-stream; charset=utf-8", "x-accel-buffering": "no"})
            with self._lock:
                cut = self._cuts.popleft() if self._cuts else None
            return Response(200, headers=headers, stream=self._sse(chunks, cut))
        payload = wire.completion_payload(completion, completion_id, model, created, fingerprint, filter_shape)
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


def _cut_by_the_filter(completion: Completion) -> Completion:
    """The answer as the content filter leaves it: the first half of its text, no tool calls."""
    text = truncate_tokens(completion.content or "", completion.completion_tokens // 2)
    return Completion(text, "content_filter", completion.prompt_tokens, count_tokens(text))


def _validate(body: dict[str, Any], api_version: str) -> dict[str, Any] | None:
    """The 400 body for a malformed request (or one its API version cannot take), or None."""
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
    response_format = body.get("response_format")
    structured = isinstance(response_format, dict) and response_format.get("type") == "json_schema"
    if structured and not _accepts_structured_outputs(api_version):
        return wire.structured_outputs_too_early()
    return None


def _accepts_structured_outputs(api_version: str) -> bool:
    """Dated API versions before 2024-08-01(-preview) refuse ``json_schema``; ``v1``,
    ``latest`` and ``preview`` are the current API."""
    head = api_version[:10]
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", head):
        return True
    return head >= wire.STRUCTURED_OUTPUTS_SINCE[:10]


def register(double: LabDouble) -> OpenAIDouble:
    """Add the Azure OpenAI routes to ``double`` and return their state object."""
    api = OpenAIDouble(double)
    double.route("POST", r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions", api.chat_completions)
    double.route("POST", r"/openai/v1/chat/completions", api.chat_completions)
    double.route(
        "*", r"/openai/.*", lambda request: json_response(404, wire.azure_error("404", "Resource not found"))
    )
    return api
