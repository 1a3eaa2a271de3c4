"""Scrubbing secrets and hosts out of requests and responses: the one place it is done.

Runs as vcrpy's ``before_record_request``/``before_record_response``: on everything
recorded, and on every request matched during replay, so both sides of a match are
scrubbed the same way. Replacements are valid in their context (hosts stay valid host
names, so a replayed ``Location`` header can still be followed).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"
ZERO_GUID = "00000000-0000-0000-0000-000000000000"

OPENAI_HOST = "resource.openai.azure.com"
DATABRICKS_HOST = "adb-0000000000000000.0.azuredatabricks.net"
ARM_HOST = "management.azure.com"
LOGIN_HOST = "login.microsoftonline.com"
LOCAL_HOST = "localhost"

SECRET_ENV_VARS = (
    "AZURE_OPENAI_API_KEY",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_PASSWORD",
    "ARM_CLIENT_SECRET",
    "OPENAI_API_KEY",
)
"""Environment variables whose values are scrubbed wherever they appear."""

ID_ENV_VARS = ("AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID", "ARM_SUBSCRIPTION_ID", "ARM_TENANT_ID")
"""Identifiers replaced by the zero GUID."""

SECRET_HEADERS = frozenset(
    {
        "api-key",
        "authorization",
        "proxy-authorization",
        "ocp-apim-subscription-key",
        "cookie",
        "set-cookie",
        "x-ms-authorization-auxiliary",
        "x-databricks-azure-sp-management-token",
        "x-databricks-azure-workspace-resource-id",
        "x-databricks-org-id",
        "apim-request-id",
        "x-request-id",
        "x-ms-request-id",
        "x-ms-client-request-id",
        "x-ms-correlation-request-id",
        "x-ms-routing-request-id",
        "x-ms-arm-service-request-id",
        "x-databricks-request-id",
        "request-id",
        "traceparent",
        "azureml-model-session",
        "openai-organization",
        "openai-project",
    }
)
SECRET_QUERY = frozenset(
    {"sig", "code", "token", "access_token", "refresh_token", "id_token", "client_secret", "api-key",
     "subscription-key", "password", "client_assertion", "assertion"}
)
SECRET_FORM = frozenset(
    {"client_secret", "client_assertion", "password", "refresh_token", "access_token", "code",
     "assertion", "id_token", "code_verifier", "token"}
)
SECRET_JSON = frozenset(
    key.lower()
    for key in (
        "access_token", "refresh_token", "id_token", "client_secret", "password", "key1", "key2",
        "primaryKey", "secondaryKey", "connectionString", "primaryConnectionString",
        "secondaryConnectionString", "token_value", "api_key", "apiKey", "secret", "accessToken",
        "refreshToken", "sasToken", "sas_token", "private_key", "client_assertion",
        "string_value", "bytes_value",  # Databricks Secrets API: put_secret's value
    )
)
IGNORED_PATHS = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", "/ajax-api/2.0/mlflow/", "/ajax-api/3.0/mlflow/")
"""MLflow tracking traffic: never recorded, always sent for real."""

_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)$")
_OPENAI_HOST_RE = re.compile(r"\b[a-z0-9][a-z0-9-]*\.(openai\.azure\.com|cognitiveservices\.azure\.com)\b")
_DATABRICKS_HOST_RE = re.compile(r"\badb-\d+\.\d+\.azuredatabricks\.net\b")
_SUBSCRIPTION_RE = re.compile(
    r"(/subscriptions/)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

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


def _variants(value: str) -> list[str]:
    """A secret as it may appear: raw, URL-encoded and inside base64 text at any alignment."""
    raw = value.encode("utf-8")
    found = {value, quote(value, safe=""), quote_plus(value)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            encoded = encode(b"\0" * offset + raw).decode("ascii")
            # Characters touched by neighbouring bytes differ in real text: keep the core.
            core = encoded[(4 * offset + 2) // 3 : ((offset + len(raw)) * 4) // 3]
            if len(core) >= 8:
                found.add(core)
    return sorted((v for v in found if len(v) >= 6), key=len, reverse=True)


@dataclass
class Sanitizer:
    """Scrubs one session's traffic. Configured from the environment and by
    ``pytest_llmops_configure`` (through the recorder)."""

    secret_headers: set[str] = field(default_factory=lambda: set(SECRET_HEADERS))
    secret_query: set[str] = field(default_factory=lambda: set(SECRET_QUERY))
    secret_form: set[str] = field(default_factory=lambda: set(SECRET_FORM))
    secret_json: set[str] = field(default_factory=lambda: set(SECRET_JSON))
    ignored_paths: tuple[str, ...] = IGNORED_PATHS
    request_hooks: list[Callable[[Any], Any]] = field(default_factory=list)
    response_hooks: list[Callable[[dict[str, Any]], dict[str, Any] | None]] = field(default_factory=list)
    _secrets: dict[str, str] = field(default_factory=dict)  # variant -> replacement
    _ids: dict[str, str] = field(default_factory=dict)
    _netlocs: dict[str, Role] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Sanitizer:
        """The default sanitizer: secret variables, ids and endpoints of this environment."""
        sanitizer = cls()
        for name in SECRET_ENV_VARS:
            sanitizer.add_secret(environ.get(name), name)
        for name in ID_ENV_VARS:
            value = environ.get(name, "").strip()
            if len(value) >= 8:
                sanitizer._ids[value] = ZERO_GUID
        for name, role in (
            ("AZURE_OPENAI_ENDPOINT", "openai"),
            ("DATABRICKS_HOST", "databricks"),
            ("AZURE_RESOURCE_MANAGER_ENDPOINT", "arm"),
            ("AZURE_AUTHORITY_HOST", "login"),
        ):
            sanitizer.add_endpoint(environ.get(name), role)
        return sanitizer

    # -- configuration -------------------------------------------------------------
    def add_secret(self, value: str | None, name: str = "secret") -> None:
        """Scrub ``value`` (and its URL-encoded and base64 forms) wherever it appears."""
        if not value or len(value.strip()) < 6:
            return
        for variant in _variants(value.strip()):
            self._secrets.setdefault(variant, f"<{name}>")

    def add_endpoint(self, url: str | None, role: Role) -> None:
        """Replace the host of ``url`` by the placeholder of ``role`` in everything recorded."""
        if not url:
            return
        netloc = urlsplit(url if "//" in url else f"https://{url}").netloc.lower()
        if netloc:
            # One local double may serve every API: then the path decides (see role_of_path).
            host = netloc.rsplit(":", 1)[0]
            self._netlocs[netloc] = "shared" if _LOOPBACK.match(host) else role

    @property
    def secret_values(self) -> list[str]:
        """Every exact value scrubbed (for the scanner's known-secret rule)."""
        return list(self._secrets)

    # -- text ----------------------------------------------------------------------
    def scrub_text(self, text: str) -> str:
        """Secrets, ids, hosts and subscription ids replaced in free text."""
        for variant, replacement in self._secrets.items():
            if variant in text:
                text = text.replace(variant, replacement)
        for value, replacement in self._ids.items():
            if value in text:
                text = text.replace(value, replacement)
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

    def _scrub_body(self, body: bytes, content_type: str) -> bytes:
        if not body:
            return body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body
        scrubbed = self.scrub_text(text)
        stripped = scrubbed.lstrip()
        if stripped[:1] in ("{", "[") and "event-stream" not in content_type:
            scrubbed = self._scrub_json_text(scrubbed)
        elif "x-www-form-urlencoded" in content_type:
            scrubbed = self._scrub_form(scrubbed)
        return body if scrubbed == text else scrubbed.encode("utf-8")

    def _scrub_json_text(self, text: str) -> str:
        try:
            data = json.loads(text)
        except ValueError:
            return text
        changed = self._scrub_json(data)
        return json.dumps(data, separators=(",", ":")) if changed else text

    def _scrub_json(self, node: Any) -> bool:
        changed = False
        if isinstance(node, dict):
            for key, value in node.items():
                if key.lower() in self.secret_json and isinstance(value, str) and value != REDACTED:
                    node[key] = REDACTED
                    changed = True
                elif isinstance(value, (dict, list)):
                    changed = self._scrub_json(value) or changed
        elif isinstance(node, list):
            for item in node:
                changed = self._scrub_json(item) or changed
        return changed

    def _scrub_form(self, text: str) -> str:
        pairs = parse_qsl(text, keep_blank_values=True)
        if not any(key.lower() in self.secret_form for key, _ in pairs):
            return text
        return urlencode([(k, REDACTED if k.lower() in self.secret_form else v) for k, v in pairs])

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
            if any(key.lower() in self.secret_query for key, _ in pairs):
                query = urlencode([(k, REDACTED if k.lower() in self.secret_query else v) for k, v in pairs])
        rebuilt = urlunsplit((scheme, netloc, parts.path, query, parts.fragment))
        return self.scrub_text(rebuilt)

    # -- vcrpy hooks ---------------------------------------------------------------
    def ignores(self, path: str) -> bool:
        """Whether a request is never recorded (MLflow tracking traffic)."""
        return any(marker in path for marker in self.ignored_paths)

    def request(self, request: Any) -> Any:
        """``before_record_request``: a scrubbed copy of a vcrpy request, or None to let it
        through unrecorded."""
        if self.ignores(request.path):
            return None
        request = copy.copy(request)
        request.uri = self._scrub_uri(request.uri)
        headers = {}
        for name, value in request.headers.items():
            if name.lower() in self.secret_headers:
                headers[name] = REDACTED
            elif name.lower() == "host":
                headers[name] = request.parsed_uri.netloc
            else:
                headers[name] = self.scrub_text(value) if isinstance(value, str) else value
        request.headers = headers
        body = request.body_bytes
        if isinstance(body, bytes):
            request.body = self._scrub_body(body, str(request.headers.get("content-type", "")).lower())
        for hook in self.request_hooks:
            request = hook(request)
            if request is None:
                return None
        return request

    def response(self, response: dict[str, Any]) -> dict[str, Any] | None:
        """``before_record_response``: scrub a vcrpy response dict (already a copy)."""
        from vcr.filters import decode_response

        response = decode_response(response)
        headers = response.get("headers") or {}
        content_type = ""
        for name, values in list(headers.items()):
            values = values if isinstance(values, list) else [values]
            if name.lower() in self.secret_headers:
                headers[name] = [REDACTED for _ in values]
            else:
                headers[name] = [self.scrub_text(v) if isinstance(v, str) else v for v in values]
            if name.lower() == "content-type" and values:
                content_type = str(values[0]).lower()
        body = response.get("body")
        if isinstance(body, dict) and isinstance(body.get("string"), bytes):
            body["string"] = self._scrub_body(body["string"], content_type)
        for hook in self.response_hooks:
            result = hook(response)
            if result is None:
                return None
            response = result
        return response

