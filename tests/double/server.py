"""The lab double's HTTP server: a stdlib ``ThreadingHTTPServer`` on loopback, in a daemon thread.

API modules plug in through one function each, ``register(double) -> state``: it adds its
routes with ``double.route(...)`` and returns an object with ``reset()`` and ``close()``
that tests reach as an attribute (``double.openai``, ``double.databricks``). To add an
API (Azure Resource Manager, say), write ``arm_api.py`` with such a ``register`` and add
one line to ``LabDouble.__init__``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from . import arm_api, databricks_api, openai_api, tls
from .routing import Handler, RecordedRequest, Request, Response, Router, json_response

DEFAULT_API_VERSION = "2024-05-01-preview"


class DoubleAPI(Protocol):
    """What ``register(double)`` returns: per-API state that the double resets and closes."""

    def reset(self) -> None:
        """Forget everything and restore the defaults, as if the server had just started."""

    def close(self) -> None:
        """Release what the API holds outside the server (subprocesses, temp dirs)."""


def _is_loopback(host: str) -> bool:
    # The double must never listen on, or be mistaken for, a non-loopback address.
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LabDouble:
    """A local server speaking the Azure OpenAI and Databricks REST APIs the lab uses.

    Usage::

        with LabDouble() as double:
            client = AzureOpenAI(azure_endpoint=double.url, api_key=double.openai.api_key,
                                 api_version="2024-05-01-preview")
            ...
            assert double.requests[-1].headers["api-key"] == double.openai.api_key

    All state is guarded by ``double.lock``; attributes that expose state return snapshots.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        if not _is_loopback(host):
            raise ValueError(f"LabDouble only listens on loopback, not {host!r}")
        self.host = host
        self.verbose = verbose
        self.lock = threading.RLock()
        self.router = Router()
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tls_server: _Server | None = None
        self._tls_thread: threading.Thread | None = None
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        # One line per API; each registers its routes and returns its state object.
        self.openai = openai_api.register(self)
        self.databricks = databricks_api.register(self)
        self.arm = arm_api.register(self)
        self._apis: list[DoubleAPI] = [self.openai, self.databricks, self.arm]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LabDouble:
        """Bind (port 0 picks a free port) and serve in a daemon thread, plus an https
        listener on another free port (:attr:`login_url`); returns ``self``."""
        if self._server is not None:
            raise RuntimeError("LabDouble is already started")
        self._server, self._thread = _serve(_Server((self.host, self._requested_port), _Handler, self), "")
        secure = _Server((self.host, 0), _Handler, self)
        # The handshake happens in the connection's thread, not in the accepting loop.
        secure.socket = tls.server_context().wrap_socket(
            secure.socket, server_side=True, do_handshake_on_connect=False
        )
        self._tls_server, self._tls_thread = _serve(secure, "-tls")
        return self

    def stop(self) -> None:
        """Stop serving, close the sockets and release subprocesses; safe to call twice."""
        for server, thread in ((self._server, self._thread), (self._tls_server, self._tls_thread)):
            if server is not None:
                server.shutdown()
                server.close_connections()
                server.server_close()
            if thread is not None:
                thread.join(timeout=5)
        self._server = self._tls_server = None
        self._thread = self._tls_thread = None
        for api in self._apis:
            api.close()

    def __enter__(self) -> LabDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._server is None:
            raise RuntimeError("LabDouble is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765``: the OpenAI endpoint and the Databricks host."""
        return f"http://{self._netloc(self.port)}"

    @property
    def tls_port(self) -> int | None:
        """The port of the https listener (None before start)."""
        return None if self._tls_server is None else int(self._tls_server.server_address[1])

    @property
    def login_url(self) -> str:
        """The https base URL of the same APIs (self-signed, see :attr:`ca_bundle`): the
        Entra ID authority azure-identity accepts (it refuses ``http://`` authorities)."""
        if self.tls_port is None:
            raise RuntimeError("LabDouble is not started")
        return f"https://{self._netloc(self.tls_port)}"

    @property
    def ca_bundle(self) -> str:
        """The PEM file that makes clients trust :attr:`login_url`."""
        return str(tls.certificate()[0])

    def _netloc(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"

    def client_env(self) -> dict[str, str]:
        """Environment variables that point the SDKs (and the plugin's live mode) at this double."""
        return {
            "AZURE_OPENAI_ENDPOINT": self.url,
            "AZURE_OPENAI_API_KEY": self.openai.api_key,
            "AZURE_OPENAI_API_VERSION": DEFAULT_API_VERSION,
            "AZURE_OPENAI_DEPLOYMENT": sorted(self.openai.deployments)[0],
            "DATABRICKS_HOST": self.url,
            "DATABRICKS_TOKEN": sorted(self.databricks.tokens)[0],
        }

    # -- routes and the request log ----------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register a handler (used by API modules' ``register``); first match wins."""
        self.router.add(method, pattern, handler)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far: (method, path with query, headers, body) tuples."""
        with self.lock:
            return list(self._requests)

    def requests_to(self, path_regex: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests whose path (query excluded) matches ``path_regex`` (search)."""
        pattern = re.compile(path_regex)
        return [
            r
            for r in self.requests
            if pattern.search(urlsplit(r.path).path) and (method is None or r.method == method.upper())
        ]

    @property
    def handler_errors(self) -> list[str]:
        """Tracebacks of handlers that crashed (each answered 500): a test can assert none."""
        with self.lock:
            return list(self._errors)

    def reset(self) -> None:
        """Clear the request log and restore every API to its defaults (config included)."""
        with self.lock:
            self._requests.clear()
            self._errors.clear()
        for api in self._apis:
            api.reset()

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Record a request and dispatch it; the HTTP handler calls this for every request."""
        with self.lock:
            self._requests.append(RecordedRequest(method, target, headers, body))
        parts = urlsplit(target)
        found = self.router.find(method, parts.path)
        if found is None:
            return json_response(404, {"error": {"code": "404", "message": "Resource not found"}})
        handler, params = found
        request = Request(method, parts.path, dict(parse_qsl(parts.query)), headers, body, params)
        try:
            return handler(request)
        except Exception:
            # A crashing handler is a bug in the double: answer 500 and keep the traceback.
            error = traceback.format_exc()
            with self.lock:
                self._errors.append(error)
            return json_response(500, {"error": {"code": "DoubleCrashed", "message": error}})


def _serve(server: _Server, suffix: str) -> tuple[_Server, threading.Thread]:
    # A short poll interval makes stop() (shutdown) quick: it waits for the loop to notice.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=f"lab-double{suffix}", daemon=True
    )
    thread.start()
    return server, thread


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], double: LabDouble):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.double = double
        self.stopping = False
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut kept-alive connections: a stopped double must not keep answering pooled clients
        (a replay test that stops the server would otherwise still reach it)."""
        self.stopping = True
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.stopping:  # connections cut by stop() are expected to fail
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services; streams use chunked
    timeout = 60  # an idle keep-alive connection must not pin its thread forever
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the client's
    # delayed ACK add ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _Server

    def send_response(self, code: int, message: str | None = None) -> None:
        """The status line and ``Date``; no ``Server`` header (the real services' headers,
        where they send one, come from the API modules), so no recording names a fake server."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def log_message(self, format: str, *args: object) -> None:
        if self.server.double.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = self.server.double.handle(self.command, self.path, headers, body)
        try:
            self._write(response)
        except (BrokenPipeError, ConnectionResetError):
            # The client went away mid-stream (e.g. closed a stream early): nothing to answer.
            self.close_connection = True

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is None:
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in response.stream:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
