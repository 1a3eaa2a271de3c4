"""Scrubbing secrets and hosts out of requests and responses before they reach a cassette.

Runs as vcrpy's ``before_record_request``/``before_record_response``: on everything
recorded, and on every request matched during replay, so both sides of a match are
scrubbed the same way. Replacements are valid in their context (hosts stay valid host
names, so a replayed ``Location`` header can still be followed).

What is secret is decided in :mod:`pytest_llmops.secrets` (names in ``rules``, values in
``known``, structured bodies in ``bodies``), shared with what the plugin writes to MLflow:
a value redacted by its name anywhere (a header, a query or form parameter, a JSON or
multipart field) is known from then on and replaced wherever else it appears, and before a
cassette is written every interaction is scrubbed again with everything known by then
(:meth:`Sanitizer.rescrub`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pytest_llmops.cassettes.replay_env import ARM_HOST, DATABRICKS_HOST, LOCAL_HOST, LOGIN_HOST, OPENAI_HOST
from pytest_llmops.errors import LLMOpsError
from pytest_llmops.secrets import bodies
from pytest_llmops.secrets.known import REDACTED, ZERO_GUID, KnownSecrets
from pytest_llmops.secrets.rules import Names

__all__ = [
    "ARM_HOST", "DATABRICKS_HOST", "LOCAL_HOST", "LOGIN_HOST", "OPENAI_HOST", "REDACTED", "ZERO_GUID",
    "Sanitizer", "UnsupportedLayout",
]


IGNORED_PATHS = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", "/ajax-api/2.0/mlflow/", "/ajax-api/3.0/mlflow/")
"""MLflow tracking traffic: never recorded, always sent for real."""

_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)$")
_OPENAI_HOST_RE = re.compile(r"\b[a-z0-9][a-z0-9-]*\.(openai\.azure\.com|cognitiveservices\.azure\.com)\b")
_DATABRICKS_HOST_RE = re.compile(r"\badb-\d+\.\d+\.azuredatabricks\.net\b")
_SUBSCRIPTION_RE = re.compile(
    r"(/subscriptions/)([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
)
_EXAMPLE_GUID = re.compile(r"([0-9a-fA-F])\1{7}-")
_JSON_START = ("{", "[")

Role = str  # "openai" | "databricks" | "arm" | "login" | "local"


_LOGIN_PATH = re.compile(
    r"^/[^/?]+/(?:v2\.0(?:[/?]|$)|discovery/|kerberos|\.well-known/openid-configuration)"
)
"""Entra ID paths below a tenant (tenant discovery, issuer, keys), besides ``/oauth2/``."""
_DATABRICKS_PREFIXES = ("/api/2.", "/api/1.2/", "/.well-known/databricks-config", "/oidc/")


def role_of_path(path: str) -> Role:
    """Which service a request to a local (or shared) endpoint is for, by its path."""
    if path.startswith("/openai/") or "//openai/" in path:
        return "openai"
    if path.startswith(_DATABRICKS_PREFIXES) or path == "/oidc":
        return "databricks"
    if path.startswith(("/subscriptions/", "/providers/", "/tenants")):
        return "arm"
    if "/oauth2/" in path or _LOGIN_PATH.match(path):
        return "login"
    return "local"


_ROLE_HOSTS: dict[Role, tuple[str, str]] = {
    "openai": ("https", OPENAI_HOST),
    "databricks": ("https", DATABRICKS_HOST),
    "arm": ("https", ARM_HOST),
    "login": ("https", LOGIN_HOST),
    "local": ("http", LOCAL_HOST),
}


def _local_url_role(path: str, has_scheme: bool) -> Role:
    """The service a URL of a local double (serving every API on one address) stands for,
    when it appears in a header value or a body: a bare ``host:port`` is a Databricks
    workspace (ARM's ``workspaceUrl`` carries no scheme); a bare base URL is an Azure OpenAI
    endpoint (an account's ``endpoint``, a cluster's ``AZURE_OPENAI_ENDPOINT``); anything
    with a path goes by its path (``Azure-AsyncOperation``/``Location`` to ARM...)."""
    if not has_scheme:
        return "databricks" if not path else role_of_path(path)
    if path in ("", "/"):
        return "openai"
    return role_of_path(path)


def replace_local_urls(text: str, netloc: str) -> str:
    """Every URL (or bare ``host:port``) of the local double at ``netloc`` in ``text``,
    written with the placeholder host of the service it stands for, as Azure's and
    Databricks' own answers would name it (``https://management.azure.com/...``)."""
    pattern = re.compile(rf"(https?://)?{re.escape(netloc)}(?![0-9])(/[^\s\"'<>\\]*)?")

    def placeholder(match: re.Match[str]) -> str:
        scheme, path = match[1], match[2] or ""
        role = _local_url_role(path, bool(scheme))
        placeholder_scheme, host = _ROLE_HOSTS[role]
        return f"{placeholder_scheme}://{host}{path}" if scheme else f"{host}{path}"

    return pattern.sub(placeholder, text)




class UnsupportedLayout(LLMOpsError):
    """A recorded response in a shape the sanitizer cannot scrub completely."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"pytest-llmops cannot scrub this response: {problem}. Nothing was written. Record it "
            "again with `pytest --llmops-record` (vcrpy's current layout: status, headers, body)."
        )


def _current_layout(response: dict[str, Any]) -> dict[str, Any]:
    """A response in vcrpy's current layout (``status``/``headers``/``body``). The layout
    older vcrpy releases wrote for httpx (``status_code``/``content``, the content already
    decoded, so a ``content-encoding`` header no longer applies) is converted."""
    if isinstance(response.get("body"), dict):
        return response
    if "status_code" not in response or "content" not in response:
        keys = sorted(response)
        raise UnsupportedLayout(f"it has neither a `body` nor `status_code` and `content` (keys: {keys})")
    content = response["content"]
    if isinstance(content, str):
        raw, encoded = content.encode("utf-8"), False
    elif isinstance(content, bytes):
        raw, encoded = content, content.startswith(b"\x1f\x8b")
    else:
        raise UnsupportedLayout(f"its `content` is a {type(content).__name__}, not text")
    headers: dict[str, list[Any]] = {}
    for name, values in (response.get("headers") or {}).items():
        if name.lower() != "content-encoding" or encoded:
            headers[name] = values if isinstance(values, list) else [values]
    status = {"code": response["status_code"], "message": response.get("reason_phrase") or ""}
    return {"status": status, "headers": headers, "body": {"string": raw}}


def _credential_parts(value: str) -> list[str]:
    """A credential header's value, and the secrets inside it: the token after an auth
    scheme (``Bearer x``), each cookie's value."""
    parts = [value]
    scheme, _, token = value.partition(" ")
    if token and scheme.isalpha():
        parts.append(token.strip())
    for cookie in value.split(";"):
        name, equals, cookie_value = cookie.partition("=")
        if equals and name.strip().lower() not in ("path", "domain", "expires", "max-age", "samesite"):
            parts.append(cookie_value.strip())
    return parts


@dataclass
class Sanitizer:
    """Scrubs one session's traffic. Configured from the environment and by
    ``pytest_llmops_configure`` (through the recorder). ``known`` and ``names`` are the
    session's (:mod:`pytest_llmops.secrets.session`), shared with the MLflow scrubbing."""

    known: KnownSecrets = field(default_factory=KnownSecrets)
    names: Names = field(default_factory=Names)
    ignored_paths: tuple[str, ...] = IGNORED_PATHS
    request_hooks: list[Callable[[Any], Any]] = field(default_factory=list)
    response_hooks: list[Callable[[dict[str, Any]], dict[str, Any] | None]] = field(default_factory=list)
    _netlocs: dict[str, Role] = field(default_factory=dict)

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], known: KnownSecrets | None = None, names: Names | None = None
    ) -> Sanitizer:
        """The default sanitizer: secret variables, ids and endpoints of this environment
        (``known``: the session's known secrets, which already hold the first two)."""
        sanitizer = cls(known=known if known is not None else KnownSecrets.from_environ(environ))
        if names is not None:
            sanitizer.names = names
        for name, role in (
            ("AZURE_OPENAI_ENDPOINT", "openai"),
            ("DATABRICKS_HOST", "databricks"),
            ("AZURE_RESOURCE_MANAGER_ENDPOINT", "arm"),
            ("AZURE_AUTHORITY_HOST", "login"),
        ):
            sanitizer.add_endpoint(environ.get(name), role)
        return sanitizer

    # -- configuration -------------------------------------------------------------
    @property
    def secret_headers(self) -> set[str]:
        return self.names.headers

    @property
    def secret_query(self) -> set[str]:
        return self.names.query

    @property
    def secret_form(self) -> set[str]:
        return self.names.form

    @property
    def secret_json(self) -> set[str]:
        return self.names.json

    def add_secret(self, value: str | None, name: str = "secret") -> None:
        """Scrub ``value`` (in any encoding) wherever it appears."""
        self.known.add(value, name)

    def add_endpoint(self, url: str | None, role: Role) -> None:
        """Replace the host of ``url`` by the placeholder of ``role`` in everything recorded."""
        if not url:
            return
        netloc = urlsplit(url if "//" in url else f"https://{url}").netloc.lower()
        if netloc:
            # One local double may serve every API: then the path decides (see role_of_path).
            host = netloc.rsplit(":", 1)[0]
            self._netlocs[netloc] = "shared" if _LOOPBACK.match(host) else role

    # -- text ----------------------------------------------------------------------
    def scrub_text(self, text: str) -> str:
        """Known secrets, ids and identities, hosts and subscription ids replaced in free text.
        A subscription id seen in a path is replaced everywhere, base64 forms included."""
        for match in _SUBSCRIPTION_RE.finditer(text):
            if not _EXAMPLE_GUID.match(match.group(2)):
                self.known.add_id(match.group(2))
        text = self.known.scrub(text)
        for netloc, role in self._netlocs.items():
            if netloc not in text:
                continue
            if role == "shared":
                text = replace_local_urls(text, netloc)
            else:
                scheme, host = _ROLE_HOSTS[role]
                text = text.replace(f"http://{netloc}", f"{scheme}://{host}").replace(netloc, host)
        text = _OPENAI_HOST_RE.sub(OPENAI_HOST, text)
        text = _DATABRICKS_HOST_RE.sub(DATABRICKS_HOST, text)
        return _SUBSCRIPTION_RE.sub(rf"\g<1>{ZERO_GUID}", text)

    def _redact_body(self, body: bytes, content_type: str) -> bytes:
        """First pass: fields named like secrets redacted (and their values made known)."""
        names = self.names
        if "multipart/form-data" in content_type:
            body = bodies.redact_multipart(body, content_type, names.form | names.json, self.known)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body
        if text.lstrip()[:1] in _JSON_START and "event-stream" not in content_type:
            scrubbed = bodies.scrub_json_text(text, names.json, self.known, lambda value: value)
            return body if scrubbed is None or scrubbed == text else scrubbed.encode("utf-8")
        if "x-www-form-urlencoded" in content_type:
            scrubbed = bodies.redact_form(text, names.form, self.known)
            return body if scrubbed == text else scrubbed.encode("utf-8")
        return body

    def _clean_body(self, body: bytes, content_type: str) -> bytes:
        """Second pass: every known value replaced (in binary bodies by same-length filler)."""
        if not body:
            return body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self.known.scrub_bytes(body)
        scrubbed = self.scrub_text(text)
        if scrubbed != text and text.lstrip()[:1] in _JSON_START and "event-stream" not in content_type:
            # Text replacement keeps the body's formatting; check it kept the JSON, else
            # clean the parsed document.
            cleaned = bodies.scrub_json_text(text, (), self.known, self.scrub_text)
            if cleaned is not None and cleaned != text and not _same_json(scrubbed, cleaned):
                scrubbed = cleaned
        return body if scrubbed == text else scrubbed.encode("utf-8")

    def _scrub_uri(self, uri: str) -> str:
        parts = urlsplit(uri)
        netloc = parts.netloc.lower()
        scheme = parts.scheme
        role = self._netlocs.get(netloc)
        host = netloc.rsplit(":", 1)[0]
        if role == "shared" or (role is None and _LOOPBACK.match(host)):
            role = role_of_path(parts.path)
        if role is not None:
            scheme, netloc = _ROLE_HOSTS[role]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            redacted = bodies.redact_pairs(pairs, self.names.query, self.known)
            if redacted is not None:
                query = urlencode(redacted)
        return urlunsplit((scheme, netloc, parts.path, query, parts.fragment))

    def _redact_header(self, name: str, value: Any) -> Any:
        if name in self.names.credential_headers and isinstance(value, str):
            for part in _credential_parts(value):
                self.known.learn(part)
        return REDACTED

    # -- vcrpy hooks ---------------------------------------------------------------
    def ignores(self, path: str) -> bool:
        """Whether a request is never recorded (MLflow tracking traffic)."""
        return any(marker in path for marker in self.ignored_paths)

    def request(self, request: Any) -> Any:
        """``before_record_request``: a scrubbed copy of a vcrpy request, or None to let it
        through unrecorded."""
        if self.ignores(request.path):
            return None
        request = self._scrub_request(request)
        for hook in self.request_hooks:
            request = hook(request)
            if request is None:
                return None
        return request

    def _scrub_request(self, request: Any) -> Any:
        request = copy.copy(request)
        uri = self._scrub_uri(request.uri)
        headers = {}
        for name, value in request.headers.items():
            lower = name.lower()
            headers[name] = self._redact_header(lower, value) if lower in self.names.headers else value
        content_type = str(headers.get("content-type", headers.get("Content-Type", ""))).lower()
        body = request.body_bytes
        if isinstance(body, bytes):
            body = self._redact_body(body, content_type)
        # Everything redacted by name is known now: replace it wherever else it is.
        request.uri = self.scrub_text(uri)
        for name, value in headers.items():
            if name.lower() == "host":
                headers[name] = request.parsed_uri.netloc
            elif isinstance(value, str) and value != REDACTED:
                headers[name] = self.scrub_text(value)
        request.headers = headers
        if isinstance(body, bytes):
            request.body = self._clean_body(body, content_type)
        return request

    def response(self, response: dict[str, Any]) -> dict[str, Any] | None:
        """``before_record_response``: scrub a vcrpy response dict (already a copy)."""
        response = self._scrub_response(response)
        for hook in self.response_hooks:
            result = hook(response)
            if result is None:
                return None
            response = result
        return response

    def _scrub_response(self, response: dict[str, Any]) -> dict[str, Any]:
        from vcr.filters import decode_response

        try:
            response = decode_response(_current_layout(response))
        except UnsupportedLayout:
            raise
        except Exception as exc:  # zlib.error, brotli's errors
            raise UnsupportedLayout(f"its body does not decode as its content-encoding says ({exc})") from exc
        headers = response.get("headers") or {}
        content_type = ""
        for name, values in list(headers.items()):
            values = values if isinstance(values, list) else [values]
            if name.lower() in self.names.headers:
                headers[name] = [self._redact_header(name.lower(), value) for value in values]
            else:
                headers[name] = values
            if name.lower() == "content-type" and values:
                content_type = str(values[0]).lower()
        body = response.get("body")
        if isinstance(body, dict) and isinstance(body.get("string"), str):
            body["string"] = body["string"].encode("utf-8")
        if isinstance(body, dict) and isinstance(body.get("string"), bytes):
            body["string"] = self._redact_body(body["string"], content_type)
        for name, values in headers.items():
            headers[name] = [self.scrub_text(v) if isinstance(v, str) and v != REDACTED else v
                             for v in values]
        if isinstance(body, dict) and isinstance(body.get("string"), bytes):
            body["string"] = self._clean_body(body["string"], content_type)
        return response

    def rescrub(self, interactions: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
        """Recorded interactions scrubbed again with every value known now: a value redacted
        in a later interaction is replaced in the earlier ones too (before the cassette is
        written). Scrubbing is idempotent: what was clean stays as it is."""
        return [(self._scrub_request(request), self._scrub_response(copy.deepcopy(response)))
                for request, response in interactions]


def _same_json(first: str, second: str) -> bool:
    import json

    try:
        return bool(json.loads(first) == json.loads(second))
    except ValueError:
        return False
