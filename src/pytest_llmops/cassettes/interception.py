"""vcrpy's patches, installed once per session and dispatching to the active cassette.

vcrpy builds and enters some forty ``mock.patch`` objects each time a cassette is used;
pytest-recording pays that for every test. Here they are entered once, with a
dispatcher standing in for the cassette: a test's cassette is pushed on activation and
popped after. With no cassette active, requests pass through untouched and unrecorded
(and in replay the sealed network still refuses anything but loopback).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from vcr.cassette import Cassette as VcrCassette
from vcr.patch import CassettePatcherBuilder
from vcr.record_mode import RecordMode


class _Idle(VcrCassette):  # type: ignore[misc]
    """Stands in when no cassette is active: plays nothing, records nothing."""

    def __init__(self) -> None:
        super().__init__(path="<no active llmops cassette>", record_mode=RecordMode.ALL)

    def can_play_response_for(self, request: Any) -> bool:
        return False

    def append(self, request: Any, response: Any) -> None:
        return None


class _Watcher(_Idle):
    """Stands in for a test without a cassette (record mode): lets its requests through,
    unrecorded, and notes them (scrubbed; ``prepare`` returns None for traffic that is never
    recorded, such as MLflow's)."""

    def __init__(self, prepare: Callable[[Any], Any], seen: list[str]) -> None:
        super().__init__()
        self._prepare = prepare
        self.seen = seen

    def can_play_response_for(self, request: Any) -> bool:
        prepared = self._prepare(request)
        if prepared is not None:
            self.seen.append(f"{prepared.method} {prepared.uri}")
        return False


class _Dispatcher:
    """What vcrpy's patched classes hold as their ``cassette``."""

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.idle = _Idle()
        self._path = "llmops"
        self.custom_patches: tuple[Any, ...] = ()
        self.skip_patchers: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        current = self.stack[-1] if self.stack else self.idle
        return getattr(current, name)


class Interceptor:
    """Owns the session's vcrpy patches; cassettes push and pop themselves."""

    def __init__(self) -> None:
        self._dispatcher = _Dispatcher()
        self._patches: ExitStack | None = None

    @property
    def active(self) -> bool:
        return self._patches is not None

    def start(self) -> None:
        """Enter vcrpy's patches (idempotent)."""
        if self._patches is None:
            stack = ExitStack()
            for patcher in CassettePatcherBuilder(self._dispatcher).build():
                stack.enter_context(patcher)
            self._patches = stack

    def stop(self) -> None:
        """Restore the real HTTP classes."""
        if self._patches is not None:
            self._patches.close()
            self._patches = None

    def push(self, cassette: Any) -> None:
        self.start()
        self._dispatcher.stack.append(cassette)

    def pop(self, cassette: Any) -> None:
        stack = self._dispatcher.stack
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] is cassette:
                del stack[index]
                return

    @contextmanager
    def watching(self, prepare: Callable[[Any], Any], seen: list[str]) -> Iterator[None]:
        """Within the block, note the requests made while no cassette is active in ``seen``."""
        watcher = _Watcher(prepare, seen)
        self.push(watcher)
        try:
            yield
        finally:
            self.pop(watcher)
