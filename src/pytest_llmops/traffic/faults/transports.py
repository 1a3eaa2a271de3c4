"""The transports that serve faults: a wrapper for ``httpx2`` transports (the openai SDK
3.x's), and a respx router in front of ``httpx`` transports. Both sit above the layer vcrpy
patches, so a fault never touches the network and never reaches a cassette."""

from __future__ import annotations

import contextvars
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pytest_llmops.traffic.faults.hub import Fault, FaultHub
from pytest_llmops.traffic.faults.responses import respond
from pytest_llmops.traffic.wrapping import Wrapping


@dataclass
class FaultTransport(Wrapping):
    """Wraps an ``httpx2`` transport (sync or async): scheduled faults are answered here,
    everything else goes to ``inner`` (vcrpy's patched transport, or the network)."""

    inner: Any
    faults_hub: FaultHub
    lib: ModuleType = field(default_factory=lambda: sys.modules["httpx2"])

    def _fault(self, request: Any) -> Fault | None:
        return self.faults_hub.take(request)

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


def httpx2_wrapper(faults_hub: FaultHub) -> Any:
    def wrap(transport: Any) -> FaultTransport:
        return FaultTransport(transport, faults_hub)

    return wrap


_in_async: contextvars.ContextVar[bool] = contextvars.ContextVar("llmops_faults_async", default=False)


class RespxFaults(Wrapping):
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
            fault = faults_hub.take(request)
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


@dataclass
class _RouterTransport:
    """A respx router as a transport (not ``httpx.MockTransport``, which vcrpy patches)."""

    router: Any

    def handle_request(self, request: Any) -> Any:
        return self.router.handler(request)

    async def handle_async_request(self, request: Any) -> Any:
        return await self.router.async_handler(request)


def respx_wrapper(faults_hub: FaultHub) -> Any:
    def wrap(transport: Any) -> RespxFaults:
        return RespxFaults(transport, faults_hub)

    return wrap
