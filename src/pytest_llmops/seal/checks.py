"""What the sealed socket functions of :mod:`.sockets` decide, call by call: whether a
connection, datagram, proxied request or name lookup may go, and what a lookup of an
allowed name resolved to (:class:`~.policy.Policy`). Imported on the first sealed call,
not at plugin load: a replay session whose tests make no network call never needs it.

Each function takes the seal's ``state`` (the real functions by name, the stack of allowed
hosts) from :mod:`.sockets`, which calls :func:`method` and :func:`lookup`.
"""

from __future__ import annotations

import socket
import weakref
from typing import Any

from pytest_llmops.seal.policy import NetworkBlocked, Policy, blocked, is_address, is_loopback

State = dict[str, Any]
_INET = (socket.AF_INET, socket.AF_INET6)
_refused: weakref.WeakKeyDictionary[Any, NetworkBlocked] = weakref.WeakKeyDictionary()
"""Sockets a proxied request was refused on: reading them raises the refusal again (clients
such as httpcore read a response after a failed write, and would wait for one)."""


def policies(state: State) -> list[Policy]:
    """The allowed hosts of each nested :func:`~.sockets.seal`, as policies (built here on
    first use from the hosts ``seal`` kept)."""
    stack: list[Any] = state.get("policies", [])
    for index, entry in enumerate(stack):
        if not isinstance(entry, Policy):
            stack[index] = Policy(entry)
    return stack


def _allows_name(state: State, host: str) -> bool:
    return is_loopback(host) or any(policy.allows_name(host) for policy in policies(state))


def _allows_endpoint(state: State, host: str) -> bool:
    """Whether a connection to ``host`` (an address, or a name connect() resolves itself)."""
    if is_loopback(host):
        return True
    if is_address(host):
        return any(policy.allows_address(host) for policy in policies(state))
    return _allows_name(state, host)


def _own_names(state: State) -> set[str]:
    try:
        name = state["gethostname"]()
    except OSError:
        return set()
    return {name.lower(), name.lower().split(".", 1)[0]}


def _check(state: State, family: int, address: Any, what: str) -> None:
    if family not in _INET or not isinstance(address, tuple) or not address:
        return  # AF_UNIX paths, netlink...
    host = str(address[0]).strip("[]").lower()
    if not _allows_endpoint(state, host):
        port = address[1] if len(address) > 1 else "?"
        raise blocked(f"{what} {host}:{port}")


def _check_proxied(state: State, sock: Any, data: Any) -> None:
    """A request written to a proxy: where the proxy is asked to go must be allowed."""
    if sock.family not in _INET or not data:
        return
    from pytest_llmops.seal import proxy

    found = proxy.target(data)
    if found is None:
        return
    host, port = found
    if not _allows_endpoint(state, host.strip("[]").lower()):
        try:
            peer = sock.getpeername()
            proxy_at = f"{peer[0]}:{peer[1]}"
        except OSError:
            proxy_at = "?"
        where = f"{host}:{port if port is not None else '?'}"
        error = blocked(f"a request to {where} through the proxy at {proxy_at}")
        _refused[sock] = error
        raise error


def _check_lookup(state: State, host: Any) -> str | None:
    """The name looked up, if it needs checking; raises if it is not allowed."""
    if host is None:
        return None
    name = host.decode("idna") if isinstance(host, (bytes, bytearray)) else str(host)
    name = name.strip("[]").lower().rstrip(".")
    if not name or is_address(name) or _allows_name(state, name) or name in _own_names(state):
        return name
    raise blocked(f"a name lookup of {name}")


# -- socket methods --------------------------------------------------------------------
def method(name: str, state: State, sock: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``sock.<name>(*args, **kwargs)`` if the seal allows it."""
    if name in ("connect", "connect_ex"):
        _check(state, sock.family, args[0] if args else kwargs.get("address"), "a connection to")
    elif name == "sendto" and len(args) > 1:
        _check(state, sock.family, args[-1], "a datagram (or TCP Fast Open) to")
    elif name == "sendmsg":
        address = args[3] if len(args) > 3 else kwargs.get("address")
        if address is not None:
            _check(state, sock.family, address, "a message to")
    elif name in ("send", "sendall"):
        _check_proxied(state, sock, args[0] if args else kwargs.get("data"))
    elif name in ("recv", "recv_into") and _refused and sock in _refused:
        raise _refused[sock]
    return state[name](sock, *args, **kwargs)


# -- name lookups ----------------------------------------------------------------------
def lookup(name: str, state: State, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``socket.<name>(*args, **kwargs)`` if the seal allows it; the addresses an allowed
    name resolved to become reachable (resolution and connection are tied together)."""
    host = args[0] if args else kwargs.get("host")
    if name in ("gethostbyaddr", "getnameinfo"):
        _check_reverse(state, name, args, kwargs)
        return state[name](*args, **kwargs)
    checked = _check_lookup(state, host)
    result = state[name](*args, **kwargs)
    if checked and not is_loopback(checked) and not is_address(checked):
        if name == "getaddrinfo":
            addresses = [str(info[4][0]) for info in result]
        else:
            addresses = [result] if name == "gethostbyname" else list(result[2])
        for policy in policies(state):
            if policy.allows_name(checked):
                policy.resolved(addresses)
    return result


def _check_reverse(state: State, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name == "gethostbyaddr":
        text = str(args[0]).strip("[]").lower()
        if is_address(text) and not _allows_endpoint(state, text):
            raise blocked(f"a reverse name lookup of {text}")
        _check_lookup(state, text if not is_address(text) else None)
        return
    sockaddr = args[0]
    flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
    host = str(sockaddr[0]).strip("[]").lower() if isinstance(sockaddr, tuple) and sockaddr else ""
    if host and not _allows_endpoint(state, host) and not flags & socket.NI_NUMERICHOST:
        raise blocked(f"a reverse name lookup of {host}")
