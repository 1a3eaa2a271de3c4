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


def _targets() -> list[types.ModuleType]:
    modules = [sys.modules[name] for name in SLEEPING_MODULES if name in sys.modules]
    modules += [
        module
        for name, module in list(sys.modules.items())
        if module is not None and name.startswith(SLEEPING_PACKAGES)
    ]
    return modules


@contextmanager
def no_sleep() -> Iterator[None]:
    """Within the block, the SDK modules imported so far do not sleep."""
    global _anyio_proxy
    patched: list[tuple[types.ModuleType, str, Any]] = []
    for module in _targets():
        real_time = module.__dict__.get("time")
        if isinstance(real_time, types.ModuleType) and real_time is time:
            patched.append((module, "time", real_time))
            module.time = _time_proxy  # type: ignore[attr-defined]
        real_anyio = module.__dict__.get("anyio")
        if isinstance(real_anyio, types.ModuleType) and not isinstance(real_anyio, _Proxy):
            if _anyio_proxy is None:
                _anyio_proxy = _Proxy(real_anyio, _async_no_sleep)
            patched.append((module, "anyio", real_anyio))
            module.anyio = _anyio_proxy  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, name, real in reversed(patched):
            setattr(module, name, real)
