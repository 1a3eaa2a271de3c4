"""The finder of Azure resources for ``pytest-llmops sweep``: Azure OpenAI (Cognitive
Services) accounts, soft-deleted ones, and Azure Databricks workspaces, each with its tags.
Which of them are due is decided by :mod:`pytest_llmops.sweep` (``CreatedBy`` and a past
``RemoveAfter``); a due one is removed the way the fixtures remove it: an account's
deployments, the account, then its purge; a soft-deleted account's purge; a workspace.

Configuration: ``AZURE_SUBSCRIPTION_ID`` (required), ``AZURE_RESOURCE_GROUP`` (optional:
only that group), ``AZURE_RESOURCE_MANAGER_ENDPOINT``, and ``DefaultAzureCredential``.

Usage::

    from pytest_llmops.sweep import sweep

    sweep(["pytest_llmops.azure.sweep:find_resources"], dry_run=True)
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from functools import partial
from typing import Any

from pytest_llmops.azure import arm
from pytest_llmops.errors import SweepUnavailable
from pytest_llmops.sweep import Resource

ACCOUNT = "Azure OpenAI account"
DELETED_ACCOUNT = "Azure OpenAI account (soft-deleted)"
WORKSPACE = "Azure Databricks workspace"


def find_resources(
    credential: Any = None,
    subscription_id: str | None = None,
    *,
    endpoint: str | None = None,
    resource_group: str | None = None,
) -> Iterator[Resource]:
    """Every Azure OpenAI account (live and soft-deleted) and Databricks workspace of the
    subscription (or of ``resource_group``), whoever created it: the sweep only touches
    those tagged by pytest-llmops. Arguments default to the environment."""
    subscription_id = subscription_id or os.environ.get("AZURE_SUBSCRIPTION_ID", "").strip()
    if not subscription_id:
        raise SweepUnavailable(
            "Azure: no subscription configured. Set AZURE_SUBSCRIPTION_ID (and sign in: `az login`, "
            "or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET), then rerun `pytest-llmops sweep`."
        )
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    endpoint = endpoint or arm.arm_endpoint()
    group = (resource_group or os.environ.get("AZURE_RESOURCE_GROUP", "")).strip().lower() or None
    cognitive = arm.cognitive_client(credential, subscription_id, endpoint)
    databricks = arm.databricks_client(credential, subscription_id, endpoint)

    for account in cognitive.accounts.list():
        account_group = _segment(account.id, "resourceGroups")
        if group and account_group.lower() != group:
            continue
        yield Resource(
            kind=ACCOUNT,
            id=str(account.id),
            delete=partial(
                _remove_account, cognitive, account_group, str(account.name), str(account.location)
            ),
            name=str(account.name),
            tags=dict(account.tags or {}),
            created=_created(account),
            detail=f"resource group {account_group}, {account.location}",
        )
    for deleted in cognitive.deleted_accounts.list():
        deleted_group = _segment(deleted.id, "resourceGroups")
        if group and deleted_group.lower() != group:
            continue
        region = _segment(deleted.id, "locations") or str(deleted.location)
        yield Resource(
            kind=DELETED_ACCOUNT,
            id=str(deleted.id),
            delete=partial(_purge, cognitive, region, deleted_group, str(deleted.name)),
            name=str(deleted.name),
            tags=dict(deleted.tags or {}),
            created=_created(deleted),
            detail=f"resource group {deleted_group}, {region}",
        )
    for workspace in databricks.workspaces.list_by_subscription():
        workspace_group = _segment(workspace.id, "resourceGroups")
        if group and workspace_group.lower() != group:
            continue
        created = getattr(workspace.properties, "created_date_time", None)
        yield Resource(
            kind=WORKSPACE,
            id=str(workspace.id),
            delete=partial(_remove_workspace, databricks, workspace_group, str(workspace.name)),
            name=str(workspace.name),
            tags=dict(workspace.tags or {}),
            created=created if isinstance(created, dt.datetime) else None,
            detail=f"resource group {workspace_group}, {workspace.location}",
        )


def _segment(resource_id: Any, name: str) -> str:
    """The value after ``name`` in an ARM id (``resourceGroups``, ``locations``)."""
    parts = str(resource_id or "").split("/")
    lowered = [p.lower() for p in parts]
    try:
        return parts[lowered.index(name.lower()) + 1]
    except (ValueError, IndexError):
        return ""


def _created(account: Any) -> dt.datetime | None:
    created = getattr(getattr(account, "system_data", None), "created_at", None)
    return created if isinstance(created, dt.datetime) else None


def _remove_account(client: Any, group: str, name: str, region: str) -> None:
    from pytest_llmops.azure.provision import OpenAIProvisioner, OpenAIResource, Plan

    deployments = [str(d.name) for d in client.deployments.list(group, name)] or ["gpt-4o"]
    for deployment in deployments[1:]:
        arm.ignoring_not_found(partial(_delete_deployment, client, group, name, deployment))
    provisioner = OpenAIProvisioner(client, Plan(group, [], ""), lambda message: None)
    provisioner.remove(
        OpenAIResource(group, name, region.replace(" ", "").lower(), "", deployments[0], "", "", True)
    )


def _delete_deployment(client: Any, group: str, account: str, deployment: str) -> None:
    arm.wait(client.deployments.begin_delete(group, account, deployment))


def _purge(client: Any, region: str, group: str, name: str) -> None:
    arm.ignoring_not_found(lambda: arm.wait(client.deleted_accounts.begin_purge(region, group, name)))


def _remove_workspace(client: Any, group: str, name: str) -> None:
    from pytest_llmops.azure.workspace import WorkspaceProvisioner

    WorkspaceProvisioner(client, "", "", lambda message: None).remove({"resource_group": group, "name": name})
