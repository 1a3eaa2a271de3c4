"""The Databricks REST API on the lab double: workspace discovery, SCIM Me, clusters.

The command execution API (1.2) lives in ``databricks_commands.py`` and the Secrets API in
``databricks_secrets.py``; all register here.

A cluster's commands see the environment the cluster was given, nothing else: its
``spark_env_vars``, with ``{{secrets/<scope>/<key>}}`` references resolved from the secret
store when the cluster starts (a reference that cannot be resolved stops the start with
termination reason ``SECRET_RESOLUTION_ERROR``).

Errors use the platform shape ``{"error_code", "message"}`` with the statuses the real
workspace sends. Notably ``clusters/get`` for an unknown (or permanently deleted) cluster
answers **400 INVALID_PARAMETER_VALUE "Cluster ... does not exist"**, as real workspaces do;
databricks-sdk maps exactly that to ``ResourceDoesNotExist`` (a ``NotFound``) through an
override in ``databricks/sdk/errors/overrides.py``.

A cores-quota failure behaves like Azure: ``clusters/create`` succeeds, the cluster sits in
PENDING while VMs are requested, then lands in TERMINATED with termination reason
``AZURE_QUOTA_EXCEEDED_EXCEPTION``; the SDK's ``create(...).result()`` raises
``OperationFailed`` carrying the state message.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import databricks_catalog as catalog
from . import databricks_cluster_shapes as shapes
from . import databricks_secrets
from .databricks_commands import CommandExecution
from .databricks_secrets import MissingSecret, Secrets
from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .server import LabDouble

DEFAULT_TOKEN = "dapi-double"
WORKSPACE_ID = "1234567890123456"
ACCOUNT_ID = "8f5c2a4e-0d1b-4c3a-9e7f-6b2d1c0a9e8f"
USER_NAME = "lab-user@example.com"
PENDING_MESSAGE = shapes.PENDING_MESSAGE


def db_error(status: int, error_code: str, message: str) -> Response:
    """A platform error response: ``{"error_code": ..., "message": ...}``."""
    return json_response(status, {"error_code": error_code, "message": message})


@dataclass
class _Cluster:
    info: dict[str, Any]
    since: float  # server clock when the current state was entered
    fail_with_quota: bool = False
    permanently_deleted: bool = False
    environment: dict[str, str] | None = None
    """What its commands see: ``spark_env_vars`` resolved when it last started."""


class DatabricksDouble:
    """State and knobs of the Databricks workspace (``double.databricks``).

    Knobs: ``tokens`` (accepted PATs), ``transition_seconds`` (PENDING->RUNNING,
    TERMINATING->TERMINATED, context Pending->Running; 0 = instant), ``fail_create_with_quota``,
    ``region`` (in quota messages), ``command_env`` (what the Databricks Runtime itself sets,
    e.g. ``MLFLOW_TRACKING_URI``; a cluster's own ``spark_env_vars`` come on top) and
    ``command_timeout`` (see ``databricks_commands``), ``throttle`` (path suffix -> how many of
    its next requests get 429 ``REQUEST_LIMIT_EXCEEDED`` with ``Retry-After: 1``).
    ``advance_clock(seconds)`` moves the server clock forward.
    Audits: ``clusters``, ``live_clusters()``, ``contexts``, ``live_contexts()``, ``commands``,
    ``secrets`` (scopes and key names, ``secrets.scopes()``).
    """

    def __init__(self, double: LabDouble) -> None:
        self.double = double
        self.lock: threading.RLock = double.lock
        self._clock_offset = 0.0
        self.commands_api = CommandExecution(self)
        self.secrets = Secrets(self.lock, self.epoch_ms)
        self.reset()

    def reset(self) -> None:
        """Restore the defaults; forget clusters, contexts, commands and secrets."""
        self.commands_api.reset()
        self.secrets.reset()
        with self.lock:
            self.tokens: set[str] = {DEFAULT_TOKEN}
            self.workspace_id = WORKSPACE_ID
            self.user_name = USER_NAME
            self.region = "swedencentral"
            self.transition_seconds = 0.2
            self.fail_create_with_quota = False
            self.command_env: dict[str, str] = {}
            self.command_timeout = 120.0
            self.throttle: dict[str, int] = {}
            self._clock_offset = 0.0
            self._clusters: dict[str, _Cluster] = {}
            self._sequence = 0

    def close(self) -> None:
        """Kill running commands and remove the contexts' working folders."""
        self.commands_api.close()

    # -- clock -------------------------------------------------------------------------------

    def now(self) -> float:
        """The server clock (monotonic seconds) that state transitions are measured on."""
        return time.monotonic() + self._clock_offset

    def epoch_ms(self) -> int:
        """Wall-clock milliseconds for API timestamps, shifted like the server clock."""
        return int((time.time() + self._clock_offset) * 1000)

    def advance_clock(self, seconds: float) -> None:
        """Move the server clock forward: pending transitions fire on the next poll."""
        with self.lock:
            self._clock_offset += seconds

    # -- audits ------------------------------------------------------------------------------

    @property
    def clusters(self) -> dict[str, dict[str, Any]]:
        """Every cluster ever created (id -> cluster JSON plus ``permanently_deleted``)."""
        with self.lock:
            result = {}
            for cluster_id, cluster in self._clusters.items():
                self._advance(cluster)
                result[cluster_id] = {
                    **copy.deepcopy(cluster.info),
                    "permanently_deleted": cluster.permanently_deleted,
                }
            return result

    def live_clusters(self) -> list[dict[str, Any]]:
        """Clusters not permanently deleted (terminated ones included): what a sweep must find empty."""
        return [c for c in self.clusters.values() if not c["permanently_deleted"]]

    @property
    def contexts(self) -> dict[str, dict[str, Any]]:
        """Every execution context (id -> id, cluster_id, language, status, destroyed)."""
        return self.commands_api.contexts()

    def live_contexts(self) -> list[dict[str, Any]]:
        """Contexts not destroyed through the API."""
        return [c for c in self.contexts.values() if not c["destroyed"]]

    @property
    def commands(self) -> dict[str, dict[str, Any]]:
        """Every command (id -> command, status, results, stdout, stderr, returncode)."""
        return self.commands_api.commands()

    def cluster_environment(self, cluster_id: str) -> dict[str, str]:
        """The environment variables a running cluster's commands get (its resolved
        ``spark_env_vars``)."""
        with self.lock:
            cluster = self._clusters.get(cluster_id)
            return dict(cluster.environment or {}) if cluster is not None else {}

    def cluster_state(self, cluster_id: str) -> str | None:
        """The current state of a live cluster, or None (unknown or permanently deleted)."""
        with self.lock:
            cluster = self._clusters.get(cluster_id)
            if cluster is None or cluster.permanently_deleted:
                return None
            self._advance(cluster)
            return str(cluster.info["state"])

    # -- auth and plumbing -------------------------------------------------------------------

    def authed(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Wrap a handler with the PAT check and the workspace's response headers."""

        def wrapped(request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                message = "Credential was not sent or was of an unsupported type for this API."
                response = db_error(401, "401", message)
            elif token not in self.tokens:
                response = db_error(403, "403", "Invalid access token.")
            elif self._throttled(request.path):
                response = db_error(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests, retry later.")
                response.headers["Retry-After"] = "1"
            else:
                response = handler(request)
            response.headers.setdefault("x-databricks-org-id", self.workspace_id)
            return response

        return wrapped

    def _throttled(self, path: str) -> bool:
        with self.lock:
            for suffix, count in self.throttle.items():
                if path.endswith(suffix) and count > 0:
                    self.throttle[suffix] = count - 1
                    return True
        return False

    def well_known(self, request: Request) -> Response:
        """Host metadata; unauthenticated, as on a real workspace."""
        return json_response(
            200,
            {
                "oidc_endpoint": f"{self.double.url}/oidc",
                "account_id": ACCOUNT_ID,
                "workspace_id": self.workspace_id,
                "cloud": "azure",
            },
        )

    def me(self, request: Request) -> Response:
        """SCIM ``Me``: the lab user."""
        return json_response(
            200,
            {
                "schemas": [
                    "urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:workspace:2.0:User",
                ],
                "id": "4242424242424242",
                "userName": self.user_name,
                "displayName": "Lab User",
                "name": {"givenName": "Lab", "familyName": "User"},
                "active": True,
                "emails": [{"type": "work", "value": self.user_name, "primary": True}],
                "groups": [{"display": "admins", "type": "direct", "value": "1111111111111111"}],
                "entitlements": [{"value": "allow-cluster-create"}, {"value": "workspace-access"}],
            },
        )

    # -- clusters ----------------------------------------------------------------------------

    def _advance(self, cluster: _Cluster) -> None:
        """Apply the transition that is due (caller holds the lock)."""
        info = cluster.info
        if self.now() - cluster.since < self.transition_seconds:
            return
        state = info["state"]
        if state in ("PENDING", "RESTARTING"):
            if cluster.fail_with_quota:
                self._terminate(cluster, shapes.quota_reason(info, self.region))
                return
            try:
                cluster.environment = self.secrets.resolve(info.get("spark_env_vars") or {})
            except MissingSecret as error:
                reason = {
                    "code": "SECRET_RESOLUTION_ERROR",
                    "type": "CLIENT_ERROR",
                    "parameters": {"databricks_error_message": str(error)},
                }
                self._terminate(cluster, reason)
                return
            self._run(cluster)
        elif state == "TERMINATING":
            reason = {"code": "USER_REQUEST", "type": "SUCCESS", "parameters": {"username": self.user_name}}
            self._terminate(cluster, reason)

    def _set_state(self, cluster: _Cluster, state: str, message: str = "") -> None:
        cluster.info["state"] = state
        cluster.info["state_message"] = message
        cluster.since = self.now()

    def _run(self, cluster: _Cluster) -> None:
        shapes.start_nodes(cluster.info, self.epoch_ms())
        self._set_state(cluster, "RUNNING")

    def _terminate(self, cluster: _Cluster, reason: dict[str, Any]) -> None:
        shapes.stop_nodes(cluster.info, reason, self.epoch_ms())
        cluster.environment = None
        self._set_state(cluster, "TERMINATED", shapes.termination_message(reason))

    def _find(self, cluster_id: Any) -> _Cluster | Response:
        if not cluster_id:
            return db_error(400, "INVALID_PARAMETER_VALUE", "Missing required field: cluster_id")
        cluster = self._clusters.get(str(cluster_id))
        if cluster is None or cluster.permanently_deleted:
            return db_error(400, "INVALID_PARAMETER_VALUE", f"Cluster {cluster_id} does not exist")
        self._advance(cluster)
        return cluster

    def create_cluster(self, request: Request) -> Response:
        """``POST clusters/create``: validate, then PENDING."""
        body = request.json()
        spark_version = body.get("spark_version")
        node_type_id = body.get("node_type_id")
        if not spark_version:
            return db_error(400, "INVALID_PARAMETER_VALUE", "Missing required field: spark_version")
        if spark_version not in catalog.SPARK_VERSION_KEYS:
            return db_error(400, "INVALID_PARAMETER_VALUE", f"Invalid spark version {spark_version}.")
        if not node_type_id:
            return db_error(400, "INVALID_PARAMETER_VALUE", "Missing required field: node_type_id")
        if node_type_id not in catalog.NODE_TYPES_BY_ID:
            return db_error(400, "INVALID_PARAMETER_VALUE", f"Node type {node_type_id} is not supported.")
        with self.lock:
            self._sequence += 1
            cluster_id = f"0101-000000-lab{self._sequence:05d}"
            info = shapes.new_cluster_info(cluster_id, body, self.user_name, self.epoch_ms())
            cluster = _Cluster(info, self.now(), fail_with_quota=self.fail_create_with_quota)
            self._clusters[cluster_id] = cluster
        return json_response(200, {"cluster_id": cluster_id})

    def get_cluster(self, request: Request) -> Response:
        """``GET clusters/get?cluster_id=``."""
        with self.lock:
            found = self._find(request.query.get("cluster_id"))
            if isinstance(found, Response):
                return found
            return json_response(200, found.info)

    def list_clusters(self, request: Request) -> Response:
        """``GET clusters/list``: every cluster not permanently deleted, newest first."""
        with self.lock:
            live = [c for c in self._clusters.values() if not c.permanently_deleted]
            for cluster in live:
                self._advance(cluster)
            infos = [c.info for c in reversed(live)]
            return json_response(200, {"clusters": infos})

    def start_cluster(self, request: Request) -> Response:
        """``POST clusters/start``: TERMINATED -> PENDING; anything else is INVALID_STATE."""
        with self.lock:
            found = self._find(request.json().get("cluster_id"))
            if isinstance(found, Response):
                return found
            state = found.info["state"]
            if state != "TERMINATED":
                message = f"Cluster {found.info['cluster_id']} is in unexpected state {state.title()}."
                return db_error(400, "INVALID_STATE", message)
            found.fail_with_quota = self.fail_create_with_quota
            found.info["start_time"] = self.epoch_ms()
            self._set_state(found, "PENDING", PENDING_MESSAGE)
            return json_response(200, {})

    def delete_cluster(self, request: Request) -> Response:
        """``POST clusters/delete`` (terminate): -> TERMINATING; a no-op when already stopping."""
        with self.lock:
            found = self._find(request.json().get("cluster_id"))
            if isinstance(found, Response):
                return found
            if found.info["state"] not in ("TERMINATING", "TERMINATED"):
                self._set_state(found, "TERMINATING")
            return json_response(200, {})

    def permanent_delete_cluster(self, request: Request) -> Response:
        """``POST clusters/permanent-delete``: gone from get and list (kept in the audit)."""
        with self.lock:
            found = self._find(request.json().get("cluster_id"))
            if isinstance(found, Response):
                return found
            found.permanently_deleted = True
            return json_response(200, {})

    def spark_versions(self, request: Request) -> Response:
        """``GET clusters/spark-versions``."""
        return json_response(200, {"versions": catalog.SPARK_VERSIONS})

    def node_types(self, request: Request) -> Response:
        """``GET clusters/list-node-types``."""
        return json_response(200, {"node_types": catalog.NODE_TYPES})


def register(double: LabDouble) -> DatabricksDouble:
    """Add the Databricks routes to ``double`` and return their state object."""
    api = DatabricksDouble(double)
    commands = api.commands_api
    double.route("GET", r"/\.well-known/databricks-config", api.well_known)
    routes: list[tuple[str, str, Callable[[Request], Response]]] = [
        ("GET", r"/api/2\.0/preview/scim/v2/Me", api.me),
        ("POST", r"/api/2\.[01]/clusters/create", api.create_cluster),
        ("GET", r"/api/2\.[01]/clusters/get", api.get_cluster),
        ("GET", r"/api/2\.[01]/clusters/list", api.list_clusters),
        ("POST", r"/api/2\.[01]/clusters/start", api.start_cluster),
        ("POST", r"/api/2\.[01]/clusters/delete", api.delete_cluster),
        ("POST", r"/api/2\.[01]/clusters/permanent-delete", api.permanent_delete_cluster),
        ("GET", r"/api/2\.[01]/clusters/spark-versions", api.spark_versions),
        ("GET", r"/api/2\.[01]/clusters/list-node-types", api.node_types),
        ("POST", r"/api/1\.2/contexts/create", commands.create_context),
        ("GET", r"/api/1\.2/contexts/status", commands.context_status),
        ("POST", r"/api/1\.2/contexts/destroy", commands.destroy_context),
        ("POST", r"/api/1\.2/commands/execute", commands.execute),
        ("GET", r"/api/1\.2/commands/status", commands.command_status),
        ("POST", r"/api/1\.2/commands/cancel", commands.cancel),
        *databricks_secrets.routes(api.secrets),
    ]
    for method, pattern, handler in routes:
        double.route(method, pattern, api.authed(handler))

    def not_found(request: Request) -> Response:
        return db_error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")

    double.route("*", r"/api/.*", not_found)
    return api
