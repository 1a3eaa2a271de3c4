"""The value of ``llmops_faults``: schedule faults, attach clients, see what was served."""

from __future__ import annotations

import math
import re
import sys
import threading
from collections import deque
from types import ModuleType
from typing import Any, TypeVar

from pytest_llmops.traffic.faults.bodies import FILTER_SHAPES, RATE_LIMIT_CODES
from pytest_llmops.traffic.faults.hub import ALIASES, KINDS, Fault, FaultHub, Injected, Seen, Where
from pytest_llmops.traffic.faults.transports import httpx2_wrapper, respx_wrapper

ClientT = TypeVar("ClientT")


class Faults:
    """The value of ``llmops_faults``: schedule faults, attach clients, see what was served."""

    def __init__(self, faults_hub: FaultHub) -> None:
        self._hub = faults_hub
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._attached: list[tuple[Any, Any, dict[Any, Any]]] = []
        self.injected: list[Injected] = []
        """Every fault served so far, in order."""
        self.seen: list[Seen] = []
        """Every request that reached an attached client, with the fault it met, in order."""
        self.attached = 0
        """How many clients ``attach`` was given (the plugin's own clients need none)."""

    def next(
        self,
        fault: int | str,
        *,
        count: int = 1,
        retry_after: float = 1.0,
        after_chunks: int = 3,
        where: Where = "prompt",
        match: str | None = None,
        shape: str = "no_message",
        code: str = "RateLimitReached",
    ) -> Faults:
        """Answer the next ``count`` requests of attached clients with ``fault``.

        ``fault``: ``429`` (``retry_after`` seconds, fractions kept in ``retry-after-ms``;
        ``code``: the body's ``error.code``, ``"RateLimitReached"`` or the older ``"429"``),
        ``500``, ``503``, ``"timeout"``, ``"content_filter"`` (``where="prompt"``: a 400;
        ``where="completion"``: a 200 whose ``finish_reason`` is ``content_filter``, its choice
        in ``shape``: ``"no_message"``, no ``message`` key and, streamed, a last chunk with no
        ``delta``; ``"role_only"``, ``message: {"role": "assistant"}``; ``"partial"``, the
        text written before the cut), ``"cut_stream"`` (the connection drops after
        ``after_chunks`` SSE events) or ``"connection_error"``. ``match``: a regex searched in
        the request path (e.g. ``"deployments/gpt-4o-mini/"``); other requests pass. Returns
        ``self`` to chain.
        """
        kind = ALIASES.get(str(fault), str(fault))
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
        if shape not in FILTER_SHAPES:
            raise ValueError(f"llmops_faults.next(shape={shape!r}): use one of {', '.join(FILTER_SHAPES)}.")
        if code not in RATE_LIMIT_CODES:
            raise ValueError(f"llmops_faults.next(code={code!r}): use one of {', '.join(RATE_LIMIT_CODES)}.")
        pattern = re.compile(match) if match else None
        scheduled = Fault(kind, retry_after, after_chunks, where, pattern, shape, code)
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

    @property
    def pending_faults(self) -> list[Fault]:
        """The scheduled faults not served yet, in order."""
        with self._lock:
            return list(self._queue)

    def take(self, method: str, url: str, path: str, retry: int | None = None) -> Fault | None:
        """The fault for a request, removed from the schedule (None: let it through);
        ``retry``: the request's ``x-stainless-retry-count``."""
        with self._lock:
            for index, fault in enumerate(self._queue):
                if fault.matches(path):
                    del self._queue[index]
                    self.injected.append(Injected(fault.kind, method, url, retry))
                    self.seen.append(Seen(fault.kind, retry, path))
                    return fault
            self.seen.append(Seen(None, retry, path))
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
        self.attached += 1
        transport = http._transport
        if getattr(transport, "llmops_wrapper", False):  # of whichever copy of the package (see Wrapping)
            return client  # already attached (the plugin's clients always are)
        mounts = dict(http._mounts)
        self._attached.append((http, transport, mounts))
        serve = respx_wrapper(self._hub) if lib.__name__ == "httpx" else httpx2_wrapper(self._hub)
        pace = self._hub.pace

        def wrap(inner: Any) -> Any:
            return serve(pace(inner) if pace is not None else inner)

        http._transport = wrap(transport)
        http._mounts = {pattern: (wrap(t) if t is not None else None) for pattern, t in mounts.items()}
        return client

    def detach_all(self) -> None:
        """Give attached clients their own transports back."""
        while self._attached:
            http, transport, mounts = self._attached.pop()
            http._transport = transport
            http._mounts = mounts


def _library(http: Any) -> ModuleType | None:
    """``httpx2`` or ``httpx``, whichever ``http`` is a client of."""
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None and isinstance(http, (module.Client, module.AsyncClient)):
            return module
    return None
