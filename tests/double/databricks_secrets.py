"""The Secrets API (2.0) on the lab double, and what a cluster's environment becomes.

Scopes and secrets as the real workspace keeps them: ``scopes/create`` (409
``RESOURCE_ALREADY_EXISTS`` for a taken name), ``scopes/list``, ``scopes/delete`` (404
``RESOURCE_DOES_NOT_EXIST``), ``put`` (``string_value`` or ``bytes_value``), ``list`` (key
names and timestamps, never values) and ``delete``. Values can only be read the way a
cluster does: :func:`resolve` turns a cluster's ``spark_env_vars`` into the environment its
commands see, replacing every ``{{secrets/<scope>/<key>}}`` reference by the secret's value
(when the cluster starts, as Databricks fetches them at start).
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Mapping

from .routing import Request, Response, json_response

_REFERENCE = re.compile(r"\{\{secrets/([^/{}]+)/([^/{}]+)\}\}")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error_code": code, "message": message})


class MissingSecret(LookupError):
    """A ``{{secrets/...}}`` reference to a scope or key that does not exist."""


class Secrets:
    """Secret scopes of the double's workspace (``double.databricks.secrets``)."""

    def __init__(self, lock: threading.RLock, epoch_ms: Callable[[], int]) -> None:
        self.lock = lock
        self.epoch_ms = epoch_ms
        self.reset()

    def reset(self) -> None:
        """Forget every scope."""
        with self.lock:
            self._scopes: dict[str, dict[str, tuple[bytes, int]]] = {}
            self.events: list[tuple[str, str]] = []
            """``(verb, "scope" or "scope/key")`` in order: created, put, deleted."""

    # -- audit -------------------------------------------------------------------------------

    def scopes(self) -> dict[str, list[str]]:
        """Every scope and its key names (never values)."""
        with self.lock:
            return {name: sorted(keys) for name, keys in self._scopes.items()}

    def resolve(self, variables: Mapping[str, str]) -> dict[str, str]:
        """``spark_env_vars`` with their secret references replaced by the secrets' values.
        Raises :class:`MissingSecret` naming a reference that cannot be resolved."""

        def value(match: re.Match[str]) -> str:
            scope, key = match[1], match[2]
            with self.lock:
                stored = self._scopes.get(scope, {}).get(key)
            if stored is None:
                raise MissingSecret(f"Secret does not exist with scope: {scope} and key: {key}")
            return stored[0].decode("utf-8", "replace")

        return {name: _REFERENCE.sub(value, str(text)) for name, text in variables.items()}

    # -- handlers ----------------------------------------------------------------------------

    def create_scope(self, request: Request) -> Response:
        """``POST scopes/create``."""
        scope = str(request.json().get("scope") or "")
        if not _NAME.match(scope):
            return _error(
                400,
                "INVALID_PARAMETER_VALUE",
                "Scope name must consist of alphanumeric characters, dashes, underscores, and periods, "
                "and may not exceed 128 characters.",
            )
        with self.lock:
            if scope in self._scopes:
                return _error(409, "RESOURCE_ALREADY_EXISTS", f"Scope {scope} already exists!")
            self._scopes[scope] = {}
            self.events.append(("created", scope))
        return json_response(200, {})

    def list_scopes(self, request: Request) -> Response:
        """``GET scopes/list``."""
        with self.lock:
            scopes = [{"name": name, "backend_type": "DATABRICKS"} for name in self._scopes]
        return json_response(200, {"scopes": scopes} if scopes else {})

    def delete_scope(self, request: Request) -> Response:
        """``POST scopes/delete``: the scope and its secrets."""
        scope = str(request.json().get("scope") or "")
        with self.lock:
            if self._scopes.pop(scope, None) is None:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Scope {scope} does not exist!")
            self.events.append(("deleted", scope))
        return json_response(200, {})

    def put(self, request: Request) -> Response:
        """``POST put``: a string or bytes secret."""
        body = request.json()
        scope, key = str(body.get("scope") or ""), str(body.get("key") or "")
        given = [name for name in ("string_value", "bytes_value") if body.get(name) is not None]
        if len(given) != 1 or not _NAME.match(key):
            return _error(
                400,
                "INVALID_PARAMETER_VALUE",
                "Exactly one of string_value and bytes_value, and a valid key.",
            )
        raw = body[given[0]]
        data = str(raw).encode() if given[0] == "string_value" else base64.b64decode(str(raw))
        with self.lock:
            if scope not in self._scopes:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Scope {scope} does not exist!")
            self._scopes[scope][key] = (data, self.epoch_ms())
            self.events.append(("put", f"{scope}/{key}"))
        return json_response(200, {})

    def list_secrets(self, request: Request) -> Response:
        """``GET list?scope=``: key names and timestamps."""
        scope = request.query.get("scope", "")
        with self.lock:
            keys = self._scopes.get(scope)
            if keys is None:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Scope {scope} does not exist!")
            secrets = [{"key": key, "last_updated_timestamp": stamp} for key, (_, stamp) in keys.items()]
        return json_response(200, {"secrets": secrets} if secrets else {})

    def delete(self, request: Request) -> Response:
        """``POST delete``: one secret."""
        body = request.json()
        scope, key = str(body.get("scope") or ""), str(body.get("key") or "")
        with self.lock:
            if self._scopes.get(scope, {}).pop(key, None) is None:
                return _error(
                    404, "RESOURCE_DOES_NOT_EXIST", f"Secret {key} does not exist in scope {scope}!"
                )
            self.events.append(("deleted", f"{scope}/{key}"))
        return json_response(200, {})


def routes(secrets: Secrets) -> list[tuple[str, str, Callable[[Request], Response]]]:
    """The Secrets API routes (wrapped by the workspace's auth)."""
    return [
        ("POST", r"/api/2\.0/secrets/scopes/create", secrets.create_scope),
        ("GET", r"/api/2\.0/secrets/scopes/list", secrets.list_scopes),
        ("POST", r"/api/2\.0/secrets/scopes/delete", secrets.delete_scope),
        ("POST", r"/api/2\.0/secrets/put", secrets.put),
        ("GET", r"/api/2\.0/secrets/list", secrets.list_secrets),
        ("POST", r"/api/2\.0/secrets/delete", secrets.delete),
    ]
