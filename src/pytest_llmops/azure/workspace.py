"""The lab's Azure Databricks workspace (step 3): attached by ``DATABRICKS_HOST`` or
provisioned in the same resource group and region as the Azure OpenAI resource.

``AzureDatabricksWorkspace.url`` is what ``databricks_workspace`` connects to; for a
provisioned workspace ``resource_id`` also lets the Databricks SDK authenticate with Entra
ID (``azure_workspace_resource_id``), since a new workspace has no personal access token.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pytest_llmops.azure import arm
from pytest_llmops.cassettes import replay_env
from pytest_llmops.cassettes.sanitize import DATABRICKS_HOST, ZERO_GUID
from pytest_llmops.errors import ProvisioningError
from pytest_llmops.resources import creation_line

WORKSPACE_SKU = "premium"
"""The lab allows Premium or Trial; Premium is what a pay-as-you-go subscription can create."""
COMPUTE_MODE = "Hybrid"
"""Classic compute: the lab runs its own single-node cluster."""
REPLAY_URL = f"https://{DATABRICKS_HOST}"
AZURE_DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"
"""The Entra ID scope of the Azure Databricks resource (for tokens to a workspace)."""

Say = Callable[[str], None]


@dataclass(frozen=True)
class AzureDatabricksWorkspace:
    """An Azure Databricks workspace: where it is, and whether this session created it.

    ``url`` is None when attaching without ``DATABRICKS_HOST``: the Databricks SDK's unified
    auth (a profile in ``~/.databrickscfg``, ...) then decides which workspace.
    """

    url: str | None
    resource_id: str | None = None
    name: str | None = None
    resource_group: str | None = None
    region: str | None = None
    sku: str | None = None
    provisioned: bool = False

    def metadata(self) -> dict[str, Any]:
        """What a session cassette stores (host placeholder, zero subscription id)."""
        data = asdict(self)
        data["url"] = REPLAY_URL if self.url else None
        if self.resource_id:
            parts = self.resource_id.split("/")
            if len(parts) > 2 and parts[1].lower() == "subscriptions":
                parts[2] = ZERO_GUID
            data["resource_id"] = "/".join(parts)
        return data

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``databricks.sdk.WorkspaceClient`` (live and record): the
        host, and for a provisioned workspace its ARM id, so that the SDK's Azure
        authentication (``az login``, ``ARM_CLIENT_ID``/``ARM_CLIENT_SECRET``/``ARM_TENANT_ID``)
        reaches a workspace that has no personal access token yet. Empty when attaching
        without ``DATABRICKS_HOST`` (the SDK's unified auth decides)."""
        kwargs: dict[str, str] = {}
        if self.url:
            kwargs["host"] = self.url
        # A personal access token (DATABRICKS_TOKEN) wins: the SDK refuses two auth methods.
        if self.provisioned and self.resource_id and not replay_env.configured("DATABRICKS_TOKEN"):
            kwargs["azure_workspace_resource_id"] = self.resource_id
        return kwargs

    @classmethod
    def from_metadata(cls, data: Mapping[str, Any]) -> AzureDatabricksWorkspace:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.setdefault("url", REPLAY_URL)
        return cls(**known)


def attach(environ: Mapping[str, str] | None = None) -> AzureDatabricksWorkspace:
    """The workspace named by ``DATABRICKS_HOST`` (or None: the SDK's unified auth decides)."""
    env = os.environ if environ is None else environ
    host = env.get("DATABRICKS_HOST", "").strip().rstrip("/") or None
    if host and "://" not in host:
        host = f"https://{host}"
    return AzureDatabricksWorkspace(url=host)


def workspace_url(workspace_host: str, arm_endpoint: str) -> str:
    """``https://<workspaceUrl>`` as ARM reports it (a host without scheme). A local double
    on loopback speaks plain http, like the ARM endpoint it is reached through."""
    if "://" in workspace_host:
        return workspace_host.rstrip("/")
    scheme = "https"
    if arm.is_loopback_url(f"http://{workspace_host}") and arm_endpoint.startswith("http://"):
        scheme = "http"
    return f"{scheme}://{workspace_host.rstrip('/')}"


class WorkspaceProvisioner:
    """Creates and deletes one Azure Databricks workspace."""

    def __init__(
        self, client: Any, subscription_id: str, arm_endpoint: str, say: Say, *, replaying: bool = False
    ) -> None:
        self.client = client
        self.subscription_id = subscription_id
        self.arm_endpoint = arm_endpoint
        self.say = say
        self.replaying = replaying
        """Whether the client answers from a recording (progress lines say so)."""

    def create(self, resource_group: str, name: str, region: str, tags: dict[str, str]) -> dict[str, Any]:
        """Create the workspace (and its managed resource group); a JSON-able descriptor.
        A failed or interrupted creation deletes what it started."""
        self.say(
            creation_line(
                f"Azure Databricks workspace {name} in {region}",
                replaying=self.replaying,
                detail=WORKSPACE_SKU,
                duration="this takes minutes",
            )
        )
        managed = f"{name}-managed"
        body = {
            "location": region,
            "sku": {"name": WORKSPACE_SKU},
            "tags": tags,
            "properties": {
                "managedResourceGroupId": f"/subscriptions/{self.subscription_id}/resourceGroups/{managed}",
                "computeMode": COMPUTE_MODE,
            },
        }
        from azure.core.exceptions import HttpResponseError

        try:
            workspace = arm.wait(self.client.workspaces.begin_create_or_update(resource_group, name, body))
        except BaseException as failure:
            try:
                self.remove({"resource_group": resource_group, "name": name})
            except Exception as error:
                self.say(f"cleaning up workspace {name} failed: {error}")
            if isinstance(failure, (HttpResponseError, arm.FailedOperation)):
                code, message = arm.arm_error(failure)
                raise ProvisioningError(
                    f"Azure could not create Azure Databricks workspace {name} in {region}: "
                    f"{code + ': ' if code else ''}{message}\nIt was removed again. Fix what Azure names, "
                    "or set AZURE_LOCATION to another region (or DATABRICKS_HOST to reuse a workspace), "
                    "then rerun."
                ) from failure
            raise
        host = workspace.properties.workspace_url
        if not host:
            raise ProvisioningError(f"Azure reported no workspaceUrl for the new workspace {name}.")
        return {
            "resource_group": resource_group,
            "name": name,
            "region": region,
            "url": workspace_url(str(host), self.arm_endpoint),
            "resource_id": str(workspace.id),
            "sku": WORKSPACE_SKU,
        }

    def remove(self, resource: Mapping[str, Any]) -> None:
        """Delete the workspace (Azure removes its managed resource group with it)."""
        group, name = resource["resource_group"], resource["name"]
        try:
            arm.ignoring_not_found(lambda: arm.wait(self.client.workspaces.begin_delete(group, name)))
        except Exception as error:
            raise ProvisioningError(
                f"Could not delete Azure Databricks workspace {name}: {error}. Remove it with "
                f"`pytest-llmops sweep` once its RemoveAfter tag passed, or now: "
                f"`az databricks workspace delete -g {group} -n {name}`."
            ) from error


def from_resource(resource: Mapping[str, Any]) -> AzureDatabricksWorkspace:
    """The fixture value for a provisioned workspace descriptor."""
    return AzureDatabricksWorkspace(
        url=str(resource["url"]),
        resource_id=str(resource["resource_id"]),
        name=str(resource["name"]),
        resource_group=str(resource["resource_group"]),
        region=str(resource["region"]),
        sku=str(resource["sku"]),
        provisioned=True,
    )
