"""Where a request sent through a proxy is going, read from the first bytes sent to the proxy.

An ``HTTP(S)_PROXY`` on loopback is reachable in replay; what the client asks it for is
not necessarily: ``CONNECT api.openai.com:443``, ``GET http://host/path`` (absolute form),
or a SOCKS 4/4a/5 connect request. :func:`target` finds the host and port in those, so the
seal can refuse a request the proxy would carry to a host that is not allowed.
"""

from __future__ import annotations

import ipaddress
import re

_METHOD_FIRST = frozenset(b"GPDHOCT")
_REQUEST_LINE = re.compile(
    rb"^(?:CONNECT ([^\s/]+)|(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE) [hH][tT][tT][pP][sS]?://([^\s/?#]+))"
)
_SOCKS_PREFIXES = (b"\x05\x01\x00", b"\x04\x01")


def target(data: bytes | bytearray | memoryview) -> tuple[str, int | None] | None:
    """``(host, port)`` a proxy is asked to reach by the first bytes of a request, or None
    when ``data`` is not a proxy request (an ordinary request to the server itself)."""
    head = bytes(data[:300])
    if not head:
        return None
    if head[0] in _METHOD_FIRST:
        return _http(head)
    if head.startswith(_SOCKS_PREFIXES):
        return _socks(head)
    return None


def _split(authority: str, default_port: int | None) -> tuple[str, int | None]:
    authority = authority.rsplit("@", 1)[-1]
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = authority.partition(":")
    return host, int(port) if port.isdigit() else default_port


def _http(head: bytes) -> tuple[str, int | None] | None:
    match = _REQUEST_LINE.match(head)
    if match is None:
        return None
    if match.group(1) is not None:
        return _split(match.group(1).decode("latin-1"), None)
    return _split(match.group(2).decode("latin-1"), None)


def _socks(head: bytes) -> tuple[str, int | None] | None:
    if head[0] == 5 and len(head) >= 7:
        kind = head[3]
        if kind == 1 and len(head) >= 10:
            return str(ipaddress.IPv4Address(head[4:8])), int.from_bytes(head[8:10], "big")
        if kind == 3 and len(head) >= 5 + head[4] + 2:
            end = 5 + head[4]
            return head[5:end].decode("latin-1"), int.from_bytes(head[end : end + 2], "big")
        if kind == 4 and len(head) >= 22:
            return str(ipaddress.IPv6Address(head[4:20])), int.from_bytes(head[20:22], "big")
        return None
    if head[0] == 4 and len(head) >= 9:
        port = int.from_bytes(head[2:4], "big")
        address = head[4:8]
        if address[:3] == b"\0\0\0" and address[3] != 0:  # SOCKS4a: the name follows the user id
            rest = head[8:].split(b"\0")
            if len(rest) >= 2 and rest[1]:
                return rest[1].decode("latin-1"), port
            return None
        return str(ipaddress.IPv4Address(address)), port
    return None
