"""Requests, responses and the route table shared by the lab double's API modules.

Kept apart from ``server.py`` so API modules can import these types without importing the
server (which imports them to register their routes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class RecordedRequest(NamedTuple):
    """One request as the double received it, in arrival order (see ``LabDouble.requests``).

    ``path`` is the raw request target, query string included; ``headers`` has lower-case
    names so tests need not guess the client's spelling.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Request:
    """A request handed to a route handler."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str]

    def json(self) -> Any:
        """The body decoded as JSON; an empty body reads as ``{}`` (GETs, bodiless POSTs)."""
        return json.loads(self.body) if self.body.strip() else {}


@dataclass
class Response:
    """What a handler returns: a complete body, or ``stream`` for chunked transfer encoding."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterable[bytes] | None = None


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with compact separators, as the real services send."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, {"content-type": "application/json", **(headers or {})})


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """One entry of the route table: ``method`` (``*`` for any) and a full-match path regex."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """Routes in registration order; the first match wins, so catch-alls go last."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` and a path regex (named groups become params)."""
        self._routes.append(Route(method.upper(), re.compile(pattern), handler))

    def find(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler for a request and the named groups of its path, or ``None``."""
        for route in self._routes:
            if route.method not in ("*", method):
                continue
            match = route.pattern.fullmatch(path)
            if match:
                return route.handler, match.groupdict()
        return None
