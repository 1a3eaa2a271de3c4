"""Azure Resource Manager on the lab double: its state, knobs, audit and routes.

The resource providers live beside it: Cognitive Services (Azure OpenAI) accounts,
deployments, keys, usages, models and soft-deleted accounts in ``arm_cognitive.py``;
Databricks workspaces in ``arm_workspaces.py``; long-running operations in ``arm_lro.py``;
the Entra ID token endpoint in ``entra_api.py``.

Shapes follow the official examples in ``azure-rest-api-specs`` (CreateAccount,
PutDeployment, GetDeployment, ListKeys, ListLocationModels, ListUsages;
Workspaces_CreateOrUpdate/Get/Delete) and what real subscriptions answer: quota meters named
``OpenAI.Standard.gpt-4o`` in ``usages`` for a SKU whose ``usageName`` is ``OpenAI.Standard``,
the account meter ``OpenAI.S0.AccountCount``, operations in the forms ``arm_lro`` lists, and
identities in the bodies (``systemData.createdBy``, a workspace's ``createdBy.oid/puid``).

What the created resources point at is the double itself: an account's ``endpoint`` is the
double's URL, and a deployment becomes a deployment of the double's Azure OpenAI API
(``double.openai.deployments``) once its creation finished; a workspace's ``workspaceUrl``
is the double's ``host:port``.

Knobs (``double.arm``): ``polls``, ``retry_after``, ``lro_styles`` (see ``arm_lro``),
``quota_limit``, ``usage_naming`` (``"model"``: real subscriptions; ``"class"``: the official
examples' class-style meters and ``AccountCount``), ``fail_quota(region, at, how)``,
``unavailable_models``, ``disable_local_auth``, ``accepted_tokens``, ``client_secret``,
``caller`` (who ``systemData`` says created things).
Audit: ``audit()``, ``leaks()`` (everything live or soft-deleted), ``events``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import arm_cognitive, arm_workspaces, entra_api
from .arm_lro import Finish, Operations, now
from .arm_resources import COG_PATH, arm_error
from .routing import Request, Response

__all__ = ["DEFAULT_ARM_TOKEN", "ArmDouble", "arm_error", "register"]

if TYPE_CHECKING:
    from .server import LabDouble

DEFAULT_ARM_TOKEN = "double-arm-token"
DEFAULT_CLIENT_SECRET = "double-client-secret-0000"
DEFAULT_QUOTA_LIMIT = 450  # thousands of tokens per minute, per model and region
LAB_REGIONS = ("eastus2", "northcentralus", "swedencentral", "switzerlandwest")
QUOTA_STAGES = ("usage", "account-count", "account", "deployment", "workspace")
QUOTA_DELIVERY = ("sync", "async", "state")
USAGE_NAMINGS = ("model", "class")
DEFAULT_CALLER = {
    "email": "lab-user@example.com",
    "oid": "7f3e9a2c-5b1d-4e8f-a6c3-2d9b0e1f4a7c",
    "puid": "10032002F4A1B3C7",
    "applicationId": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
}
"""The signed-in user of the double's subscription, as ARM reports a creator."""

Key = tuple[str, str, str]


class ArmDouble:
    """State and knobs of Azure Resource Manager (``double.arm``); ``reset()`` restores defaults.

    Resources are keyed by lower-cased ``(subscription, resource group, name)`` (ARM names
    are case-insensitive).
    """

    def __init__(self, double: LabDouble) -> None:
        self.double = double
        self.lock: threading.RLock = double.lock
        self.operations = Operations(self.lock)
        self.reset()

    def reset(self) -> None:
        """Forget every resource, operation and event; restore the knobs."""
        self.operations.reset()
        with self.lock:
            self.quota_limit = DEFAULT_QUOTA_LIMIT
            self.usage_naming = "model"
            self.accepted_tokens: set[str] = {DEFAULT_ARM_TOKEN}
            self.client_secret = DEFAULT_CLIENT_SECRET
            self.unavailable_models: dict[str, set[str]] = {}
            self.disable_local_auth = False
            """Create accounts with keys disabled, as an Azure Policy enforcing Entra ID does."""
            self.caller = dict(DEFAULT_CALLER)
            self.quota_failures: dict[str, tuple[str, str]] = {}
            self.accounts: dict[Key, dict[str, Any]] = {}
            self.deleted: dict[Key, dict[str, Any]] = {}
            self.workspaces: dict[Key, dict[str, Any]] = {}
            self.events: list[tuple[str, str, str]] = []
            """``(verb, kind, name)`` in order: created, deleted, purged, refused, failed."""

    def close(self) -> None:
        """Nothing to release."""

    # -- knobs -------------------------------------------------------------------------------

    @property
    def polls(self) -> int:
        """Status reads answered in progress before an operation finishes."""
        return self.operations.polls

    @polls.setter
    def polls(self, value: int) -> None:
        self.operations.polls = value

    @property
    def retry_after(self) -> str:
        """The ``Retry-After`` header of accepted operations and in-progress statuses."""
        return self.operations.retry_after

    @retry_after.setter
    def retry_after(self, value: str) -> None:
        self.operations.retry_after = value

    @property
    def lro_styles(self) -> dict[str, str]:
        """How each operation answers (``"workspace.create": "azure-async-202"``...): see ``arm_lro``."""
        return self.operations.styles

    def fail_quota(self, region: str, at: str = "deployment", how: str = "sync") -> None:
        """Make ``region`` run out of quota.

        ``at``: ``"usage"`` (the usages API reports the gpt-4o meter used up, and a
        deployment is refused), ``"account-count"`` (the account meter is at its limit, and a
        new account is refused), ``"account"`` (creating an account fails with QuotaExceeded
        although usages look fine), ``"deployment"`` (usages look fine; the deployment is
        refused with InsufficientQuota, as when another deployment took the quota meanwhile),
        ``"workspace"`` (a Databricks workspace cannot be created: its VMs' cores quota).

        ``how`` a refused deployment or workspace is told: ``"sync"`` (400 at the PUT, as
        Azure OpenAI does), ``"async"`` (accepted, then the operation ends ``Failed`` with the
        error) or ``"state"`` (201 with ``provisioningState: Failed`` and no LRO headers).
        """
        if at not in QUOTA_STAGES:
            raise ValueError(f"at must be one of {QUOTA_STAGES}, not {at!r}")
        if how not in QUOTA_DELIVERY:
            raise ValueError(f"how must be one of {QUOTA_DELIVERY}, not {how!r}")
        with self.lock:
            self.quota_failures[region.lower()] = (at, how)

    def quota_stage(self, location: str) -> str | None:
        """Where ``location`` runs out of quota (see :meth:`fail_quota`), or None."""
        with self.lock:
            failure = self.quota_failures.get(location.lower())
        return failure[0] if failure else None

    def quota_delivery(self, location: str) -> str:
        """How a refused deployment in ``location`` is told (see :meth:`fail_quota`)."""
        with self.lock:
            failure = self.quota_failures.get(location.lower())
        return failure[1] if failure else "sync"

    def system_data(self) -> dict[str, str]:
        """``systemData`` of a resource created now by :attr:`caller`."""
        stamp = now()
        return {
            "createdBy": self.caller["email"],
            "createdByType": "User",
            "createdAt": stamp,
            "lastModifiedBy": self.caller["email"],
            "lastModifiedByType": "User",
            "lastModifiedAt": stamp,
        }

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
                    for key, a in self.accounts.items()
                },
                "deleted_accounts": {
                    a["name"]: {"location": a["location"], "resourceGroup": key[1]}
                    for key, a in self.deleted.items()
                },
                "workspaces": {
                    w["name"]: {
                        "location": w["location"],
                        "resourceGroup": key[1],
                        "tags": dict(w.get("tags") or {}),
                        "provisioningState": w["properties"]["provisioningState"],
                    }
                    for key, w in self.workspaces.items()
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
        arm_cognitive.seed_account(self, name, subscription, resource_group, location, tags)

    def seed_workspace(
        self, name: str, *, subscription: str, resource_group: str, location: str, tags: dict[str, str]
    ) -> None:
        """Plant an existing (say, leaked) Databricks workspace."""
        arm_workspaces.seed_workspace(self, name, subscription, resource_group, location, tags)

    # -- plumbing ----------------------------------------------------------------------------

    def base(self, request: Request) -> str:
        """The URL the request reached the double by (for the URLs in its answers)."""
        host = request.headers.get("host")
        return f"http://{host}" if host else self.double.url

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self.lock:
            return scheme.lower() == "bearer" and token in self.accepted_tokens

    def authed(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Wrap a handler with the bearer token and api-version checks ARM makes first, and
        ARM's response headers."""

        def wrapped(request: Request) -> Response:
            if not self._authorized(request):
                response = arm_error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing "
                    "or the access token is not valid.",
                    {
                        "WWW-Authenticate": "Bearer "
                        'authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'
                    },
                )
            elif not request.query.get("api-version"):
                response = arm_error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            else:
                response = handler(request)
            for name, value in arm_headers(request).items():
                response.headers.setdefault(name, value)
            return response

        return wrapped

    def cognitive_operation(
        self,
        request: Request,
        operation: str,
        location: str,
        resource_id: str,
        finish: Finish,
        body: Callable[[], dict[str, Any] | None] = lambda: None,
        style: str | None = None,
    ) -> Response:
        """Start a Cognitive Services operation: its status lives under the location."""
        return self.operations.start(
            request,
            operation,
            base=self.base(request),
            status_prefix=f"/subscriptions/{request.params['sub']}{COG_PATH}/locations/{location}",
            resource_id=resource_id,
            body=body,
            finish=finish,
            style=style,
        )

    def operation_status(self, request: Request) -> Response:
        """``GET .../operationStatus(es)/{id}``."""
        return self.operations.status(request)

    def operation_result(self, request: Request) -> Response:
        """``GET .../operationResults/{id}``."""
        return self.operations.result(request, self.base(request))


def arm_headers(request: Request) -> dict[str, str]:
    """The headers every ARM answer carries (request ids are new on each answer)."""
    import uuid

    request_id = str(uuid.uuid4())
    reads = request.method in ("GET", "HEAD")
    return {
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
        "Expires": "-1",
        f"x-ms-ratelimit-remaining-subscription-{'reads' if reads else 'writes'}": "11999"
        if reads
        else "1199",
        "x-ms-request-id": request_id,
        "x-ms-correlation-request-id": request.headers.get("x-ms-client-request-id") or request_id,
        "x-ms-routing-request-id": f"SWEDENCENTRAL:{now()[:19].replace('-', '').replace(':', '')}Z:{request_id}",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
    }


def register(double: LabDouble) -> ArmDouble:
    """Add the Azure Resource Manager routes (and the Entra ID endpoints) to ``double``."""
    api = ArmDouble(double)
    entra_api.register(double, api)
    routes: list[tuple[str, str, Callable[[Request], Response]]] = [
        ("GET", r"/subscriptions/[^/]+/.+/operationStatus(?:es)?/(?P<op>[^/]+)", api.operation_status),
        ("GET", r"/subscriptions/[^/]+/.+/operationResults/(?P<op>[^/]+)", api.operation_result),
        *arm_cognitive.routes(api),
        *arm_workspaces.routes(api),
    ]
    for method, pattern, handler in routes:
        double.route(method, "(?i)" + pattern, api.authed(handler))

    def not_found(request: Request) -> Response:
        return arm_error(
            404, "InvalidResourceType", f"The resource type could not be found for '{request.path}'."
        )

    double.route("*", r"(?i)/subscriptions/.*", api.authed(not_found))
    return api
