"""Azure Resource Manager on the lab double: Cognitive Services (Azure OpenAI) accounts,
deployments, keys, usages, models and soft-deleted accounts; Databricks workspaces; and an
Entra ID token endpoint for credentials that fetch tokens over HTTP.

Shapes follow the official examples in ``azure-rest-api-specs`` (CreateAccount,
PutDeployment, GetDeployment, ListKeys; Workspaces_CreateOrUpdate/Get/Delete). Long-running
operations answer as ARM does: 201 or 202 with ``Azure-AsyncOperation`` (deletes add
``Location``) and ``Retry-After``. An operation finishes after ``polls`` status reads rather
than after some time, so a recording made against the double replays identically.

What the created resources point at is the double itself: an account's ``endpoint`` is the
double's URL, and a deployment becomes a deployment of the double's Azure OpenAI API
(``double.openai.deployments``) once its creation finished; a workspace's ``workspaceUrl``
is the double's ``host:port``.

Knobs (``double.arm``): ``polls``, ``retry_after``, ``quota_limit``, ``fail_quota(region,
at)``, ``unavailable_models``, ``disable_local_auth``, ``accepted_tokens``, ``client_secret``.
Audit: ``audit()``, ``leaks()`` (everything live or soft-deleted), ``events``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .server import LabDouble

DEFAULT_ARM_TOKEN = "double-arm-token"
DEFAULT_CLIENT_SECRET = "double-client-secret-0000"
DEFAULT_QUOTA_LIMIT = 450  # thousands of tokens per minute, per model and region
LAB_REGIONS = ("eastus2", "northcentralus", "swedencentral", "switzerlandwest")
GPT_4O_VERSIONS = (("2024-11-20", True), ("2024-08-06", False), ("2024-05-13", False))
QUOTA_STAGES = ("usage", "account", "deployment")

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourceGroups/(?P<rg>[^/]+)"
_COG = r"/providers/Microsoft\.CognitiveServices"
_COG_PATH = "/providers/Microsoft.CognitiveServices"
_DATABRICKS_PATH = "/providers/Microsoft.Databricks/workspaces"
_ACCOUNT = _RG + _COG + r"/accounts/(?P<account>[^/]+)"
_LOCATION = _SUB + _COG + r"/locations/(?P<location>[^/]+)"
_WORKSPACE = _RG + r"/providers/Microsoft\.Databricks/workspaces/(?P<workspace>[^/]+)"


def arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """An ARM error response: ``{"error": {"code": ..., "message": ...}}``."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _system_data() -> dict[str, str]:
    now = _now()
    return {
        "createdBy": "lab-user@example.com",
        "createdByType": "User",
        "createdAt": now,
        "lastModifiedBy": "lab-user@example.com",
        "lastModifiedByType": "User",
        "lastModifiedAt": now,
    }


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass
class _Operation:
    """A long-running operation: ``finish`` runs on the read that completes it."""

    polls_left: int
    finish: Callable[[], dict[str, Any] | None]
    status: str = "InProgress"
    error: dict[str, Any] | None = None
    started: str = field(default_factory=_now)


class ArmDouble:
    """State and knobs of Azure Resource Manager (``double.arm``); ``reset()`` restores defaults.

    Resources are keyed by lower-cased names (ARM names are case-insensitive).
    """

    def __init__(self, double: LabDouble) -> None:
        self.double = double
        self.lock: threading.RLock = double.lock
        self.reset()

    def reset(self) -> None:
        """Forget every resource, operation and event; restore the knobs."""
        with self.lock:
            self.polls = 1
            """Status reads answered ``InProgress`` before an operation succeeds."""
            self.retry_after = "1"
            """The ``Retry-After`` header of accepted operations and in-progress statuses."""
            self.quota_limit = DEFAULT_QUOTA_LIMIT
            self.accepted_tokens: set[str] = {DEFAULT_ARM_TOKEN}
            self.client_secret = DEFAULT_CLIENT_SECRET
            self.unavailable_models: dict[str, set[str]] = {}
            self.disable_local_auth = False
            """Create accounts with keys disabled, as an Azure Policy enforcing Entra ID does."""
            self._quota_failures: dict[str, str] = {}
            self._accounts: dict[tuple[str, str, str], dict[str, Any]] = {}
            self._deleted: dict[tuple[str, str, str], dict[str, Any]] = {}
            self._workspaces: dict[tuple[str, str, str], dict[str, Any]] = {}
            self._operations: dict[str, _Operation] = {}
            self.events: list[tuple[str, str, str]] = []
            """``(verb, kind, name)`` in order: created, deleted, purged, refused."""

    def close(self) -> None:
        """Nothing to release."""

    # -- knobs -------------------------------------------------------------------------------

    def fail_quota(self, region: str, at: str = "deployment") -> None:
        """Make ``region`` run out of quota. ``at``: ``"usage"`` (the usages API reports the
        gpt-4o quota used up), ``"account"`` (creating an account fails with QuotaExceeded) or
        ``"deployment"`` (usages look fine, creating the deployment fails with
        InsufficientQuota, as when another deployment took the quota meanwhile)."""
        if at not in QUOTA_STAGES:
            raise ValueError(f"at must be one of {QUOTA_STAGES}, not {at!r}")
        with self.lock:
            self._quota_failures[region.lower()] = at

    # -- audit -------------------------------------------------------------------------------

    def audit(self) -> dict[str, Any]:
        """A snapshot of what exists: accounts (with deployments), soft-deleted accounts,
        workspaces, and the events so far."""
        with self.lock:
            return {
                "accounts": {
                    a["name"]: {
                        "location": a["location"],
                        "resourceGroup": key[1],
                        "tags": dict(a.get("tags") or {}),
                        "provisioningState": a["properties"]["provisioningState"],
                        "deployments": sorted(d["name"] for d in a["deployments"].values()),
                    }
                    for key, a in self._accounts.items()
                },
                "deleted_accounts": {
                    a["name"]: {"location": a["location"], "resourceGroup": key[1]}
                    for key, a in self._deleted.items()
                },
                "workspaces": {
                    w["name"]: {
                        "location": w["location"],
                        "resourceGroup": key[1],
                        "tags": dict(w.get("tags") or {}),
                        "provisioningState": w["properties"]["provisioningState"],
                    }
                    for key, w in self._workspaces.items()
                },
                "events": list(self.events),
            }

    def leaks(self) -> list[str]:
        """Everything that still exists or awaits purge; ``[]`` when a run cleaned up."""
        snapshot = self.audit()
        found = [f"account {name}" for name in snapshot["accounts"]]
        found += [f"soft-deleted account {name}" for name in snapshot["deleted_accounts"]]
        found += [f"workspace {name}" for name in snapshot["workspaces"]]
        return found

    def seed_account(
        self, name: str, *, subscription: str, resource_group: str, location: str, tags: dict[str, str]
    ) -> None:
        """Plant an existing (say, leaked) OpenAI account with a gpt-4o deployment."""
        with self.lock:
            key = (subscription.lower(), resource_group.lower(), name.lower())
            account = self._account_body(subscription, resource_group, name, location, "OpenAI", tags, {}, "")
            account["properties"]["provisioningState"] = "Succeeded"
            self._accounts[key] = account
            deployment = self._deployment_body(
                account,
                "gpt-4o",
                {"name": "Standard", "capacity": 10},
                {"model": {"format": "OpenAI", "name": "gpt-4o", "version": GPT_4O_VERSIONS[0][0]}},
            )
            deployment["properties"]["provisioningState"] = "Succeeded"
            account["deployments"]["gpt-4o"] = deployment

    def seed_workspace(
        self, name: str, *, subscription: str, resource_group: str, location: str, tags: dict[str, str]
    ) -> None:
        """Plant an existing (say, leaked) Databricks workspace."""
        with self.lock:
            key = (subscription.lower(), resource_group.lower(), name.lower())
            body = {
                "location": location,
                "sku": {"name": "premium"},
                "tags": tags,
                "properties": {"managedResourceGroupId": f"/subscriptions/{subscription}/resourceGroups/mrg"},
            }
            workspace = self._workspace_body(subscription, resource_group, name, body, "")
            workspace["properties"]["provisioningState"] = "Succeeded"
            self._workspaces[key] = workspace

    # -- plumbing ----------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        host = request.headers.get("host")
        return f"http://{host}" if host else self.double.url

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self.lock:
            return scheme.lower() == "bearer" and token in self.accepted_tokens

    def _accepted(
        self,
        request: Request,
        status: int,
        body: dict[str, Any] | None,
        finish: Callable[[], dict[str, Any] | None],
        *,
        status_prefix: str,
        with_location: bool = False,
        status_word: str = "operationStatuses",
    ) -> Response:
        """Start an operation and answer 201/202 with where to poll it (Databricks says
        ``operationStatus``, Cognitive Services ``operationStatuses``)."""
        op_id = uuid.uuid4().hex
        with self.lock:
            self._operations[op_id] = _Operation(self.polls, finish)
            retry_after = self.retry_after
        api_version = request.query.get("api-version", "")
        base = self._base(request)
        headers = {
            "Azure-AsyncOperation": f"{base}{status_prefix}/{status_word}/{op_id}?api-version={api_version}",
            "Retry-After": retry_after,
        }
        if with_location:
            headers["Location"] = f"{base}{status_prefix}/operationResults/{op_id}?api-version={api_version}"
        if body is None:
            return Response(status, b"", headers)
        return json_response(status, body, headers)

    def _advance(self, op_id: str) -> _Operation | None:
        with self.lock:
            operation = self._operations.get(op_id)
            if operation is None or operation.status != "InProgress":
                return operation
            if operation.polls_left > 0:
                operation.polls_left -= 1
                return operation
            error = operation.finish()
            operation.status = "Failed" if error else "Succeeded"
            operation.error = error
            return operation

    def operation_status(self, request: Request) -> Response:
        """``GET .../operationStatuses/{id}``: the Azure-AsyncOperation resource."""
        operation = self._advance(request.params["op"])
        if operation is None:
            return arm_error(404, "OperationNotFound", f"Operation {request.params['op']} was not found.")
        body: dict[str, Any] = {
            "id": request.path,
            "name": request.params["op"],
            "status": operation.status,
            "startTime": operation.started,
        }
        headers: dict[str, str] = {}
        if operation.status == "InProgress":
            headers["Retry-After"] = self.retry_after
        else:
            body["endTime"] = _now()
        if operation.error:
            body["error"] = operation.error
        return json_response(200, body, headers)

    def operation_result(self, request: Request) -> Response:
        """``GET .../operationResults/{id}``: the Location resource (202 until done)."""
        operation = self._advance(request.params["op"])
        if operation is None:
            return arm_error(404, "OperationNotFound", f"Operation {request.params['op']} was not found.")
        if operation.status == "InProgress":
            return Response(
                202, b"", {"Location": self._base(request) + request.path, "Retry-After": self.retry_after}
            )
        if operation.error:
            return json_response(400, {"error": operation.error})
        return Response(204, b"", {})

    # -- Entra ID ----------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        """``POST /{tenant}/oauth2/v2.0/token`` (client credentials): a JWT-shaped token that
        ARM, the OpenAI API and the Databricks API of this double all accept."""
        form = dict(parse_qsl(request.body.decode("utf-8")))
        if form.get("client_secret") != self.client_secret:
            body = {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
                "error_codes": [7000215],
            }
            return json_response(401, body)
        claims = {
            "aud": form.get("scope", ""),
            "iss": f"https://sts.windows.net/{request.params['tenant']}/",
            "appid": form.get("client_id", ""),
            "jti": uuid.uuid4().hex,
        }
        token = ".".join(
            (_b64url({"typ": "JWT", "alg": "RS256"}), _b64url(claims), _b64url({"sig": uuid.uuid4().hex}))
        )
        with self.lock:
            self.accepted_tokens.add(token)
            self.double.openai.bearer_tokens.add(token)
            self.double.databricks.tokens.add(token)
        body = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        return json_response(200, body)

    # -- Cognitive Services: accounts ----------------------------------------------------------

    def _account_body(
        self,
        sub: str,
        rg: str,
        name: str,
        location: str,
        kind: str,
        tags: dict[str, str],
        properties: dict[str, Any],
        base: str,
    ) -> dict[str, Any]:
        subdomain = properties.get("customSubDomainName") or name
        endpoint = f"{base or self.double.url}/"
        return {
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}{_COG_PATH}/accounts/{name}",
            "name": name,
            "type": "Microsoft.CognitiveServices/accounts",
            "location": location,
            "sku": {"name": "S0"},
            "kind": kind,
            "tags": tags,
            "etag": f'"{uuid.uuid4()}"',
            "systemData": _system_data(),
            "properties": {
                "endpoint": endpoint,
                "endpoints": {"OpenAI Language Model Instance API": endpoint},
                "provisioningState": "Accepted",
                "customSubDomainName": subdomain,
                "publicNetworkAccess": properties.get("publicNetworkAccess", "Enabled"),
                "disableLocalAuth": bool(properties.get("disableLocalAuth")) or self.disable_local_auth,
                "dateCreated": _now(),
                "internalId": uuid.uuid4().hex,
            },
            "deployments": {},
            "keys": (uuid.uuid4().hex, uuid.uuid4().hex),
        }

    @staticmethod
    def _public(resource: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in resource.items() if k not in ("deployments", "keys")}

    def _quota_stage(self, location: str) -> str | None:
        with self.lock:
            return self._quota_failures.get(location.lower())

    def put_account(self, request: Request) -> Response:
        """``PUT .../accounts/{name}``: create (201 + Azure-AsyncOperation) or update (200)."""
        sub, rg, name = request.params["sub"], request.params["rg"], request.params["account"]
        body = request.json()
        location = str(body.get("location") or "").replace(" ", "").lower()
        kind, sku = body.get("kind"), (body.get("sku") or {}).get("name")
        properties = body.get("properties") or {}
        if not location or not kind or not sku:
            return arm_error(400, "InvalidRequestContent", "location, kind and sku.name are required.")
        key = (sub.lower(), rg.lower(), name.lower())
        with self.lock:
            existing = self._accounts.get(key)
            if existing is not None:
                existing["tags"] = body.get("tags") or {}
                return json_response(200, self._public(existing))
            if key in self._deleted:
                self.events.append(("refused", "account", name))
                return arm_error(
                    409,
                    "FlagMustBeSetForRestore",
                    f"An existing resource with ID '{self._deleted[key]['id']}' has been soft-deleted. To "
                    "restore the resource, you must specify 'restore' to be 'true' in the property. If you "
                    "don't want to restore existing resource, please purge it first.",
                )
            subdomain = str(properties.get("customSubDomainName") or "").lower()
            taken = [
                a
                for a in (*self._accounts.values(), *self._deleted.values())
                if a["properties"].get("customSubDomainName", "").lower() == subdomain
            ]
            if kind == "OpenAI" and not subdomain:
                return arm_error(400, "BadRequest", "customSubDomainName is required for kind OpenAI.")
            if subdomain and taken:
                return arm_error(
                    400,
                    "CustomDomainInUse",
                    f"Please pick a different name. The subdomain name '{subdomain}' is not available "
                    "as it's already used by a resource.",
                )
            if self._quota_stage(location) == "account":
                self.events.append(("refused", "account", name))
                return arm_error(
                    409,
                    "QuotaExceeded",
                    f"Operation failed because a quota limit was reached: the subscription has no quota for "
                    f"more accounts of kind {kind} in {location}.",
                )
            account = self._account_body(
                sub, rg, name, location, kind, body.get("tags") or {}, properties, self._base(request)
            )
            self._accounts[key] = account
            self.events.append(("created", "account", name))

        def finish() -> None:
            with self.lock:
                if key in self._accounts:
                    self._accounts[key]["properties"]["provisioningState"] = "Succeeded"
            return None

        return self._accepted(
            request,
            201,
            self._public(account),
            finish,
            status_prefix=f"/subscriptions/{sub}{_COG_PATH}/locations/{location}",
        )

    def _find_account(self, request: Request) -> dict[str, Any] | None:
        p = request.params
        return self._accounts.get((p["sub"].lower(), p["rg"].lower(), p["account"].lower()))

    def _account_not_found(self, request: Request) -> Response:
        p = request.params
        return arm_error(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.CognitiveServices/accounts/{p['account']}' under resource group "
            f"'{p['rg']}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )

    def get_account(self, request: Request) -> Response:
        """``GET .../accounts/{name}``."""
        with self.lock:
            account = self._find_account(request)
            return (
                self._account_not_found(request)
                if account is None
                else json_response(200, self._public(account))
            )

    def list_accounts(self, request: Request) -> Response:
        """``GET /subscriptions/{sub}[/resourceGroups/{rg}]/providers/.../accounts``."""
        sub, rg = request.params["sub"].lower(), request.params.get("rg")
        with self.lock:
            value = [
                self._public(a)
                for key, a in self._accounts.items()
                if key[0] == sub and (rg is None or key[1] == rg.lower())
            ]
        return json_response(200, {"value": value})

    def delete_account(self, request: Request) -> Response:
        """``DELETE .../accounts/{name}``: soft-delete (202 + Azure-AsyncOperation + Location)."""
        p = request.params
        key = (p["sub"].lower(), p["rg"].lower(), p["account"].lower())
        with self.lock:
            account = self._accounts.get(key)
            if account is None:
                return Response(204, b"", {})
            account["properties"]["provisioningState"] = "Deleting"
            location = account["location"]

        def finish() -> None:
            with self.lock:
                gone = self._accounts.pop(key, None)
                if gone is None:
                    return None
                for deployment in gone["deployments"].values():
                    self._unregister_deployment(deployment["name"])
                deleted = self._public(gone)
                deleted["id"] = (
                    f"/subscriptions/{p['sub']}/providers/Microsoft.CognitiveServices/locations/"
                    f"{location}/resourceGroups/{p['rg']}/deletedAccounts/{gone['name']}"
                )
                deleted["properties"]["provisioningState"] = "Deleted"
                deleted["properties"]["deletionDate"] = _now()
                purge_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
                deleted["properties"]["scheduledPurgeDate"] = purge_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                self._deleted[key] = deleted
                self.events.append(("deleted", "account", gone["name"]))
            return None

        return self._accepted(
            request,
            202,
            None,
            finish,
            with_location=True,
            status_prefix=f"/subscriptions/{p['sub']}{_COG_PATH}/locations/{location}",
        )

    def list_keys(self, request: Request) -> Response:
        """``POST .../accounts/{name}/listKeys``: key1 is the double's Azure OpenAI key."""
        with self.lock:
            account = self._find_account(request)
            if account is None:
                return self._account_not_found(request)
            if account["properties"]["disableLocalAuth"]:
                return arm_error(400, "BadRequest", "Failed to list key. disableLocalAuth is set to be true")
            return json_response(200, {"key1": self.double.openai.api_key, "key2": account["keys"][1]})

    # -- Cognitive Services: deployments -------------------------------------------------------

    def _deployment_body(
        self, account: dict[str, Any], name: str, sku: dict[str, Any], properties: dict[str, Any]
    ) -> dict[str, Any]:
        model = dict(properties.get("model") or {})
        capacity = int(sku.get("capacity") or 1)
        return {
            "id": f"{account['id']}/deployments/{name}",
            "name": name,
            "type": "Microsoft.CognitiveServices/accounts/deployments",
            "sku": {"name": sku.get("name"), "capacity": capacity},
            "systemData": _system_data(),
            "etag": f'"{uuid.uuid4()}"',
            "properties": {
                "model": model,
                "provisioningState": "Accepted",
                "raiPolicyName": properties.get("raiPolicyName") or "Microsoft.DefaultV2",
                "dynamicThrottlingEnabled": bool(properties.get("dynamicThrottlingEnabled", False)),
                "versionUpgradeOption": properties.get("versionUpgradeOption")
                or "OnceNewDefaultVersionAvailable",
                "currentCapacity": capacity,
                "capabilities": {
                    "chatCompletion": "true",
                    "maxContextToken": "128000",
                    "maxOutputToken": "16384",
                },
                "rateLimits": [
                    {"key": "request", "renewalPeriod": 10, "count": capacity},
                    {"key": "token", "renewalPeriod": 60, "count": capacity * 1000},
                ],
            },
        }

    def _used(self, location: str, model: str, sku: str) -> int:
        return sum(
            int(d["sku"]["capacity"])
            for a in self._accounts.values()
            if a["location"] == location
            for d in a["deployments"].values()
            if d["properties"]["model"].get("name") == model and d["sku"]["name"] == sku
        )

    def _register_deployment(self, name: str, model: str, version: str, capacity: int, location: str) -> None:
        with self.lock:
            self.double.openai.add_deployment(name, f"{model}-{version}", capacity, location)

    def _unregister_deployment(self, name: str) -> None:
        with self.lock:
            if not any(name in a["deployments"] for a in self._accounts.values()):
                self.double.openai.deployments.discard(name)

    def put_deployment(self, request: Request) -> Response:
        """``PUT .../accounts/{name}/deployments/{deployment}`` (201 + Azure-AsyncOperation)."""
        name = request.params["deployment"]
        body = request.json()
        sku = body.get("sku") or {}
        properties = body.get("properties") or {}
        model = properties.get("model") or {}
        with self.lock:
            account = self._find_account(request)
            if account is None:
                return self._account_not_found(request)
            if account["properties"]["provisioningState"] != "Succeeded":
                return arm_error(
                    409,
                    "RequestConflict",
                    "Cannot modify resource because the account is still being provisioned.",
                )
            location = account["location"]
            versions = {v for v, _ in GPT_4O_VERSIONS} if model.get("name") == "gpt-4o" else set()
            if (
                model.get("name") in self.unavailable_models.get(location, set())
                or model.get("version") not in versions
            ):
                return arm_error(
                    400,
                    "DeploymentModelNotSupported",
                    f"The model '{model.get('name')}' version '{model.get('version')}' is not "
                    f"supported in {location}.",
                )
            if sku.get("name") not in ("Standard", "GlobalStandard"):
                return arm_error(
                    400, "InvalidResourceProperties", f"The sku '{sku.get('name')}' is not supported."
                )
            capacity = int(sku.get("capacity") or 1)
            available = self.quota_limit - self._used(location, "gpt-4o", sku["name"])
            if self._quota_stage(location) == "deployment" or capacity > available:
                self.events.append(("refused", "deployment", f"{account['name']}/{name}"))
                return arm_error(
                    400,
                    "InsufficientQuota",
                    f"This operation require {capacity} new capacity in quota Tokens Per Minute (thousands) "
                    f"- GPT-4o, which is bigger than the current available capacity 0. The current quota "
                    f"usage is {self.quota_limit} and the quota limit is {self.quota_limit} for quota "
                    "Tokens Per Minute (thousands) - GPT-4o.",
                )
            deployment = self._deployment_body(account, name, sku, properties)
            account["deployments"][name.lower()] = deployment
            self.events.append(("created", "deployment", f"{account['name']}/{name}"))

        def finish() -> None:
            with self.lock:
                if (
                    self._accounts.get(self._key_of(account)) is account
                    and name.lower() in account["deployments"]
                ):
                    deployment["properties"]["provisioningState"] = "Succeeded"
                    self._register_deployment(
                        name, str(model.get("name")), str(model.get("version")), capacity, location
                    )
            return None

        return self._accepted(
            request,
            201,
            deployment,
            finish,
            status_prefix=f"/subscriptions/{request.params['sub']}{_COG_PATH}/locations/{location}",
        )

    @staticmethod
    def _key_of(account: dict[str, Any]) -> tuple[str, str, str]:
        parts = account["id"].split("/")
        return parts[2].lower(), parts[4].lower(), parts[8].lower()

    def get_deployment(self, request: Request) -> Response:
        """``GET .../deployments/{deployment}``."""
        with self.lock:
            account = self._find_account(request)
            deployment = account["deployments"].get(request.params["deployment"].lower()) if account else None
            if deployment is None:
                return arm_error(
                    404, "DeploymentNotFound", f"Deployment {request.params['deployment']} not found."
                )
            return json_response(200, copy.deepcopy(deployment))

    def list_deployments(self, request: Request) -> Response:
        """``GET .../deployments``."""
        with self.lock:
            account = self._find_account(request)
            if account is None:
                return self._account_not_found(request)
            return json_response(200, {"value": [copy.deepcopy(d) for d in account["deployments"].values()]})

    def delete_deployment(self, request: Request) -> Response:
        """``DELETE .../deployments/{deployment}`` (202 + Azure-AsyncOperation + Location)."""
        name = request.params["deployment"]
        with self.lock:
            account = self._find_account(request)
            deployment = account["deployments"].get(name.lower()) if account else None
            if account is None or deployment is None:
                return Response(204, b"", {})
            deployment["properties"]["provisioningState"] = "Deleting"
            location = account["location"]

        def finish() -> None:
            with self.lock:
                if account["deployments"].pop(name.lower(), None) is not None:
                    self._unregister_deployment(name)
                    self.events.append(("deleted", "deployment", f"{account['name']}/{name}"))
            return None

        return self._accepted(
            request,
            202,
            None,
            finish,
            with_location=True,
            status_prefix=f"/subscriptions/{request.params['sub']}{_COG_PATH}/locations/{location}",
        )

    # -- Cognitive Services: per location --------------------------------------------------------

    def usages(self, request: Request) -> Response:
        """``GET .../locations/{location}/usages``: gpt-4o quota (thousands of TPM) per SKU."""
        location = request.params["location"].lower()
        with self.lock:
            exhausted = self._quota_stage(location) == "usage"
            accounts = sum(1 for a in self._accounts.values() if a["location"] == location)
            value = [
                {
                    "name": {
                        "value": f"OpenAI.{sku}.gpt-4o",
                        "localizedValue": "Tokens Per Minute (thousands) - GPT-4o"
                        + ("" if sku == "Standard" else " - Global"),
                    },
                    "currentValue": self.quota_limit if exhausted else self._used(location, "gpt-4o", sku),
                    "limit": self.quota_limit,
                    "unit": "Count",
                }
                for sku in ("Standard", "GlobalStandard")
            ]
            value.append(
                {
                    "name": {
                        "value": "AccountCount",
                        "localizedValue": "Cognitive Services total account limit",
                    },
                    "currentValue": accounts,
                    "limit": 200,
                    "unit": "Count",
                }
            )
        return json_response(200, {"value": value})

    def models(self, request: Request) -> Response:
        """``GET .../locations/{location}/models``: the gpt-4o versions and their SKUs."""
        location = request.params["location"].lower()
        with self.lock:
            if "gpt-4o" in self.unavailable_models.get(location, set()):
                return json_response(200, {"value": []})
        value = []
        for version, default in GPT_4O_VERSIONS:
            value.append(
                {
                    "kind": "OpenAI",
                    "skuName": "S0",
                    "model": {
                        "format": "OpenAI",
                        "name": "gpt-4o",
                        "version": version,
                        "isDefaultVersion": default,
                        "lifecycleStatus": "GenerallyAvailable",
                        "maxCapacity": 3,
                        "capabilities": {"chatCompletion": "true", "assistants": "true"},
                        "deprecation": {"inference": "2026-10-01T00:00:00Z"},
                        "skus": [
                            {
                                "name": sku,
                                "usageName": f"OpenAI.{sku}.gpt-4o",
                                "capacity": {
                                    "minimum": 1,
                                    "maximum": self.quota_limit,
                                    "step": 1,
                                    "default": 10,
                                },
                            }
                            for sku in ("Standard", "GlobalStandard")
                        ],
                    },
                }
            )
        return json_response(200, {"value": value})

    def list_deleted(self, request: Request) -> Response:
        """``GET /subscriptions/{sub}/providers/Microsoft.CognitiveServices/deletedAccounts``."""
        sub = request.params["sub"].lower()
        with self.lock:
            value = [copy.deepcopy(a) for key, a in self._deleted.items() if key[0] == sub]
        return json_response(200, {"value": value})

    def _find_deleted(self, request: Request) -> tuple[tuple[str, str, str], dict[str, Any] | None]:
        p = request.params
        key = (p["sub"].lower(), p["rg"].lower(), p["account"].lower())
        account = self._deleted.get(key)
        if account is not None and account["location"] != p["location"].lower():
            account = None
        return key, account

    def get_deleted(self, request: Request) -> Response:
        """``GET .../locations/{location}/resourceGroups/{rg}/deletedAccounts/{name}``."""
        with self.lock:
            _, account = self._find_deleted(request)
        if account is None:
            return arm_error(
                404, "ResourceNotFound", f"Deleted account {request.params['account']} not found."
            )
        return json_response(200, copy.deepcopy(account))

    def purge(self, request: Request) -> Response:
        """``DELETE .../deletedAccounts/{name}``: purge (202 + Azure-AsyncOperation + Location)."""
        with self.lock:
            key, account = self._find_deleted(request)
        if account is None:
            return arm_error(
                404, "ResourceNotFound", f"Deleted account {request.params['account']} not found."
            )

        def finish() -> None:
            with self.lock:
                if self._deleted.pop(key, None) is not None:
                    self.events.append(("purged", "account", account["name"]))
            return None

        p = request.params
        return self._accepted(
            request,
            202,
            None,
            finish,
            with_location=True,
            status_prefix=f"/subscriptions/{p['sub']}{_COG_PATH}/locations/{p['location']}",
        )

    # -- Databricks workspaces -----------------------------------------------------------------

    def _workspace_body(
        self, sub: str, rg: str, name: str, body: dict[str, Any], host: str
    ) -> dict[str, Any]:
        properties = body.get("properties") or {}
        workspace_id = str(int(uuid.uuid4().int % 10**16)).rjust(16, "1")
        return {
            "name": name,
            "type": "Microsoft.Databricks/workspaces",
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}{_DATABRICKS_PATH}/{name}",
            "location": str(body.get("location")).replace(" ", "").lower(),
            "sku": body.get("sku"),
            "tags": body.get("tags") or {},
            "systemData": _system_data(),
            "properties": {
                "managedResourceGroupId": properties.get("managedResourceGroupId"),
                "parameters": properties.get("parameters"),
                "provisioningState": "Accepted",
                "authorizations": [
                    {
                        "principalId": "00000000-0000-0000-0000-000000000000",
                        "roleDefinitionId": "11111111-1111-1111-1111-111111111111",
                    }
                ],
                "createdBy": {
                    "applicationId": "44444444-4444-4444-4444-444444444444",
                    "oid": "22222222-2222-2222-2222-222222222222",
                    "puid": "33333333",
                },
                "createdDateTime": _now(),
                "isUcEnabled": True,
                "computeMode": "Hybrid",
                "uiDefinitionUri": "https://path/to/workspaceCreateUiDefinition.json",
                "_workspaceId": workspace_id,
                "_workspaceUrl": host or self.double.url.split("://", 1)[1],
            },
        }

    @staticmethod
    def _public_workspace(workspace: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(workspace)
        properties = body["properties"]
        workspace_id, url = properties.pop("_workspaceId"), properties.pop("_workspaceUrl")
        if properties["provisioningState"] == "Succeeded":
            properties["workspaceId"], properties["workspaceUrl"] = workspace_id, url
        return body

    def put_workspace(self, request: Request) -> Response:
        """``PUT .../workspaces/{name}``: 201 (provisioningState Accepted) + Azure-AsyncOperation."""
        p = request.params
        body = request.json()
        sku = (body.get("sku") or {}).get("name")
        if not body.get("location") or sku not in ("standard", "premium", "trial"):
            return arm_error(
                400, "InvalidRequestContent", "location and sku.name (standard, premium, trial) are required."
            )
        if not (body.get("properties") or {}).get("managedResourceGroupId"):
            return arm_error(400, "InvalidRequestContent", "properties.managedResourceGroupId is required.")
        key = (p["sub"].lower(), p["rg"].lower(), p["workspace"].lower())
        with self.lock:
            existing = self._workspaces.get(key)
            if existing is not None:
                existing["tags"] = body.get("tags") or {}
                return json_response(200, self._public_workspace(existing))
            workspace = self._workspace_body(
                p["sub"], p["rg"], p["workspace"], body, request.headers.get("host", "")
            )
            self._workspaces[key] = workspace
            self.events.append(("created", "workspace", p["workspace"]))

        def finish() -> None:
            with self.lock:
                if self._workspaces.get(key) is workspace:
                    workspace["properties"]["provisioningState"] = "Succeeded"
            return None

        return self._accepted(
            request,
            201,
            self._public_workspace(workspace),
            finish,
            status_prefix=workspace["id"],
            status_word="operationStatus",
        )

    def get_workspace(self, request: Request) -> Response:
        """``GET .../workspaces/{name}``."""
        p = request.params
        with self.lock:
            workspace = self._workspaces.get((p["sub"].lower(), p["rg"].lower(), p["workspace"].lower()))
            if workspace is None:
                return arm_error(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.Databricks/workspaces/{p['workspace']}' under resource "
                    f"group '{p['rg']}' was not found.",
                )
            return json_response(200, self._public_workspace(workspace))

    def list_workspaces(self, request: Request) -> Response:
        """``GET /subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.Databricks/workspaces``."""
        sub, rg = request.params["sub"].lower(), request.params.get("rg")
        with self.lock:
            value = [
                self._public_workspace(w)
                for key, w in self._workspaces.items()
                if key[0] == sub and (rg is None or key[1] == rg.lower())
            ]
        return json_response(200, {"value": value})

    def delete_workspace(self, request: Request) -> Response:
        """``DELETE .../workspaces/{name}``: 202 with Azure-AsyncOperation, Location, Retry-After."""
        p = request.params
        key = (p["sub"].lower(), p["rg"].lower(), p["workspace"].lower())
        with self.lock:
            workspace = self._workspaces.get(key)
            if workspace is None:
                return Response(204, b"", {})
            workspace["properties"]["provisioningState"] = "Deleting"

        def finish() -> None:
            with self.lock:
                if self._workspaces.pop(key, None) is not None:
                    self.events.append(("deleted", "workspace", workspace["name"]))
            return None

        return self._accepted(
            request,
            202,
            None,
            finish,
            with_location=True,
            status_prefix=workspace["id"],
            status_word="operationStatus",
        )

    # -- the gate --------------------------------------------------------------------------------

    def authed(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Wrap a handler with the bearer token and api-version checks ARM makes first."""

        def wrapped(request: Request) -> Response:
            if not self._authorized(request):
                return arm_error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing "
                    "or the access token is not valid.",
                    {
                        "WWW-Authenticate": "Bearer "
                        'authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'
                    },
                )
            if not request.query.get("api-version"):
                return arm_error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            return handler(request)

        return wrapped


def register(double: LabDouble) -> ArmDouble:
    """Add the Azure Resource Manager routes (and the token endpoint) to ``double``."""
    api = ArmDouble(double)
    double.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", api.token)
    routes: list[tuple[str, str, Callable[[Request], Response]]] = [
        ("GET", r"/subscriptions/[^/]+/.+/operationStatus(?:es)?/(?P<op>[^/]+)", api.operation_status),
        ("GET", r"/subscriptions/[^/]+/.+/operationResults/(?P<op>[^/]+)", api.operation_result),
        ("GET", _SUB + _COG + r"/accounts", api.list_accounts),
        ("GET", _RG + _COG + r"/accounts", api.list_accounts),
        ("GET", _SUB + _COG + r"/deletedAccounts", api.list_deleted),
        ("GET", _LOCATION + r"/usages", api.usages),
        ("GET", _LOCATION + r"/models", api.models),
        (
            "GET",
            _LOCATION + r"/resourceGroups/(?P<rg>[^/]+)/deletedAccounts/(?P<account>[^/]+)",
            api.get_deleted,
        ),
        (
            "DELETE",
            _LOCATION + r"/resourceGroups/(?P<rg>[^/]+)/deletedAccounts/(?P<account>[^/]+)",
            api.purge,
        ),
        ("PUT", _ACCOUNT, api.put_account),
        ("GET", _ACCOUNT, api.get_account),
        ("DELETE", _ACCOUNT, api.delete_account),
        ("POST", _ACCOUNT + r"/listKeys", api.list_keys),
        ("GET", _ACCOUNT + r"/deployments", api.list_deployments),
        ("PUT", _ACCOUNT + r"/deployments/(?P<deployment>[^/]+)", api.put_deployment),
        ("GET", _ACCOUNT + r"/deployments/(?P<deployment>[^/]+)", api.get_deployment),
        ("DELETE", _ACCOUNT + r"/deployments/(?P<deployment>[^/]+)", api.delete_deployment),
        ("GET", _SUB + r"/providers/Microsoft\.Databricks/workspaces", api.list_workspaces),
        ("GET", _RG + r"/providers/Microsoft\.Databricks/workspaces", api.list_workspaces),
        ("PUT", _WORKSPACE, api.put_workspace),
        ("GET", _WORKSPACE, api.get_workspace),
        ("DELETE", _WORKSPACE, api.delete_workspace),
    ]
    for method, pattern, handler in routes:
        double.route(method, "(?i)" + pattern, api.authed(handler))

    def not_found(request: Request) -> Response:
        return arm_error(
            404, "InvalidResourceType", f"The resource type could not be found for '{request.path}'."
        )

    double.route("*", r"(?i)/subscriptions/.*", not_found)
    return api
