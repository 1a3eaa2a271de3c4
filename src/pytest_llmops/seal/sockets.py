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
"""

from __future__ import annotations

import _socket
import socket
import weakref
from collections.abc import Iterable
from typing import Any

from pytest_llmops.seal.policy import NetworkBlocked, Policy, blocked, is_address, is_loopback

__all__ = ["NetworkBlocked", "is_sealed", "seal", "unseal"]

_state: dict[str, Any] = {}
"""The real socket functions while sealed (by name), and the stack of policies."""
_INET = (socket.AF_INET, socket.AF_INET6)
_METHODS = ("connect", "connect_ex", "sendto", "sendmsg", "send", "sendall", "recv", "recv_into")
_refused: weakref.WeakKeyDictionary[Any, NetworkBlocked] = weakref.WeakKeyDictionary()
"""Sockets a proxied request was refused on: reading them raises the refusal again (clients
such as httpcore read a response after a failed write, and would wait for one)."""
_LOOKUPS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")


def _policies() -> list[Policy]:
    return _state.get("policies", [])  # type: ignore[no-any-return]


def _allows_name(host: str) -> bool:
    return is_loopback(host) or any(policy.allows_name(host) for policy in _policies())


def _allows_endpoint(host: str) -> bool:
    """Whether a connection to ``host`` (an address, or a name connect() resolves itself)."""
    if is_loopback(host):
        return True
    if is_address(host):
        return any(policy.allows_address(host) for policy in _policies())
    return _allows_name(host)


def _own_names() -> set[str]:
    try:
        name = _state["gethostname"]()
    except OSError:
        return set()
    return {name.lower(), name.lower().split(".", 1)[0]}


def _check(family: int, address: Any, what: str) -> None:
    if family not in _INET or not isinstance(address, tuple) or not address:
        return  # AF_UNIX paths, netlink...
    host = str(address[0]).strip("[]").lower()
    if not _allows_endpoint(host):
        port = address[1] if len(address) > 1 else "?"
        raise blocked(f"{what} {host}:{port}")


def _check_proxied(sock: Any, data: Any) -> None:
    """A request written to a proxy: where the proxy is asked to go must be allowed."""
    if sock.family not in _INET or not data:
        return
    from pytest_llmops.seal import proxy

    found = proxy.target(data)
    if found is None:
        return
    host, port = found
    if not _allows_endpoint(host.strip("[]").lower()):
        try:
            peer = sock.getpeername()
            proxy_at = f"{peer[0]}:{peer[1]}"
        except OSError:
            proxy_at = "?"
        where = f"{host}:{port if port is not None else '?'}"
        error = blocked(f"a request to {where} through the proxy at {proxy_at}")
        _refused[sock] = error
        raise error


def _check_lookup(host: Any) -> str | None:
    """The name looked up, if it needs checking; raises if it is not allowed."""
    if host is None:
        return None
    name = host.decode("idna") if isinstance(host, (bytes, bytearray)) else str(host)
    name = name.strip("[]").lower().rstrip(".")
    if not name or is_address(name) or _allows_name(name) or name in _own_names():
        return name
    raise blocked(f"a name lookup of {name}")


# -- the sealed functions ---------------------------------------------------------------
def _connect(self: Any, address: Any) -> None:
    _check(self.family, address, "a connection to")
    return _state["connect"](self, address)  # type: ignore[no-any-return]


def _connect_ex(self: Any, address: Any) -> int:
    _check(self.family, address, "a connection to")
    return _state["connect_ex"](self, address)  # type: ignore[no-any-return]


def _sendto(self: Any, data: Any, *args: Any) -> int:
    if args:
        _check(self.family, args[-1], "a datagram (or TCP Fast Open) to")
    return _state["sendto"](self, data, *args)  # type: ignore[no-any-return]


def _sendmsg(self: Any, buffers: Any, *args: Any, **kwargs: Any) -> int:
    address = args[2] if len(args) > 2 else kwargs.get("address")
    if address is not None:
        _check(self.family, address, "a message to")
    return _state["sendmsg"](self, buffers, *args, **kwargs)  # type: ignore[no-any-return]


def _send(self: Any, data: Any, *args: Any) -> int:
    _check_proxied(self, data)
    return _state["send"](self, data, *args)  # type: ignore[no-any-return]


def _sendall(self: Any, data: Any, *args: Any) -> None:
    _check_proxied(self, data)
    return _state["sendall"](self, data, *args)  # type: ignore[no-any-return]


def _recv(self: Any, *args: Any) -> Any:
    if _refused and self in _refused:
        raise _refused[self]
    return _state["recv"](self, *args)


def _recv_into(self: Any, *args: Any) -> Any:
    if _refused and self in _refused:
        raise _refused[self]
    return _state["recv_into"](self, *args)


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    name = _check_lookup(host)
    result = _state["getaddrinfo"](host, port, *args, **kwargs)
    if name and not is_loopback(name) and not is_address(name):
        for policy in _policies():
            if policy.allows_name(name):
                policy.resolved(str(info[4][0]) for info in result)
    return result


def _gethostbyname(host: Any) -> str:
    name = _check_lookup(host)
    address: str = _state["gethostbyname"](host)
    if name:
        for policy in _policies():
            if policy.allows_name(name):
                policy.resolved([address])
    return address


def _gethostbyname_ex(host: Any) -> Any:
    name = _check_lookup(host)
    result = _state["gethostbyname_ex"](host)
    if name:
        for policy in _policies():
            if policy.allows_name(name):
                policy.resolved(result[2])
    return result


def _gethostbyaddr(host: Any) -> Any:
    text = str(host).strip("[]").lower()
    if is_address(text) and not _allows_endpoint(text):
        raise blocked(f"a reverse name lookup of {text}")
    _check_lookup(text if not is_address(text) else None)
    return _state["gethostbyaddr"](host)


def _getnameinfo(sockaddr: Any, flags: int) -> Any:
    host = str(sockaddr[0]).strip("[]").lower() if isinstance(sockaddr, tuple) and sockaddr else ""
    if host and not _allows_endpoint(host) and not flags & socket.NI_NUMERICHOST:
        raise blocked(f"a reverse name lookup of {host}")
    return _state["getnameinfo"](sockaddr, flags)


_SEALED = {
    "connect": _connect, "connect_ex": _connect_ex, "sendto": _sendto, "sendmsg": _sendmsg,
    "send": _send, "sendall": _sendall, "recv": _recv, "recv_into": _recv_into,
}
_SEALED_LOOKUPS = {
    "getaddrinfo": _getaddrinfo, "gethostbyname": _gethostbyname, "gethostbyname_ex": _gethostbyname_ex,
    "gethostbyaddr": _gethostbyaddr, "getnameinfo": _getnameinfo,
}


class _SealedRawSocket(_socket.socket):
    """``_socket.socket`` while sealed: the C type cannot be patched, so the module's name
    points to this subclass (``socket.socket`` is patched directly)."""

    connect = _connect
    connect_ex = _connect_ex
    sendto = _sendto
    sendmsg = _sendmsg
    send = _send
    sendall = _sendall
    recv = _recv
    recv_into = _recv_into  # type: ignore[assignment]


# -- sealing ----------------------------------------------------------------------------
def seal(allowed_hosts: Iterable[str] = ()) -> None:
    """Refuse non-loopback connections, datagrams and name lookups (except ``allowed_hosts``)
    until the matching :func:`unseal`. Calls nest, as an in-process pytester run inside a
    sealed session does; each level's allowed hosts are dropped by its own :func:`unseal`."""
    _state.setdefault("policies", []).append(Policy(allowed_hosts))
    if "connect" in _state:
        return
    _state["gethostname"] = _socket.gethostname
    _state["raw_socket"] = _socket.socket
    _state["own"] = {name: name in socket.socket.__dict__ for name in _METHODS}
    for name in _METHODS:
        _state[name] = getattr(_socket.socket, name)
        setattr(socket.socket, name, _SEALED[name])
    _state["socket_module"] = [name for name in _LOOKUPS if getattr(socket, name) is getattr(_socket, name)]
    for name in _LOOKUPS:  # socket.getaddrinfo is socket.py's own function: it calls _socket's
        _state[name] = getattr(_socket, name)
        setattr(_socket, name, _SEALED_LOOKUPS[name])
    for name in _state["socket_module"]:
        setattr(socket, name, _SEALED_LOOKUPS[name])
    _socket.socket = _socket.SocketType = _SealedRawSocket  # type: ignore[misc]


def unseal() -> None:
    """Undo one :func:`seal`; the real socket functions are back after the last one."""
    policies = _policies()
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
