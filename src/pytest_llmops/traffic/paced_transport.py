"""The transport that paces: each request to a deployment waits for room in its limiter, is
reconciled with what the service charged, and (the plugin's clients) is sent again after a
429's Retry-After, up to ``llmops_max_429_retries`` times; after that the test fails with
:class:`~pytest_llmops.errors.RateLimitExhausted` (never a skip). Other clients get their 429
back, for their own retries, while the limiter holds every process until its Retry-After. In
replay the limiter never waits and the recording's 429s are sent again at once, so a replay
makes the requests the recording made."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pytest_llmops.errors import RateLimitExhausted
from pytest_llmops.traffic.estimate import charged, estimate
from pytest_llmops.traffic.ledger import Reservation, held_seconds
from pytest_llmops.traffic.limiter import Limiter
from pytest_llmops.traffic.pacer import Pacer, host_key
from pytest_llmops.traffic.wrapping import Wrapping

PACED = "_llmops_paced"
"""Set on a request while a :class:`PacedTransport` holds its reservation: a paced transport
beneath passes it through, so a request meets the limiter once however many wrappers it
crosses (an attribute, not a class: in-process pytester runs load this module again while
the clients they patched keep the earlier copy's wrappers)."""
_DEPLOYMENT_RE = re.compile(r"/deployments/([^/]+)/")
_AZURE_OPENAI_RE = re.compile(r"/openai/(deployments/[^/]+|v1)/")


@dataclass
class _Plan:
    limiter: Limiter
    tokens: int
    body: dict[str, Any]


class PacedTransport(Wrapping):
    """Wraps an ``httpx2`` or ``httpx`` transport (sync or async): each request to a deployment
    waits for room in its limiter and is reconciled after; a 429 holds every process until its
    Retry-After and, with ``retry_429``, is sent again here (else the client's own retries,
    the openai SDK's ``max_retries``, handle it). ``azure_only``: pace only Azure OpenAI's
    inference paths (``/openai/deployments/{name}/...``, ``/openai/v1/...``)."""

    def __init__(
        self, inner: Any, the_pacer: Pacer, *, retry_429: bool = True, azure_only: bool = False
    ) -> None:
        self.inner = inner
        self.pacer = the_pacer
        self.retry_429 = retry_429
        self.azure_only = azure_only

    def _plan(self, request: Any) -> _Plan | None:
        if getattr(request, PACED, False):
            return None  # a paced transport above holds its reservation
        url = request.url
        if self.azure_only and not _AZURE_OPENAI_RE.search(url.path):
            return None
        body: dict[str, Any] = {}
        if request.method == "POST":
            try:
                parsed = json.loads(request.content or b"{}")
            except (ValueError, UnicodeDecodeError, RuntimeError):
                parsed = {}  # not JSON, or a streamed upload: paced by its count only
            body = parsed if isinstance(parsed, dict) else {}
        found = _DEPLOYMENT_RE.search(url.path)
        deployment = found.group(1) if found else (str(body.get("model") or "") if body else "")
        if not deployment:
            return None  # not a deployment's inference call: nothing to pace
        limiter = self.pacer.limiter(host_key(url.scheme, url.host, url.port), deployment)
        return _Plan(limiter, estimate(body, self.pacer.options.completion_budget), body)

    def handle_request(self, request: Any) -> Any:
        plan = self._plan(request)
        if plan is None:
            return self.inner.handle_request(request)
        with _reserved(request):
            return self._paced(plan, request)

    def _paced(self, plan: _Plan, request: Any) -> Any:
        for attempt in itertools.count():
            reservation = plan.limiter.wait(plan.tokens)
            try:
                response = self.inner.handle_request(request)
            except BaseException:
                plan.limiter.settle(reservation, None, {})
                raise
            if response.status_code != 429 or not self.retry_429:
                return self._settled(plan, reservation, response)
            response.read()
            response.close()
            self._refused(plan, reservation, response, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def handle_async_request(self, request: Any) -> Any:
        plan = self._plan(request)
        if plan is None:
            return await self.inner.handle_async_request(request)
        with _reserved(request):
            return await self._paced_async(plan, request)

    async def _paced_async(self, plan: _Plan, request: Any) -> Any:
        for attempt in itertools.count():
            reservation = await plan.limiter.wait_async(plan.tokens)
            try:
                response = await self.inner.handle_async_request(request)
            except BaseException:
                plan.limiter.settle(reservation, None, {})
                raise
            if response.status_code != 429 or not self.retry_429:
                return self._settled(plan, reservation, response)
            await response.aread()
            await response.aclose()
            self._refused(plan, reservation, response, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, plan: _Plan, reservation: Reservation, response: Any, attempt: int) -> None:
        """A 429 this transport sends again (after its Retry-After), unless the retries are spent."""
        retries = self.pacer.options.max_retries
        plan.limiter.settle(reservation, 429, response.headers, retrying=attempt < retries)
        if attempt >= retries:
            raise self._exhausted(plan, attempt, response)

    def _settled(self, plan: _Plan, reservation: Reservation, response: Any) -> Any:
        """Settle now, or, for a JSON answer, once its body (and usage) has been read. A 429
        left to the client's own retries holds the limiter until its Retry-After."""
        status, headers = response.status_code, response.headers
        if not plan.limiter.keeps_ledger:
            return response
        content_type = headers.get("content-type", "")
        if not (200 <= status < 300 and "json" in content_type):
            plan.limiter.settle(reservation, status, headers)
            return response
        answered_at = time.time()

        def done(raw: bytes | None, encoding: str = headers.get("content-encoding", "")) -> None:
            usage = _usage(raw, encoding) if raw is not None else None
            charge = charged(plan.body, usage) if usage else None
            plan.limiter.settle(reservation, status, headers, charge, answered_at=answered_at)

        if response.is_stream_consumed:  # read already (vcrpy's recorded answers are), and decoded
            done(response.content, "")
        else:
            library = type(response).__module__.partition(".")[0]  # httpx2 or httpx
            response.stream = _sniffer_class(library)(response.stream, done)
        return response

    def _exhausted(self, plan: _Plan, attempt: int, response: Any) -> RateLimitExhausted:
        plan.limiter.exhausted()
        state = plan.limiter.snapshot()
        try:
            said = json.loads(response.content)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            said = response.text[:300]
        return RateLimitExhausted(
            f"{plan.limiter.deployment} at {plan.limiter.host} answered 429 Too Many Requests to "
            f"{attempt + 1} attempts of one request, each sent again after its Retry-After (the run "
            f"waited {held_seconds(state):.1f} s for the limit so far; limits: "
            f"{state.get('limits', 'unknown')}).\n"
            f"The service said: {said}\n"
            "Something else shares this deployment's quota, or the limits are higher than the deployment's. "
            "Lower llmops_tokens_per_minute / llmops_requests_per_minute, raise llmops_max_429_retries, "
            "or run with fewer xdist workers."
        )


@contextlib.contextmanager
def _reserved(request: Any) -> Iterator[None]:
    """Mark ``request`` as paced while the block runs (see :data:`PACED`)."""
    setattr(request, PACED, True)
    try:
        yield
    finally:
        setattr(request, PACED, False)


def _usage(raw: bytes, encoding: str) -> dict[str, Any] | None:
    """The ``usage`` object of a JSON answer (raw bytes, maybe compressed)."""
    import zlib

    try:
        if encoding.strip() in ("gzip", "deflate"):
            raw = zlib.decompress(raw, 47)  # 32 + 15: gzip or zlib header, detected
        elif encoding.strip():
            return None
        usage = json.loads(raw).get("usage")
    except (ValueError, zlib.error, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


@functools.cache
def _sniffer_class(library: str) -> type:
    """A byte stream of ``library`` (``httpx2`` or ``httpx``) that passes chunks through and
    hands the whole body (or None, if closed early) to ``done`` once."""
    import importlib

    lib: Any = importlib.import_module(library)

    class UsageSniffer(lib.SyncByteStream, lib.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, stream: Any, done: Callable[[bytes | None], None]) -> None:
            self._stream = stream
            self._done: Callable[[bytes | None], None] | None = done
            self._parts: list[bytes] = []

        def _finish(self, complete: bool) -> None:
            done, self._done = self._done, None
            if done is not None:
                done(b"".join(self._parts) if complete else None)

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._stream:
                self._parts.append(chunk)
                yield chunk
            self._finish(True)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._stream:
                self._parts.append(chunk)
                yield chunk
            self._finish(True)

        def close(self) -> None:
            self._finish(False)
            self._stream.close()

        async def aclose(self) -> None:
            self._finish(False)
            await self._stream.aclose()

    return UsageSniffer
