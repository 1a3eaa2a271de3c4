"""What every transport wrapper of this package shares: closing and entering pass to the
transport it wraps (``inner``), and a mark that says it is one of them."""

from __future__ import annotations

from typing import Any, Self


class Wrapping:
    """Delegates the transport lifecycle (close, context managers) to ``self.inner``."""

    inner: Any
    llmops_wrapper = True
    """Read by name, not by class, as in-process pytester runs load this package again: a
    client whose transport is one of these is paced or serves faults already."""

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __enter__(self) -> Self:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.inner.__aexit__(*args)
