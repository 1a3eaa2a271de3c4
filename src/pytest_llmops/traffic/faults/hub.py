"""What a test schedules (:class:`Fault`), what was served (:class:`Injected`), and the
process's :class:`FaultHub` that the instrumented transports consult."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

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
    """A fault that was served: which one, and to which request."""

    kind: str
    method: str
    url: str


class Schedule(Protocol):
    """What the hub asks of a test's faults (``llmops_faults``' value)."""

    def take(self, method: str, url: str, path: str) -> Fault | None:
        """The fault for a request, removed from the schedule (None: let it through)."""


class FaultHub:
    """Per process: the faults of the test running now (None outside ``llmops_faults``)."""

    def __init__(self) -> None:
        self.active: Schedule | None = None

    def take(self, method: str, url: str, path: str) -> Fault | None:
        faults = self.active
        return faults.take(method, url, path) if faults is not None else None


hub_key = pytest.StashKey[FaultHub]()


def hub(config: pytest.Config) -> FaultHub:
    """The process's fault hub (created on first use)."""
    if hub_key not in config.stash:
        config.stash[hub_key] = FaultHub()
    return config.stash[hub_key]
