"""Replay without waiting: the SDKs' retry and polling sleeps become no-ops during replay.

A recorded 429-then-200 or a PENDING, PENDING, RUNNING poll replays at once. Only the
``time``/``anyio`` names *inside the SDK modules that sleep* are replaced, for the
duration of a cassette, never ``time.sleep`` itself (MLflow, pytest-timeout and the
test's own code keep the real clock).
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SLEEPING_MODULES = (
    "openai._base_client",
    "databricks.sdk.clock",
    "databricks.sdk.retries",
    "databricks.sdk.core",
    "databricks.sdk._base_client",
    "databricks.sdk.mixins.compute",
    "azure.core.pipeline.transport._base",
    "azure.core.pipeline.policies._retry",
    "azure.core.polling.base_polling",
    "azure.core.polling._poller",
    "azure.mgmt.core.polling.arm_polling",
    "azure.mgmt.core.policies._base",
    "pytest_llmops.azure.arm",
)
SLEEPING_PACKAGES = ("databricks.sdk.service.",)
"""Every module below these packages gets the no-sleep clock too (the SDK's waiters)."""


def _no_sleep(_seconds: float = 0) -> None:
    return None


async def _async_no_sleep(_seconds: float = 0, *_args: Any, **_kwargs: Any) -> None:
    return None


class _Proxy(types.ModuleType):
    """A stand-in for ``time`` or ``anyio`` whose ``sleep`` returns at once."""

    def __init__(self, real: types.ModuleType, sleep: Any) -> None:
        super().__init__(real.__name__)
        self._real = real
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_time_proxy = _Proxy(time, _no_sleep)
_anyio_proxy: _Proxy | None = None


_cache: dict[str, Any] = {"size": -1, "targets": []}


def _targets() -> list[types.ModuleType]:
    """The imported SDK modules that sleep; rescanned only when modules were imported."""
    if len(sys.modules) != _cache["size"]:
        modules = [sys.modules[name] for name in SLEEPING_MODULES if name in sys.modules]
        modules += [
            module
            for name, module in list(sys.modules.items())
            if module is not None and name.startswith(SLEEPING_PACKAGES)
        ]
        _cache["size"], _cache["targets"] = len(sys.modules), modules
    return _cache["targets"]  # type: ignore[no-any-return]


class NoSleep:
    """Replaces ``time``/``anyio`` in the SDK modules while active.

    :meth:`apply` is cheap to call again (the cassette calls it on every replayed
    request): an SDK imported after the cassette was activated, as a lazy fixture does,
    is patched before its first request can sleep.
    """

    def __init__(self) -> None:
        self._patched: list[tuple[types.ModuleType, str, Any]] = []
        self._done: set[str] = set()
        self._seen_modules = -1

    def apply(self) -> None:
        global _anyio_proxy
        if len(sys.modules) == self._seen_modules:
            return
        self._seen_modules = len(sys.modules)
        for module in _targets():
            if module.__name__ in self._done:
                continue
            self._done.add(module.__name__)
            real_time = module.__dict__.get("time")
            if real_time is time:
                self._patched.append((module, "time", real_time))
                module.time = _time_proxy  # type: ignore[attr-defined]
            real_anyio = module.__dict__.get("anyio")
            if isinstance(real_anyio, types.ModuleType) and not isinstance(real_anyio, _Proxy):
                if _anyio_proxy is None:
                    _anyio_proxy = _Proxy(real_anyio, _async_no_sleep)
                self._patched.append((module, "anyio", real_anyio))
                module.anyio = _anyio_proxy  # type: ignore[attr-defined]

    def restore(self) -> None:
        for module, name, real in reversed(self._patched):
            setattr(module, name, real)
        self._patched.clear()
        self._done.clear()
        self._seen_modules = -1


@contextmanager
def no_sleep() -> Iterator[NoSleep]:
    """Within the block, the SDK modules do not sleep (call ``.apply()`` again after
    importing an SDK)."""
    patcher = NoSleep()
    patcher.apply()
    try:
        yield patcher
    finally:
        patcher.restore()
