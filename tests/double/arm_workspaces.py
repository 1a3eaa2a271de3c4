"""Azure Databricks workspaces on the double's ARM: create, read, list, delete.

As the real resource provider does (and the official Workspaces_CreateOrUpdate example
shows): a create answers 201 with ``provisioningState: Accepted`` and an
``Azure-AsyncOperation`` whose reads answer **202** ``{"status": "Accepted"}`` until 200
``Succeeded``; a delete answers 202 with ``Location`` only. Both styles can be switched
(``double.arm.lro_styles["workspace.create"|"workspace.delete"]``, see ``arm_lro``). A
workspace carries its creator (``createdBy.oid/puid``) as real ones do.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .arm_lro import now
from .arm_resources import RG, SUB, arm_error
from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .arm_api import ArmDouble

DATABRICKS_PATH = "/providers/Microsoft.Databricks/workspaces"
WORKSPACE = RG + r"/providers/Microsoft\.Databricks/workspaces/(?P<workspace>[^/]+)"


def workspace_body(
    api: ArmDouble, sub: str, rg: str, name: str, body: dict[str, Any], host: str
) -> dict[str, Any]:
    """A new workspace as the double stores it (``_workspaceId``/``_workspaceUrl`` show once
    it succeeded)."""
    properties = body.get("properties") or {}
    workspace_id = str(int(uuid.uuid4().int % 10**16)).rjust(16, "1")
    creator = {
        "applicationId": api.caller["applicationId"],
        "oid": api.caller["oid"],
        "puid": api.caller["puid"],
    }
    return {
        "name": name,
        "type": "Microsoft.Databricks/workspaces",
        "id": f"/subscriptions/{sub}/resourceGroups/{rg}{DATABRICKS_PATH}/{name}",
        "location": str(body.get("location")).replace(" ", "").lower(),
        "sku": body.get("sku"),
        "tags": body.get("tags") or {},
        "systemData": api.system_data(),
        "properties": {
            "managedResourceGroupId": properties.get("managedResourceGroupId"),
            "parameters": properties.get("parameters"),
            "provisioningState": "Accepted",
            "authorizations": [
                {
                    "principalId": "9a74af6f-d153-4348-988a-e2672920bee9",
                    "roleDefinitionId": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                }
            ],
            "createdBy": dict(creator),
            "updatedBy": dict(creator),
            "createdDateTime": now(),
            "isUcEnabled": True,
            "computeMode": properties.get("computeMode") or "Hybrid",
            "uiDefinitionUri": "https://path/to/workspaceCreateUiDefinition.json",
            "_workspaceId": workspace_id,
            "_workspaceUrl": host or api.double.url.split("://", 1)[1],
        },
    }


def public_workspace(workspace: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a stored workspace."""
    body = copy.deepcopy(workspace)
    properties = body["properties"]
    workspace_id, url = properties.pop("_workspaceId"), properties.pop("_workspaceUrl")
    if properties["provisioningState"] == "Succeeded":
        properties["workspaceId"], properties["workspaceUrl"] = workspace_id, url
    return body


def seed_workspace(
    api: ArmDouble, name: str, subscription: str, resource_group: str, location: str, tags: dict[str, str]
) -> None:
    """Plant an existing workspace (see ``ArmDouble.seed_workspace``)."""
    with api.lock:
        key = (subscription.lower(), resource_group.lower(), name.lower())
        body = {
            "location": location,
            "sku": {"name": "premium"},
            "tags": tags,
            "properties": {"managedResourceGroupId": f"/subscriptions/{subscription}/resourceGroups/mrg"},
        }
        workspace = workspace_body(api, subscription, resource_group, name, body, "")
        workspace["properties"]["provisioningState"] = "Succeeded"
        api.workspaces[key] = workspace


def _cores_quota(location: str) -> dict[str, str]:
    return {
        "code": "InsufficientQuota",
        "message": f"Operation could not be completed as it results in exceeding approved standardDSv2Family "
        f"Cores quota. Location: {location}, Current Limit: 0, Current Usage: 0, Additional Required: 8.",
    }


class Workspaces:
    """The workspace handlers of one ARM double."""

    def __init__(self, api: ArmDouble) -> None:
        self.api = api

    def put(self, request: Request) -> Response:
        """``PUT .../workspaces/{name}``: create (in the ``workspace.create`` style) or update (200)."""
        api = self.api
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
        location = str(body["location"]).replace(" ", "").lower()
        error = _cores_quota(location) if api.quota_stage(location) == "workspace" else None
        how = api.quota_delivery(location)
        with api.lock:
            existing = api.workspaces.get(key)
            if existing is not None:
                existing["tags"] = body.get("tags") or {}
                return json_response(200, public_workspace(existing))
            if error is not None and how == "sync":
                api.events.append(("refused", "workspace", p["workspace"]))
                return arm_error(400, error["code"], error["message"])
            workspace = workspace_body(
                api, p["sub"], p["rg"], p["workspace"], body, request.headers.get("host", "")
            )
            api.workspaces[key] = workspace
            api.events.append(("created", "workspace", p["workspace"]))

        def finish() -> dict[str, Any] | None:
            with api.lock:
                if api.workspaces.get(key) is not workspace:
                    return None
                if error is not None:
                    workspace["properties"]["provisioningState"] = "Failed"
                    api.events.append(("failed", "workspace", workspace["name"]))
                    return error
                workspace["properties"]["provisioningState"] = "Succeeded"
            return None

        def current() -> dict[str, Any] | None:
            with api.lock:
                return public_workspace(workspace)

        style = None
        if error is not None:
            configured = api.operations.style("workspace.create")
            style = "none" if how == "state" else ("azure-async" if configured == "none" else configured)
        return api.operations.start(
            request,
            "workspace.create",
            style=style,
            base=api.base(request),
            status_prefix=workspace["id"],
            resource_id=workspace["id"],
            body=current,
            finish=finish,
            status_word="operationStatus",
        )

    def get(self, request: Request) -> Response:
        """``GET .../workspaces/{name}``."""
        p = request.params
        with self.api.lock:
            workspace = self.api.workspaces.get((p["sub"].lower(), p["rg"].lower(), p["workspace"].lower()))
            if workspace is None:
                return arm_error(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.Databricks/workspaces/{p['workspace']}' under resource "
                    f"group '{p['rg']}' was not found.",
                )
            return json_response(200, public_workspace(workspace))

    def list(self, request: Request) -> Response:
        """``GET /subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.Databricks/workspaces``."""
        sub, rg = request.params["sub"].lower(), request.params.get("rg")
        with self.api.lock:
            value = [
                public_workspace(w)
                for key, w in self.api.workspaces.items()
                if key[0] == sub and (rg is None or key[1] == rg.lower())
            ]
        return json_response(200, {"value": value})

    def delete(self, request: Request) -> Response:
        """``DELETE .../workspaces/{name}`` (in the ``workspace.delete`` style)."""
        api = self.api
        p = request.params
        key = (p["sub"].lower(), p["rg"].lower(), p["workspace"].lower())
        with api.lock:
            workspace = api.workspaces.get(key)
            if workspace is None:
                return Response(204, b"", {})
            workspace["properties"]["provisioningState"] = "Deleting"

        def finish() -> None:
            with api.lock:
                if api.workspaces.pop(key, None) is not None:
                    api.events.append(("deleted", "workspace", workspace["name"]))
            return None

        return api.operations.start(
            request,
            "workspace.delete",
            base=api.base(request),
            status_prefix=workspace["id"],
            resource_id=workspace["id"],
            body=lambda: None,
            finish=finish,
            status_word="operationStatus",
        )


def routes(api: ArmDouble) -> list[tuple[str, str, Callable[[Request], Response]]]:
    """The Databricks workspace routes."""
    workspaces = Workspaces(api)
    return [
        ("GET", SUB + r"/providers/Microsoft\.Databricks/workspaces", workspaces.list),
        ("GET", RG + r"/providers/Microsoft\.Databricks/workspaces", workspaces.list),
        ("PUT", WORKSPACE, workspaces.put),
        ("GET", WORKSPACE, workspaces.get),
        ("DELETE", WORKSPACE, workspaces.delete),
    ]
