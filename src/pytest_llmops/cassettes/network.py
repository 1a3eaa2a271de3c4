"""Sealing the network in replay: any connection to a non-loopback address fails.

Patched at the socket level, so it covers every client, also those vcrpy does not know.
Loopback stays open (local doubles, a local ``mlflow server``), and so do hosts the user
configured explicitly (a remote tracking server).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from pytest_llmops.errors import LLMOpsError


class NetworkBlocked(LLMOpsError, ConnectionRefusedError):
    """A connection attempted during replay to a host other than loopback."""


_state: dict[str, Any] = {}


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _check(address: Any) -> None:
    if not isinstance(address, tuple) or not address:
        return  # AF_UNIX path or other families
    host = str(address[0]).strip("[]").lower()
    if _is_loopback(host) or host in _state["allowed"]:
        return
    port = address[1] if len(address) > 1 else "?"
    raise NetworkBlocked(
        f"Replay is sealed: a connection to {host}:{port} was refused (only loopback is reachable). "
        "A request that is not in the cassette tried to reach the network. Record it with "
        "`pytest --llmops-record <test>`, or run against the real services with `pytest --llmops-live`."
    )


def seal(allowed_hosts: Iterable[str] = ()) -> None:
    """Refuse non-loopback connections until the matching :func:`unseal` (calls nest, as
    an in-process pytester run inside a sealed session does)."""
    _state["allowed"] = _state.get("allowed", set()) | {h.lower() for h in allowed_hosts}
    _state["depth"] = _state.get("depth", 0) + 1
    if "connect" in _state:
        return

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check(address)
        return _state["connect"](self, address)  # type: ignore[no-any-return]

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check(address)
        return _state["connect_ex"](self, address)  # type: ignore[no-any-return]

    _state["connect"], _state["connect_ex"] = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect = connect  # type: ignore[assignment,method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[assignment,method-assign]


def unseal() -> None:
    """Undo one :func:`seal`; the real socket functions are back after the last one."""
    _state["depth"] = max(0, _state.get("depth", 0) - 1)
    if _state["depth"] == 0 and "connect" in _state:
        _state.pop("allowed", None)
        socket.socket.connect = _state.pop("connect")  # type: ignore[method-assign]
        socket.socket.connect_ex = _state.pop("connect_ex")  # type: ignore[method-assign]


def is_sealed() -> bool:
    return "connect" in _state
