"""What the replay seal lets through, and the error for what it does not.

Allowed: loopback (names and addresses), the hosts the user allows by name or address
(``--llmops-allow-host=HOST``, the ``llmops_allowed_hosts`` ini option, ``*.domain`` for a
whole domain, ``10.0.0.0/8`` for a network) and the tracking server's host. A host allowed
by name is reachable at the addresses its name resolved to: resolution and connection are
tied together (:meth:`Policy.resolved`), so a connection made the way urllib3 and httpx make
it (resolve, then connect to the address) works.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from pytest_llmops.errors import LLMOpsError

FIX = (
    "A request that is not in the cassette tried to reach the network. Record it with "
    "`pytest --llmops-record <test>`, run against the real services with `pytest --llmops-live`, "
    "or allow the host in replay with `--llmops-allow-host=HOST` (ini option `llmops_allowed_hosts`)."
)


class NetworkBlocked(LLMOpsError, ConnectionRefusedError):
    """Replay reached for a host that is neither loopback nor allowed (a connection, a
    datagram, a name lookup or a request through a proxy)."""

    def __init__(self, message: str) -> None:
        # errno and strerror set: clients that wrap OS errors (aiohttp, urllib3) show the message.
        super().__init__(errno.ECONNREFUSED, message)

    def __str__(self) -> str:
        return str(self.strerror)


def blocked(what: str) -> NetworkBlocked:
    """The error for ``what`` (e.g. ``a connection to 192.0.2.1:443``)."""
    return NetworkBlocked(
        f"Replay is sealed: {what} was refused (only loopback and allowed hosts are reachable). {FIX}"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    host = host.strip("[]").lower().rstrip(".")
    if host in ("localhost", "localhost.localdomain", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def is_address(host: str) -> bool:
    """Whether ``host`` is an IP address (no name lookup needed)."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


class Policy:
    """The hosts one sealed session allows, and the addresses their names resolved to."""

    def __init__(self, hosts: Iterable[str] = ()) -> None:
        self.names: set[str] = set()
        self.suffixes: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._resolved: set[str] = set()
        self._lock = threading.Lock()
        for host in hosts:
            self.allow(host)

    def allow(self, entry: str) -> None:
        """Allow a host name, ``*.domain``, an address or a network (a URL's host is taken)."""
        entry = entry.strip()
        if "://" in entry:
            entry = urlsplit(entry).hostname or ""
        entry = entry.lower().rstrip(".")
        if not entry:
            return
        if entry.startswith("*."):
            self.suffixes.add(entry[1:])
            return
        try:
            self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            self.names.add(entry)

    def allows_name(self, host: str) -> bool:
        """Whether a lookup of (or a connection to) the name ``host`` is allowed."""
        host = host.lower().rstrip(".")
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def allows_address(self, address: str) -> bool:
        """Whether a connection to ``address`` is allowed: in an allowed network, or resolved
        from an allowed name."""
        address = address.strip("[]").split("%", 1)[0].lower()
        if address in self._resolved:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def resolved(self, addresses: Iterable[str]) -> None:
        """Remember the addresses an allowed name resolved to."""
        with self._lock:
            self._resolved.update(a.split("%", 1)[0].lower() for a in addresses)


def tracking_hosts(tracking_uri: str | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The host of the tracking store the user configured, reachable even in replay (MLflow
    on Databricks: the workspace of the SDK's unified auth, ``DATABRICKS_HOST``)."""
    if not tracking_uri:
        return []
    from pytest_llmops.tracking.uri import is_databricks

    env = os.environ if environ is None else environ
    if is_databricks(tracking_uri):
        configured = env.get("DATABRICKS_HOST", "")
        workspace = urlsplit(configured if "://" in configured else f"https://{configured}").hostname
        return [workspace] if workspace else []
    if "://" not in tracking_uri or tracking_uri.startswith(("sqlite", "file")):
        return []
    host = urlsplit(tracking_uri).hostname
    return [host] if host else []
