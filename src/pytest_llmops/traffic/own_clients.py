"""Pacing for every client, not only the plugin's: in live and record runs each request to an
Azure OpenAI deployment that any ``httpx2`` or ``httpx`` client sends (the openai SDK's
``AzureOpenAI`` an app builds itself, LangChain's, the lab's own cell) waits for the same
limiter as the plugin's clients, across xdist workers.

The hook is the clients' choice of transport (``Client._transport_for_url``, patched on the
classes, so it covers clients built before and after): the request meets the limiter just
above the transport that vcrpy patches, as the plugin's clients' requests do. Such a client
keeps its own answer to a 429 (the openai SDK retries after Retry-After, up to its
``max_retries``); the limiter holds every process until then. Replay installs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmops.traffic.faults.hub import hub
from pytest_llmops.traffic.paced_transport import PacedTransport
from pytest_llmops.traffic.pacer import pacer

LIBRARIES = ("httpx2", "httpx")
"""The HTTP clients whose requests are paced: the openai SDK 3.x's, and httpx (``http_client=``)."""


class OwnClients:
    """The patch of ``_transport_for_url`` on the ``httpx2``/``httpx`` client classes."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._saved: list[tuple[type, Any]] = []

    def install(self) -> None:
        """Patch the client classes of the libraries installed (importing them now)."""
        for name in LIBRARIES:
            try:
                library: Any = importlib.import_module(name)
            except ImportError:
                continue
            for cls in (library.Client, library.AsyncClient):
                original = cls.__dict__["_transport_for_url"]
                self._saved.append((cls, original))
                cls._transport_for_url = self._choosing(original)
        hub(self.config).pace = self.paced

    def uninstall(self) -> None:
        """Give the classes their own method back (end of session)."""
        while self._saved:
            cls, original = self._saved.pop()
            cls._transport_for_url = original  # type: ignore[attr-defined]
        hub(self.config).pace = None

    def _choosing(self, original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def _transport_for_url(client: Any, url: Any) -> Any:
            return self.paced(original(client, url))

        _transport_for_url.__wrapped__ = original  # type: ignore[attr-defined]
        return _transport_for_url

    def paced(self, transport: Any) -> Any:
        """``transport`` behind the limiter (unless it is paced or serves faults already: the
        plugin's clients, and clients given to ``llmops_faults.attach``, pace beneath)."""
        if getattr(transport, "llmops_wrapper", False):  # a Wrapping, of whichever copy of this package
            return transport
        the_pacer = pacer(self.config)
        if the_pacer is None:
            return transport
        return PacedTransport(transport, the_pacer, retry_429=False, azure_only=True)


def install(config: pytest.Config) -> None:
    """Pace every client's Azure OpenAI requests for this session (live and record modes,
    ``llmops_pacing`` on); undone at the end of the session."""
    if not config.getini("llmops_pacing"):
        return
    own = OwnClients(config)
    own.install()
    config.add_cleanup(own.uninstall)
