"""Azure OpenAI model deployments on the double's ARM, and the quota they draw on: the
``locations/{region}/models`` and ``locations/{region}/usages`` answers.

Quota naming is real subscriptions' (``usage_naming = "model"``): a model SKU's
``usageName`` is the prefix (``OpenAI.Standard``), the usages list names the meter with the
model (``OpenAI.Standard.gpt-4o``), and the account meter is ``OpenAI.S0.AccountCount``.
``usage_naming = "class"`` answers as the official examples (ListLocationModels.json,
ListUsages.json) do: a class-style ``usageName`` that is the meter's own name, and an account
meter named ``AccountCount``.

A deployment the quota cannot hold is refused with ``InsufficientQuota``: synchronously (400
at the PUT, as Azure OpenAI does), or, by ``fail_quota(..., how=...)``, as an operation that
ends ``Failed`` or as a 201 whose ``provisioningState`` is ``Failed``.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .arm_resources import ACCOUNT, LOCATION, account_not_found, arm_error, find_account
from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .arm_api import ArmDouble

GPT_4O_VERSIONS = (("2024-11-20", True), ("2024-08-06", False), ("2024-05-13", False))
SKUS = ("Standard", "GlobalStandard")
ACCOUNT_LIMIT = 200


def usage_name(api: ArmDouble, sku: str) -> str:
    """A model SKU's ``usageName`` in ``locations/{region}/models``."""
    return f"OpenAI.{sku}" if api.usage_naming == "model" else f"OpenAI.{sku}.Class1"


def meter_name(api: ArmDouble, sku: str, model: str) -> str:
    """The name of the usages meter a deployment of ``model`` draws on."""
    return f"OpenAI.{sku}.{model}" if api.usage_naming == "model" else usage_name(api, sku)


def deployment_body(
    api: ArmDouble, account: dict[str, Any], name: str, sku: dict[str, Any], properties: dict[str, Any]
) -> dict[str, Any]:
    """A new deployment as the double stores it."""
    model = dict(properties.get("model") or {})
    capacity = int(sku.get("capacity") or 1)
    return {
        "id": f"{account['id']}/deployments/{name}",
        "name": name,
        "type": "Microsoft.CognitiveServices/accounts/deployments",
        "sku": {"name": sku.get("name"), "capacity": capacity},
        "systemData": api.system_data(),
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


def used(api: ArmDouble, location: str, model: str, sku: str) -> int:
    """Thousands of tokens per minute that live deployments of ``model`` hold in ``location``."""
    return sum(
        int(d["sku"]["capacity"])
        for a in api.accounts.values()
        if a["location"] == location
        for d in a["deployments"].values()
        if d["properties"]["model"].get("name") == model
        and d["sku"]["name"] == sku
        and d["properties"]["provisioningState"] != "Failed"
    )


def register_deployment(
    api: ArmDouble, name: str, model: str, version: str, capacity: int, location: str
) -> None:
    """Make the double's Azure OpenAI API answer for a deployment that ARM finished creating,
    with the rate limits of its capacity and its region."""
    with api.lock:
        api.double.openai.add_deployment(name, f"{model}-{version}", capacity, location)


def unregister(api: ArmDouble, name: str) -> None:
    """Stop answering for a deployment no account holds any more."""
    with api.lock:
        if not any(name in a["deployments"] for a in api.accounts.values()):
            api.double.openai.deployments.discard(name)


def _key_of(account: dict[str, Any]) -> tuple[str, str, str]:
    parts = account["id"].split("/")
    return parts[2].lower(), parts[4].lower(), parts[8].lower()


def _insufficient_quota(api: ArmDouble, capacity: int) -> dict[str, str]:
    return {
        "code": "InsufficientQuota",
        "message": f"This operation require {capacity} new capacity in quota Tokens Per Minute (thousands) - "
        f"GPT-4o, which is bigger than the current available capacity 0. The current quota usage is "
        f"{api.quota_limit} and the quota limit is {api.quota_limit} for quota Tokens Per Minute "
        "(thousands) - GPT-4o.",
    }


class Deployments:
    """The deployment and quota handlers of one ARM double."""

    def __init__(self, api: ArmDouble) -> None:
        self.api = api

    def _refused(
        self, account: dict[str, Any], model: dict[str, Any], sku: dict[str, Any]
    ) -> Response | None:
        location = account["location"]
        versions = {v for v, _ in GPT_4O_VERSIONS} if model.get("name") == "gpt-4o" else set()
        if model.get("name") in self.api.unavailable_models.get(location, set()) or (
            model.get("version") not in versions
        ):
            return arm_error(
                400,
                "DeploymentModelNotSupported",
                f"The model '{model.get('name')}' version '{model.get('version')}' is not supported in {location}.",
            )
        if sku.get("name") not in SKUS:
            return arm_error(
                400, "InvalidResourceProperties", f"The sku '{sku.get('name')}' is not supported."
            )
        return None

    def _over_quota(self, location: str, sku: dict[str, Any]) -> bool:
        capacity = int(sku.get("capacity") or 1)
        available = self.api.quota_limit - used(self.api, location, "gpt-4o", str(sku["name"]))
        return self.api.quota_stage(location) in ("usage", "deployment") or capacity > available

    def put(self, request: Request) -> Response:
        """``PUT .../accounts/{name}/deployments/{deployment}`` (in the ``deployment.create`` style)."""
        api = self.api
        name = request.params["deployment"]
        body = request.json()
        sku = body.get("sku") or {}
        properties = body.get("properties") or {}
        model = properties.get("model") or {}
        with api.lock:
            account = find_account(api, request)
            if account is None:
                return account_not_found(request)
            if account["properties"]["provisioningState"] != "Succeeded":
                return arm_error(
                    409,
                    "RequestConflict",
                    "Cannot modify resource because the account is still being provisioned.",
                )
            refused = self._refused(account, model, sku)
            if refused is not None:
                return refused
            location = account["location"]
            error = (
                _insufficient_quota(api, int(sku.get("capacity") or 1))
                if self._over_quota(location, sku)
                else None
            )
            how = api.quota_delivery(location)
            if error is not None and how == "sync":
                api.events.append(("refused", "deployment", f"{account['name']}/{name}"))
                return arm_error(400, error["code"], error["message"])
            deployment = deployment_body(api, account, name, sku, properties)
            account["deployments"][name.lower()] = deployment
            api.events.append(("created", "deployment", f"{account['name']}/{name}"))

        def finish() -> dict[str, Any] | None:
            with api.lock:
                if (
                    api.accounts.get(_key_of(account)) is not account
                    or name.lower() not in account["deployments"]
                ):
                    return None
                if error is not None:
                    deployment["properties"]["provisioningState"] = "Failed"
                    api.events.append(("failed", "deployment", f"{account['name']}/{name}"))
                    return error
                deployment["properties"]["provisioningState"] = "Succeeded"
                register_deployment(
                    api, name, str(model.get("name")), str(model.get("version")),
                    int(sku.get("capacity") or 1), location,
                )
            return None

        def current() -> dict[str, Any] | None:
            with api.lock:
                return copy.deepcopy(deployment)

        style = None
        if error is not None:  # how the refusal is told decides the form of the answer
            configured = api.operations.style("deployment.create")
            style = "none" if how == "state" else ("azure-async" if configured == "none" else configured)
        return api.cognitive_operation(
            request, "deployment.create", location, deployment["id"], finish, body=current, style=style
        )

    def get(self, request: Request) -> Response:
        """``GET .../deployments/{deployment}``."""
        with self.api.lock:
            account = find_account(self.api, request)
            deployment = account["deployments"].get(request.params["deployment"].lower()) if account else None
            if deployment is None:
                return arm_error(
                    404, "DeploymentNotFound", f"Deployment {request.params['deployment']} not found."
                )
            return json_response(200, copy.deepcopy(deployment))

    def list(self, request: Request) -> Response:
        """``GET .../deployments``."""
        with self.api.lock:
            account = find_account(self.api, request)
            if account is None:
                return account_not_found(request)
            return json_response(200, {"value": [copy.deepcopy(d) for d in account["deployments"].values()]})

    def delete(self, request: Request) -> Response:
        """``DELETE .../deployments/{deployment}`` (in the ``deployment.delete`` style)."""
        api = self.api
        name = request.params["deployment"]
        with api.lock:
            account = find_account(api, request)
            deployment = account["deployments"].get(name.lower()) if account else None
            if account is None or deployment is None:
                return Response(204, b"", {})
            deployment["properties"]["provisioningState"] = "Deleting"
            location = account["location"]

        def finish() -> None:
            with api.lock:
                if account["deployments"].pop(name.lower(), None) is not None:
                    unregister(api, name)
                    api.events.append(("deleted", "deployment", f"{account['name']}/{name}"))
            return None

        return api.cognitive_operation(request, "deployment.delete", location, deployment["id"], finish)

    # -- quota -----------------------------------------------------------------------------------

    def usages(self, request: Request) -> Response:
        """``GET .../locations/{location}/usages``: the gpt-4o meters (thousands of TPM) and the
        account meter."""
        api = self.api
        location = request.params["location"].lower()
        with api.lock:
            stage = api.quota_stage(location)
            accounts = sum(1 for a in api.accounts.values() if a["location"] == location)
            value = [
                {
                    "name": {
                        "value": meter_name(api, sku, "gpt-4o"),
                        "localizedValue": "Tokens Per Minute (thousands) - GPT-4o"
                        + ("" if sku == "Standard" else " - Global"),
                    },
                    "currentValue": api.quota_limit
                    if stage == "usage"
                    else used(api, location, "gpt-4o", sku),
                    "limit": api.quota_limit,
                    "unit": "Count",
                }
                for sku in SKUS
            ]
            value.append(
                {
                    "name": {
                        "value": "OpenAI.S0.AccountCount" if api.usage_naming == "model" else "AccountCount",
                        "localizedValue": "Cognitive Services total account limit",
                    },
                    "currentValue": ACCOUNT_LIMIT if stage == "account-count" else accounts,
                    "limit": ACCOUNT_LIMIT,
                    "unit": "Count",
                }
            )
        return json_response(200, {"value": value})

    def models(self, request: Request) -> Response:
        """``GET .../locations/{location}/models``: the gpt-4o versions and their SKUs."""
        api = self.api
        location = request.params["location"].lower()
        with api.lock:
            if "gpt-4o" in api.unavailable_models.get(location, set()):
                return json_response(200, {"value": []})
        value = [
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
                    "systemData": {
                        "createdBy": "Microsoft",
                        "createdAt": "2024-05-13T00:00:00Z",
                        "lastModifiedBy": "Microsoft",
                        "lastModifiedAt": "2024-05-13T00:00:00Z",
                    },
                    "skus": [
                        {
                            "name": sku,
                            "usageName": usage_name(api, sku),
                            "capacity": {"minimum": 1, "maximum": api.quota_limit, "step": 1, "default": 10},
                        }
                        for sku in SKUS
                    ],
                },
            }
            for version, default in GPT_4O_VERSIONS
        ]
        return json_response(200, {"value": value})


def routes(api: ArmDouble) -> list[tuple[str, str, Callable[[Request], Response]]]:
    """The deployment and quota routes."""
    deployments = Deployments(api)
    return [
        ("GET", LOCATION + r"/usages", deployments.usages),
        ("GET", LOCATION + r"/models", deployments.models),
        ("GET", ACCOUNT + r"/deployments", deployments.list),
        ("PUT", ACCOUNT + r"/deployments/(?P<deployment>[^/]+)", deployments.put),
        ("GET", ACCOUNT + r"/deployments/(?P<deployment>[^/]+)", deployments.get),
        ("DELETE", ACCOUNT + r"/deployments/(?P<deployment>[^/]+)", deployments.delete),
    ]
