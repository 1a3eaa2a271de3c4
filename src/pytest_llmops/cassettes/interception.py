"""vcrpy's patches, installed once per session and dispatching to the active cassette.

vcrpy builds and enters some forty ``mock.patch`` objects each time a cassette is used;
pytest-recording pays that for every test. Here they are entered once, with a
dispatcher standing in for the cassette: a test's cassette is pushed on activation and
popped after. With no cassette active, requests pass through untouched and unrecorded
(and in replay the sealed network still refuses anything but loopback).

vcrpy's connection stubs (``requests``, ``urllib3``, ``http.client``) put the real HTTP classes
back while they build, connect or send a real connection (``vcr.patch.force_reset``); done
for the whole process, a request another thread started in that moment (openai's ``httpx2``,
``requests``) would bypass the cassette: sent unrecorded, or to the sealed network in replay.
While these patches are entered, that reset holds for the thread that asked only: the
dispatcher stands idle for it (its requests pass through, unrecorded, as with the real
classes), every other thread keeps its cassette. The real connection's own code never
reaches a patched name (vcrpy itself reads its response outside the reset).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

import vcr.patch
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


_RESETTING = "_llmops_resetting"
"""The thread-local state of the reset, kept on ``vcr.patch`` so that every copy of this
module (in-process pytester runs load it again) reads the same one."""


def _resetting() -> threading.local:
    state = getattr(vcr.patch, _RESETTING, None)
    if state is None:
        state = threading.local()
        setattr(vcr.patch, _RESETTING, state)
    return state


def in_reset() -> bool:
    """Whether this thread is inside vcrpy's ``force_reset`` (see the module docstring)."""
    return bool(getattr(_resetting(), "depth", 0))


@contextmanager
def _thread_reset() -> Iterator[None]:
    """vcrpy's ``force_reset`` for the calling thread only."""
    state = _resetting()
    depth = getattr(state, "depth", 0)
    state.depth = depth + 1
    try:
        yield
    finally:
        state.depth = depth


class _Dispatcher:
    """What vcrpy's patched classes hold as their ``cassette``: the active one, or, for a
    thread inside vcrpy's reset, the idle stand-in."""

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.idle = _Idle()
        self._path = "llmops"
        self.custom_patches: tuple[Any, ...] = ()
        self.skip_patchers: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        current = self.stack[-1] if self.stack and not in_reset() else self.idle
        return getattr(current, name)


class Interceptor:
    """Owns the session's vcrpy patches; cassettes push and pop themselves."""

    def __init__(self) -> None:
        self._dispatcher = _Dispatcher()
        self._patches: ExitStack | None = None
        _resetting()  # made now, before threads ask for it

    @property
    def active(self) -> bool:
        return self._patches is not None

    def start(self) -> None:
        """Enter vcrpy's patches (idempotent)."""
        if self._patches is None:
            stack = ExitStack()
            for patcher in CassettePatcherBuilder(self._dispatcher).build():
                stack.enter_context(patcher)
            stack.enter_context(_replaced(vcr.patch, "force_reset", _thread_reset))
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


@contextmanager
def _replaced(owner: Any, name: str, value: Callable[[], AbstractContextManager[None]]) -> Iterator[None]:
    """``owner.name`` is ``value`` while the block runs (the stubs look it up at each call)."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)
