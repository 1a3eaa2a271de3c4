"""Fault injection: the next calls of an Azure OpenAI client fail as the real service fails.

The ``llmops_faults`` fixture schedules faults. The plugin's clients (``azure_openai_client``,
``azure_openai_async_client``) always consult it; a test hands in its own client with
``llmops_faults.attach(client)``. A fault is answered inside the client's transport, above
the layer that vcrpy patches: it never touches the network and is never written to a
cassette, in replay, live and record modes alike.

Two HTTP stacks are covered: ``httpx2`` (what the openai SDK 3.x runs on, which respx does
not see) through a transport wrapper, and ``httpx`` (``http_client=httpx.Client()``) through a
respx router put in front of the client's own transport. Both serve the same bodies and
headers, so user code meets the exception the SDK raises for the real fault:

- ``429``: 429 with ``retry-after``/``retry-after-ms`` and the ``RateLimitReached`` body ->
  ``openai.RateLimitError``;
- ``500``, ``503``: Azure's bodies -> ``openai.InternalServerError``;
- ``"content_filter"``: 400 with ``code: content_filter`` and the ``innererror`` verdict ->
  ``openai.BadRequestError``; with ``where="completion"`` a 200 whose ``finish_reason`` is
  ``content_filter`` (plain or streamed), which raises nothing;
- ``"timeout"``: the read times out -> ``openai.APITimeoutError``;
- ``"cut_stream"``: the connection drops after ``after_chunks`` SSE events -> the chunks,
  then ``openai.APIConnectionError`` from ``RemoteProtocolError`` while iterating;
- ``"connection_error"``: the connection is refused -> ``openai.APIConnectionError``.

The SDK retries 429, 5xx, timeouts and connection errors itself (``max_retries``, 2 by
default): schedule ``count=max_retries + 1`` faults, or use ``client.with_options(max_retries=0)``,
for the error to reach the code under test.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import json
import math
import re
import sys
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, TypeVar

import pytest

from pytest_llmops.cassettes.fixtures import test_passed

Where = Literal["prompt", "completion"]
ClientT = TypeVar("ClientT")

KINDS = ("429", "500", "503", "timeout", "content_filter", "cut_stream", "connection_error")
_ALIASES = {"rate_limit": "429", "server_error": "500", "unavailable": "503"}
REGION = "Sweden Central"
"""The region the fault bodies name (a lab region; the real one is only known from a real answer)."""

# -- Azure's bodies (copies of what the service sends; tests/double/openai_wire.py serves the same) --

_SAFE = {"filtered": False, "severity": "safe"}
_PROMPT_FILTER = {
    "hate": _SAFE,
    "jailbreak": {"filtered": False, "detected": False},
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
_CHUNK_FILTER = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_FILTERED = {"filtered": True, "severity": "high"}
ANSWER = "Why don't elephants use computers? Because they're afraid of the mouse!"
"""What a cut or filtered completion says before it stops."""
CUT_MESSAGE = "peer closed connection without sending complete message body (incomplete chunked read)"
# What the transports say: the sync ones pass the socket's error on, the async ones anyio's.
TIMEOUT_MESSAGE = {False: "timed out", True: ""}
REFUSED_MESSAGE = {False: "[Errno 111] Connection refused", True: "All connection attempts failed"}


def rate_limited_body(deployment: str, api_version: str, retry_after: int) -> dict[str, Any]:
    """Azure's 429 body for the tokens-per-minute limit."""
    return {
        "error": {
            "code": "RateLimitReached",
            "message": f"Your requests to {deployment} for {deployment} in {REGION} have exceeded the token "
            "rate limit for your current OpenAI S0 pricing tier. This request was for ChatCompletions_Create "
            f"under Azure OpenAI API version {api_version}. Please retry after {retry_after} seconds. "
            "To increase your default rate limit, visit: https://aka.ms/oai/quotaincrease.",
        }
    }


def server_error_body(status: int) -> dict[str, Any]:
    """Azure's 500 and 503 bodies."""
    if status == 503:
        return {
            "error": {
                "code": "ServiceUnavailable",
                "message": "The service is temporarily unable to process your request. "
                "Please try again later.",
            }
        }
    return {
        "error": {
            "message": "The server had an error processing your request. Sorry about that! You can "
            "retry your request, or contact us through an Azure support request at: "
            "https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def content_filtered_body() -> dict[str, Any]:
    """Azure's 400 when the prompt trips the content filter (violence, medium)."""
    verdict = copy.deepcopy(_PROMPT_FILTER)
    verdict["violence"] = {"filtered": True, "severity": "medium"}
    return {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry. To learn more about our content "
            "filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": verdict},
        }
    }


# -- what a test schedules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scheduled fault (see :meth:`Faults.next`)."""

    kind: str
    retry_after: float = 1.0
    after_chunks: int = 3
    where: Where = "prompt"
    match: re.Pattern[str] | None = None

    def matches(self, path: str) -> bool:
        return self.match is None or self.match.search(path) is not None


@dataclass(frozen=True)
class Injected:
    """A fault that was served: which one, and to which request."""

    kind: str
    method: str
    url: str


class FaultHub:
    """Per process: the faults of the test running now (None outside ``llmops_faults``)."""

    def __init__(self) -> None:
        self.active: Faults | None = None

    def take(self, method: str, url: str, path: str) -> Fault | None:
        faults = self.active
        return faults.take(method, url, path) if faults is not None else None


hub_key = pytest.StashKey[FaultHub]()


def hub(config: pytest.Config) -> FaultHub:
    """The process's fault hub (created on first use)."""
    if hub_key not in config.stash:
        config.stash[hub_key] = FaultHub()
    return config.stash[hub_key]


class Faults:
    """The value of ``llmops_faults``: schedule faults, attach clients, see what was served."""

    def __init__(self, faults_hub: FaultHub) -> None:
        self._hub = faults_hub
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._attached: list[tuple[Any, Any, dict[Any, Any]]] = []
        self.injected: list[Injected] = []
        """Every fault served so far, in order."""

    def next(
        self,
        fault: int | str,
        *,
        count: int = 1,
        retry_after: float = 1.0,
        after_chunks: int = 3,
        where: Where = "prompt",
        match: str | None = None,
    ) -> Faults:
        """Answer the next ``count`` requests of attached clients with ``fault``.

        ``fault``: ``429`` (``retry_after`` seconds, fractions kept in ``retry-after-ms``),
        ``500``, ``503``, ``"timeout"``, ``"content_filter"`` (``where="prompt"``: a 400;
        ``where="completion"``: a 200 whose ``finish_reason`` is ``content_filter``),
        ``"cut_stream"`` (the connection drops after ``after_chunks`` SSE events) or
        ``"connection_error"``. ``match``: a regex searched in the request path (e.g.
        ``"deployments/gpt-4o-mini/"``); other requests pass. Returns ``self`` to chain.
        """
        kind = _ALIASES.get(str(fault), str(fault))
        if kind not in KINDS:
            raise ValueError(f"llmops_faults.next({fault!r}): unknown fault. Use one of: {', '.join(KINDS)}.")
        if count < 1 or after_chunks < 0 or not (retry_after >= 0 and math.isfinite(retry_after)):
            raise ValueError(
                f"llmops_faults.next({fault!r}): count must be >= 1, after_chunks >= 0 and retry_after a "
                f"finite number of seconds >= 0 (got count={count}, after_chunks={after_chunks}, "
                f"retry_after={retry_after})."
            )
        if where not in ("prompt", "completion"):
            raise ValueError(f"llmops_faults.next(where={where!r}): use 'prompt' or 'completion'.")
        scheduled = Fault(kind, retry_after, after_chunks, where, re.compile(match) if match else None)
        with self._lock:
            self._queue.extend([scheduled] * count)
        return self

    @property
    def pending(self) -> int:
        """Scheduled faults not served yet."""
        with self._lock:
            return len(self._queue)

    def clear(self) -> None:
        """Forget the faults not served yet."""
        with self._lock:
            self._queue.clear()

    def take(self, method: str, url: str, path: str) -> Fault | None:
        """The fault for a request, removed from the schedule (None: let it through)."""
        with self._lock:
            for index, fault in enumerate(self._queue):
                if fault.matches(path):
                    del self._queue[index]
                    self.injected.append(Injected(fault.kind, method, url))
                    return fault
        return None

    def attach(self, client: ClientT) -> ClientT:
        """Serve this test's faults to ``client`` too, until the test ends; returns it.

        ``client``: an ``openai.OpenAI``/``AzureOpenAI`` (sync or async) on its default
        ``httpx2`` client or on ``http_client=httpx.Client()``, or an ``httpx2``/``httpx``
        client itself. The plugin's own clients need no attaching.
        """
        http: Any = getattr(client, "_client", client)
        lib = _library(http)
        if lib is None:
            raise TypeError(
                f"llmops_faults.attach() got {type(client).__name__}: pass an openai client, or an httpx2 or "
                "httpx Client/AsyncClient."
            )
        transport = http._transport
        if isinstance(transport, (FaultTransport, _RespxFaults)):
            return client  # already attached (the plugin's clients always are)
        mounts = dict(http._mounts)
        self._attached.append((http, transport, mounts))
        wrap = _respx_wrapper(self._hub) if lib.__name__ == "httpx" else _httpx2_wrapper(self._hub)
        http._transport = wrap(transport)
        http._mounts = {pattern: (wrap(t) if t is not None else None) for pattern, t in mounts.items()}
        return client

    def detach_all(self) -> None:
        """Give attached clients their own transports back."""
        while self._attached:
            http, transport, mounts = self._attached.pop()
            http._transport = transport
            http._mounts = mounts


@pytest.fixture
def llmops_faults(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Iterator[Faults]:
    """Make the next calls of Azure OpenAI clients fail as the real service fails, without
    the network and without anything reaching a cassette (every mode).

    The plugin's clients always see the scheduled faults; attach your own with
    ``llmops_faults.attach(client)``. Faults still scheduled when a passing test ends fail
    it at teardown (the client that should have met them was not attached).

    Example::

        def test_answer_survives_throttling(azure_openai_client, llmops_faults):
            llmops_faults.next(429, retry_after=0.05)  # the SDK retries after retry-after-ms
            assert my_app.answer(azure_openai_client, "Hello?")

        def test_app_reports_the_filter(llmops_faults):
            client = llmops_faults.attach(openai.AzureOpenAI(..., max_retries=0))
            llmops_faults.next("content_filter")
            with pytest.raises(openai.BadRequestError) as error:
                client.chat.completions.create(...)
            assert error.value.code == "content_filter"

        def test_partial_stream(azure_openai_client, llmops_faults):
            llmops_faults.next("cut_stream", after_chunks=3)
            with pytest.raises(openai.APIConnectionError):
                for chunk in azure_openai_client.chat.completions.create(..., stream=True):
                    ...
    """
    faults_hub = hub(pytestconfig)
    faults = Faults(faults_hub)
    faults_hub.active = faults
    try:
        yield faults
    finally:
        faults_hub.active = None
        faults.detach_all()
    if faults.pending and test_passed(request.node):
        kinds = ", ".join(sorted({f.kind for f in faults._queue}))
        pytest.fail(
            f"llmops_faults: {faults.pending} scheduled fault(s) ({kinds}) were never served. The client "
            "that should have met them is not attached: use azure_openai_client/azure_openai_async_client, "
            "or llmops_faults.attach(your_client) before calling it (or llmops_faults.clear() if the test "
            "does not need them).",
            pytrace=False,
        )


# -- serving a fault ----------------------------------------------------------------------------------


def _library(http: Any) -> ModuleType | None:
    """``httpx2`` or ``httpx``, whichever ``http`` is a client of."""
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None and isinstance(http, (module.Client, module.AsyncClient)):
            return module
    return None


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
        body = rate_limited_body(deployment, api_version, seconds)
        return lib.Response(429, headers=headers, content=_json(body), request=request)
    if fault.kind in ("500", "503"):
        status = int(fault.kind)
        body = server_error_body(status)
        return lib.Response(status, headers=headers, content=_json(body), request=request)
    if fault.kind == "content_filter" and fault.where == "prompt":
        return lib.Response(400, headers=headers, content=_json(content_filtered_body()), request=request)
    filtered = fault.kind == "content_filter"
    if stream:
        events = [b"data: " + _json(event) + b"\n\n" for event in _stream_events(deployment, filtered)]
        if filtered:
            events.append(b"data: [DONE]\n\n")
            cut_after = None
        else:
            cut_after = fault.after_chunks
        headers["content-type"] = "text/event-stream; charset=utf-8"
        error = lib.RemoteProtocolError(CUT_MESSAGE, request=request)
        events_stream = _stream_class(lib)(events, cut_after, error)
        return lib.Response(200, headers=headers, stream=events_stream, request=request)
    payload = _json(_completion(deployment, filtered))
    if filtered:
        return lib.Response(200, headers=headers, content=payload, request=request)
    # A cut non-streamed answer: half of the JSON body arrives, then the connection drops.
    half = [payload[: len(payload) // 2]]
    error = lib.RemoteProtocolError(CUT_MESSAGE, request=request)
    return lib.Response(200, headers=headers, stream=_stream_class(lib)(half, 1, error), request=request)


def _prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": copy.deepcopy(_PROMPT_FILTER)}]


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:29]


def _completion(deployment: str, filtered: bool) -> dict[str, Any]:
    verdict = copy.deepcopy(_CHUNK_FILTER)
    verdict.update({"protected_material_code": {"filtered": False, "detected": False},
                    "protected_material_text": {"filtered": False, "detected": False}})
    if filtered:
        verdict["violence"] = dict(_FILTERED)
    content = "" if filtered else ANSWER
    return {
        "choices": [
            {
                "content_filter_results": verdict,
                "finish_reason": "content_filter" if filtered else "stop",
                "index": 0,
                "logprobs": None,
                "message": {"annotations": [], "content": content, "refusal": None, "role": "assistant"},
            }
        ],
        "created": 0,
        "id": _completion_id(),
        "model": deployment,
        "object": "chat.completion",
        "prompt_filter_results": _prompt_filter_results(),
        "system_fingerprint": None,
        "usage": {"completion_tokens": 0 if filtered else 16, "prompt_tokens": 0, "total_tokens": 0},
    }


def _stream_events(deployment: str, filtered: bool) -> list[dict[str, Any]]:
    """Azure's stream: the prompt filter event, the role, words two by two, the finish."""
    completion_id = _completion_id()

    def event(delta: dict[str, Any], verdict: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "choices": [
                {
                    "content_filter_results": copy.deepcopy(verdict),
                    "delta": delta,
                    "finish_reason": finish,
                    "index": 0,
                    "logprobs": None,
                }
            ],
            "created": 0,
            "id": completion_id,
            "model": deployment,
            "object": "chat.completion.chunk",
            "system_fingerprint": None,
        }

    events: list[dict[str, Any]] = [
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": _prompt_filter_results(),
        },
        event({"content": "", "refusal": None, "role": "assistant"}, {}, None),
    ]
    words = re.findall(r"\s*\S+", ANSWER)
    pieces = ["".join(words[i : i + 2]) for i in range(0, len(words), 2)]
    for piece in pieces[: len(pieces) // 2] if filtered else pieces:
        events.append(event({"content": piece}, _CHUNK_FILTER, None))
    if filtered:
        verdict = copy.deepcopy(_CHUNK_FILTER)
        verdict["violence"] = dict(_FILTERED)
        events.append(event({}, verdict, "content_filter"))
    else:
        events.append(event({}, {}, "stop"))
    return events


@functools.cache
def _stream_class(lib: ModuleType) -> type:
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


# -- transports ----------------------------------------------------------------------------------------


@dataclass
class FaultTransport:
    """Wraps an ``httpx2`` transport (sync or async): scheduled faults are answered here,
    everything else goes to ``inner`` (vcrpy's patched transport, or the network)."""

    inner: Any
    faults_hub: FaultHub
    lib: ModuleType = field(default_factory=lambda: sys.modules["httpx2"])

    def _fault(self, request: Any) -> Fault | None:
        return self.faults_hub.take(request.method, str(request.url), request.url.path)

    def handle_request(self, request: Any) -> Any:
        fault = self._fault(request)
        if fault is None:
            return self.inner.handle_request(request)
        return respond(fault, request, self.lib)

    async def handle_async_request(self, request: Any) -> Any:
        fault = self._fault(request)
        if fault is None:
            return await self.inner.handle_async_request(request)
        return respond(fault, request, self.lib, asynchronous=True)

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __enter__(self) -> FaultTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)

    async def __aenter__(self) -> FaultTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.inner.__aexit__(*args)


def _httpx2_wrapper(faults_hub: FaultHub) -> Any:
    def wrap(transport: Any) -> FaultTransport:
        return FaultTransport(transport, faults_hub)

    return wrap


_in_async: contextvars.ContextVar[bool] = contextvars.ContextVar("llmops_faults_async", default=False)


class _RespxFaults:
    """For ``httpx`` clients: respx's ``TryTransport`` tries a respx router whose one route
    serves the scheduled faults (or passes the request through to the client's own transport).

    respx's own mocks patch ``httpx.MockTransport`` or httpcore, which vcrpy records or
    replays underneath; this router sits above vcrpy's patch, so faults stay off cassettes.
    """

    def __init__(self, inner: Any, faults_hub: FaultHub) -> None:
        import httpx
        import respx
        from respx.transports import TryTransport

        self.inner = inner
        self.router = respx.Router(assert_all_called=False, assert_all_mocked=False)

        def serve(request: httpx.Request) -> Any:
            fault = faults_hub.take(request.method, str(request.url), request.url.path)
            if fault is None:
                return request  # respx: pass through to the client's own transport
            return respond(fault, request, httpx, asynchronous=_in_async.get())

        self.router.route().mock(side_effect=serve)
        self._try = TryTransport([_RouterTransport(self.router), inner])  # type: ignore[list-item]

    def handle_request(self, request: Any) -> Any:
        return self._try.handle_request(request)

    async def handle_async_request(self, request: Any) -> Any:
        token = _in_async.set(True)
        try:
            return await self._try.handle_async_request(request)
        finally:
            _in_async.reset(token)

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __enter__(self) -> _RespxFaults:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)

    async def __aenter__(self) -> _RespxFaults:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.inner.__aexit__(*args)


@dataclass
class _RouterTransport:
    """A respx router as a transport (not ``httpx.MockTransport``, which vcrpy patches)."""

    router: Any

    def handle_request(self, request: Any) -> Any:
        return self.router.handler(request)

    async def handle_async_request(self, request: Any) -> Any:
        return await self.router.async_handler(request)


def _respx_wrapper(faults_hub: FaultHub) -> Any:
    def wrap(transport: Any) -> _RespxFaults:
        return _RespxFaults(transport, faults_hub)

    return wrap
