"""Sealing the network in replay, at the socket level, so that it covers every client
(also those vcrpy does not know) and every path to the network of this process:

- ``connect``/``connect_ex`` of ``socket.socket`` and of the bare ``_socket.socket``;
- datagrams and TCP Fast Open: ``sendto``/``sendmsg`` with an address;
- name lookups: ``getaddrinfo`` (which ``socket.create_connection``, urllib3, httpx and
  asyncio's ``loop.getaddrinfo``/``create_connection`` use), ``gethostbyname[_ex]``,
  ``gethostbyaddr``, ``getnameinfo``;
- requests through a proxy on loopback (``HTTPS_PROXY``...): the first bytes sent on a
  connection say where the proxy is asked to go (:mod:`.proxy`).

Loopback stays open (local doubles, a local ``mlflow server``), and so do the hosts of the
:class:`~.policy.Policy` (a remote tracking server, ``--llmops-allow-host``). The real
functions are kept in ``_state`` and looked up at each call. Child processes are not covered.

This module only installs and removes the seal, and is all replay loads at start-up: each
sealed function hands its call to :mod:`.checks` (imported on the first one), which decides.

PYTEST_DONT_REWRITE: loaded at start-up (see :mod:`pytest_llmops.plugin`)."""

from __future__ import annotations

import _socket
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_llmops.seal.policy import NetworkBlocked

__all__ = ["NetworkBlocked", "is_sealed", "seal", "unseal"]

_state: dict[str, Any] = {}
"""The real socket functions while sealed (by name), and the stack of allowed hosts."""
_METHODS = ("connect", "connect_ex", "sendto", "sendmsg", "send", "sendall", "recv", "recv_into")
_LOOKUPS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")


def _sealed_method(name: str) -> Callable[..., Any]:
    def sealed(self: Any, *args: Any, **kwargs: Any) -> Any:
        from pytest_llmops.seal import checks

        return checks.method(name, _state, self, args, kwargs)

    sealed.__name__ = sealed.__qualname__ = name
    return sealed


def _sealed_lookup(name: str) -> Callable[..., Any]:
    def sealed(*args: Any, **kwargs: Any) -> Any:
        from pytest_llmops.seal import checks

        return checks.lookup(name, _state, args, kwargs)

    sealed.__name__ = sealed.__qualname__ = name
    return sealed


def seal(allowed_hosts: Iterable[str] = ()) -> None:
    """Refuse non-loopback connections, datagrams and name lookups (except ``allowed_hosts``)
    until the matching :func:`unseal`. Calls nest, as an in-process pytester run inside a
    sealed session does; each level's allowed hosts are dropped by its own :func:`unseal`."""
    _state.setdefault("policies", []).append(tuple(allowed_hosts))  # a Policy once checked
    if "connect" in _state:
        return
    _state["gethostname"] = _socket.gethostname
    _state["raw_socket"] = _socket.socket
    _state["own"] = {name: name in socket.socket.__dict__ for name in _METHODS}
    methods = {name: _sealed_method(name) for name in _METHODS}
    for name in _METHODS:
        _state[name] = getattr(_socket.socket, name)
        setattr(socket.socket, name, methods[name])
    _state["socket_module"] = [name for name in _LOOKUPS if getattr(socket, name) is getattr(_socket, name)]
    for name in _LOOKUPS:  # socket.getaddrinfo is socket.py's own function: it calls _socket's
        _state[name] = getattr(_socket, name)
        sealed = _sealed_lookup(name)
        setattr(_socket, name, sealed)
        if name in _state["socket_module"]:
            setattr(socket, name, sealed)
    # The C type cannot be patched: the module's name points to a subclass while sealed.
    raw = type("_SealedRawSocket", (_state["raw_socket"],), methods)
    _socket.socket = _socket.SocketType = raw  # type: ignore[misc,assignment]


def unseal() -> None:
    """Undo one :func:`seal`; the real socket functions are back after the last one."""
    policies = _state.get("policies", [])
    if policies:
        policies.pop()
    if policies or "connect" not in _state:
        return
    for name in _METHODS:
        original = _state.pop(name)
        if _state["own"][name]:
            setattr(socket.socket, name, original)
        else:
            delattr(socket.socket, name)
    for name in _state["socket_module"]:
        setattr(socket, name, _state[name])
    for name in _LOOKUPS:
        setattr(_socket, name, _state.pop(name))
    _socket.socket = _socket.SocketType = _state.pop("raw_socket")  # type: ignore[misc]
    for key in ("own", "gethostname", "policies", "socket_module"):
        _state.pop(key, None)


def is_sealed() -> bool:
    """Whether this process's network is sealed (replay)."""
    return "connect" in _state


def __getattr__(name: str) -> Any:
    """``NetworkBlocked``, from :mod:`.policy` on first use."""
    if name == "NetworkBlocked":
        from pytest_llmops.seal.policy import NetworkBlocked

        return NetworkBlocked
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
