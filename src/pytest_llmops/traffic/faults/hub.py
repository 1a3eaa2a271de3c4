"""What a test schedules (:class:`Fault`), what was served (:class:`Injected`), and the
process's :class:`FaultHub` that the instrumented transports consult."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pytest

Where = Literal["prompt", "completion"]

KINDS = ("429", "500", "503", "timeout", "content_filter", "cut_stream", "connection_error")
ALIASES = {"rate_limit": "429", "server_error": "500", "unavailable": "503"}


@dataclass(frozen=True)
class Fault:
    """One scheduled fault (see :meth:`Faults.next`)."""

    kind: str
    retry_after: float = 1.0
    after_chunks: int = 3
    where: Where = "prompt"
    match: re.Pattern[str] | None = None
    shape: str = "no_message"
    code: str = "RateLimitReached"

    def matches(self, path: str) -> bool:
        return self.match is None or self.match.search(path) is not None


@dataclass(frozen=True)
class Injected:
    """A fault that was served: which one, and to which request (``retry``: the openai SDK's
    ``x-stainless-retry-count`` of that request, 0 for a first attempt; None from other clients)."""

    kind: str
    method: str
    url: str
    retry: int | None = None


@dataclass(frozen=True)
class Seen:
    """A request that reached an attached client: the fault it met (None: none), its retry
    count, its path."""

    kind: str | None
    retry: int | None
    path: str


class Schedule(Protocol):
    """What the hub asks of a test's faults (``llmops_faults``' value)."""

    def take(self, method: str, url: str, path: str, retry: int | None = None) -> Fault | None:
        """The fault for a request, removed from the schedule (None: let it through)."""


class FaultHub:
    """Per process: the faults of the test running now (None outside ``llmops_faults``)."""

    def __init__(self) -> None:
        self.active: Schedule | None = None
        self.pace: Callable[[Any], Any] | None = None
        """Puts a client's transport behind the limiter (live and record runs): what
        ``llmops_faults.attach`` wraps, so that faults are served above the pacing."""

    def take(self, request: Any) -> Fault | None:
        """The fault for an ``httpx2``/``httpx`` request, if this test scheduled one for it."""
        faults = self.active
        if faults is None:
            return None
        value = request.headers.get("x-stainless-retry-count", "")
        retry = int(value) if value.isdigit() else None
        return faults.take(request.method, str(request.url), request.url.path, retry)


hub_key = pytest.StashKey[FaultHub]()


def hub(config: pytest.Config) -> FaultHub:
    """The process's fault hub (created on first use)."""
    if hub_key not in config.stash:
        config.stash[hub_key] = FaultHub()
    return config.stash[hub_key]
