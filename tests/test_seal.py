"""The replay seal has no side doors, and lets through what the user allows, by name too.

Loopback only: the "remote" hosts are names under the reserved ``.invalid`` domain (a lookup
the seal lets through fails without an answer from anywhere), and proxies are servers on
127.0.0.1 that record what they are asked and never forward anything. Where a host must
resolve to an address outside loopback, the resolution is simulated and the connection is
handed to a loopback server by a stand-in for the real ``connect`` (said where it is done):
no packet leaves 127.0.0.0/8, even if the seal failed.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest


class _Recorder(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(300)
        self.server.seen.append(line.decode("latin-1").strip())  # type: ignore[attr-defined]
        if line.startswith(b"CONNECT"):
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
        else:
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")


class LoopbackServer(socketserver.ThreadingTCPServer):
    """Answers every request with 200 ``ok`` (a CONNECT with 502), remembering first lines."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.seen: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def loopback_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


SIDE_DOORS = """
import _socket, asyncio, os, socket
import aiohttp, httpx, pytest, requests

NAME = "api.openai.invalid"
SEALED = "Replay is sealed"
PROXY = "http://127.0.0.1:" + os.environ["PROXY_PORT"]


def test_raw_socket_connect():
    sock = _socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError, match=SEALED + ": a connection to api.openai.invalid:443"):
        sock.connect((NAME, 443))
    with pytest.raises(OSError, match=SEALED):
        sock.connect_ex((NAME, 443))
    sock.close()


def test_connect_ex():
    with socket.socket() as sock, pytest.raises(OSError, match=SEALED):
        sock.connect_ex((NAME, 443))


@pytest.mark.parametrize("make", [socket.socket, _socket.socket])
def test_udp_sendto(make):
    sock = make(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError, match=SEALED + ": a datagram"):
        sock.sendto(b"x", (NAME, 53))
    with pytest.raises(OSError, match=SEALED):
        sock.sendto(b"x", 0, (NAME, 53))
    with pytest.raises(OSError, match=SEALED):
        sock.sendmsg([b"x"], [], 0, (NAME, 53))
    sock.close()


def test_tcp_fast_open():
    with socket.socket() as sock, pytest.raises(OSError, match=SEALED):
        sock.sendto(b"GET / HTTP/1.1\\r\\n\\r\\n", socket.MSG_FASTOPEN, (NAME, 443))


@pytest.mark.parametrize("lookup", [
    lambda: socket.getaddrinfo(NAME, 443),
    lambda: _socket.getaddrinfo(NAME, 443),
    lambda: socket.gethostbyname(NAME),
    lambda: socket.gethostbyname_ex(NAME),
    lambda: socket.create_connection((NAME, 443), timeout=5),
], ids=["getaddrinfo", "_socket.getaddrinfo", "gethostbyname", "gethostbyname_ex", "create_connection"])
def test_name_lookups(lookup):
    with pytest.raises(OSError, match=SEALED + ": a name lookup of api.openai.invalid"):
        lookup()


def test_loopback_names_still_resolve():
    assert socket.getaddrinfo("localhost", 80)
    assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"


def test_asyncio_paths():
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(OSError, match=SEALED):
            await loop.getaddrinfo(NAME, 443)
        with pytest.raises(OSError, match=SEALED):
            await loop.create_connection(asyncio.Protocol, NAME, 443)
        with pytest.raises(OSError, match=SEALED):
            await asyncio.open_connection(NAME, 443)
        with pytest.raises(OSError, match=SEALED):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(NAME, 53))
        sock = socket.socket()
        sock.setblocking(False)
        with pytest.raises(OSError, match=SEALED):
            await loop.sock_connect(sock, (NAME, 443))
        sock.close()

    asyncio.run(main())


def test_aiohttp_names_the_seal():
    async def main():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorError) as info:
                await session.get(f"https://{NAME}/v1/models")
        assert SEALED in str(info.value), str(info.value)

    asyncio.run(main())


def test_https_proxy_on_loopback(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    with pytest.raises(requests.exceptions.ConnectionError, match=SEALED + ": a request to api.openai.com:443 through the proxy"):
        requests.get("https://api.openai.com/v1/models", timeout=5)
    with pytest.raises(httpx.TransportError, match=SEALED), httpx.Client() as client:
        client.get("https://api.openai.com/v1/models")


def test_http_proxy_absolute_form(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    with pytest.raises(requests.exceptions.ConnectionError, match=SEALED + ": a request to api.openai.com:"):
        requests.get("http://api.openai.com/v1/models", timeout=5)


def test_socks5_through_a_loopback_proxy():
    with socket.create_connection(("127.0.0.1", int(os.environ["PROXY_PORT"])), timeout=5) as sock:
        sock.sendall(b"\\x05\\x01\\x00")  # the greeting names no host
        name = b"api.openai.com"
        with pytest.raises(OSError, match=SEALED + ": a request to api.openai.com:443 through the proxy"):
            sock.sendall(b"\\x05\\x01\\x00\\x03" + bytes([len(name)]) + name + (443).to_bytes(2, "big"))
"""


def test_replay_has_no_side_doors(pytester: pytest.Pytester, loopback_server, monkeypatch):
    monkeypatch.setenv("PROXY_PORT", str(loopback_server.port))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    pytester.makepyfile(test_doors=SIDE_DOORS)
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=16)
    # The proxy was asked for nothing beyond loopback (the SOCKS greeting is no request).
    assert not [line for line in loopback_server.seen if "openai" in line], loopback_server.seen


def test_a_proxy_may_carry_requests_to_allowed_hosts(pytester: pytest.Pytester, loopback_server, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{loopback_server.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    pytester.makepyfile("""
        import pytest, requests

        def test_allowed():
            with pytest.raises(requests.exceptions.ProxyError) as info:  # our proxy answers 502
                requests.get("https://allowed.example.invalid/ping", timeout=5)
            assert "Replay is sealed" not in str(info.value)
    """)
    pytester.runpytest("--llmops-allow-host=allowed.example.invalid").assert_outcomes(passed=1)
    assert [line.rsplit(" ", 1)[0] for line in loopback_server.seen] == ["CONNECT allowed.example.invalid:443"]


def test_live_and_record_are_not_sealed(pytester: pytest.Pytester):
    pytester.makepyfile("""
        import socket, pytest

        def test_open():
            with pytest.raises(socket.gaierror):  # a real lookup of a reserved name: no answer
                socket.getaddrinfo("api.openai.invalid", 443)
    """)
    # A subprocess: this suite itself runs in replay, sealed.
    pytester.runpytest_subprocess("--llmops-live").assert_outcomes(passed=1)


BY_NAME = """
import socket
import httpx, pytest, urllib3
from pytest_llmops.seal import sockets

PORT = {port}
# Simulated resolution (this test never asks a real resolver, and nothing leaves loopback):
# the names resolve to documentation addresses, and the stand-in for the real connect hands
# a connection to those addresses to the loopback server instead.
FAKE = {{"tracking.example.invalid": "203.0.113.7", "other.example.invalid": "203.0.113.8"}}
handed = []


@pytest.fixture(autouse=True)
def simulated_network(monkeypatch):
    real_lookup, real_connect = sockets._state["getaddrinfo"], sockets._state["connect"]

    def lookup(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in FAKE:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (FAKE[name], port))]
        return real_lookup(host, port, *args, **kwargs)

    def connect(sock, address):
        if address[0] in FAKE.values():
            handed.append(address)
            return real_connect(sock, ("127.0.0.1", PORT))
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError("stand-in: no real connection beyond loopback")
        return real_connect(sock, address)

    monkeypatch.setitem(sockets._state, "getaddrinfo", lookup)
    monkeypatch.setitem(sockets._state, "connect", connect)


def test_allowed_by_name_urllib3():
    answer = urllib3.PoolManager().request("GET", f"http://tracking.example.invalid:{{PORT}}/api/2.0/mlflow/ping")
    assert answer.status == 200 and answer.data == b"ok"
    assert handed == [("203.0.113.7", PORT)]


def test_allowed_by_name_httpx():
    with httpx.Client(trust_env=False) as client:
        answer = client.get(f"http://tracking.example.invalid:{{PORT}}/api/2.0/mlflow/ping")
    assert answer.status_code == 200 and answer.text == "ok"


def test_refused_by_name():
    with pytest.raises(urllib3.exceptions.MaxRetryError, match="Replay is sealed: a name lookup of other.example.invalid"):
        urllib3.PoolManager(retries=0).request("GET", f"http://other.example.invalid:{{PORT}}/")
    with pytest.raises(httpx.ConnectError, match="Replay is sealed"), httpx.Client(trust_env=False) as client:
        client.get(f"http://other.example.invalid:{{PORT}}/")
    # An address no allowed name resolved to stays refused, whatever name led there.
    with socket.socket() as sock, pytest.raises(OSError, match="Replay is sealed: a connection to 203.0.113.8"):
        sock.connect(("203.0.113.8", PORT))
"""


@pytest.mark.parametrize("how", ["option", "ini", "tracking-uri"])
def test_hosts_allowed_by_name_are_reachable_in_replay(pytester: pytest.Pytester, loopback_server, how: str):
    pytester.makepyfile(test_by_name=BY_NAME.format(port=loopback_server.port))
    args = ["-p", "no:randomly"]
    if how == "option":
        args.append("--llmops-allow-host=tracking.example.invalid")
    elif how == "ini":
        pytester.makeini("[pytest]\nllmops_allowed_hosts =\n    *.nothing.invalid\n    tracking.example.invalid\n")
    else:
        args.append(f"--llmops-tracking-uri=http://tracking.example.invalid:{loopback_server.port}")
    pytester.runpytest(*args).assert_outcomes(passed=3)
    assert loopback_server.seen == ["GET /api/2.0/mlflow/ping HTTP/1.1"] * 2
