"""The finders of Databricks resources for ``pytest-llmops sweep``: every cluster of the
workspace with its custom tags, removed the way the fixture removes it (terminate, then
permanent delete); and every secret scope, with the tags its name stands for (scopes have
none: ``pytest-llmops-<session>-removeafter-<YYYYMMDDHH>``), deleted with its secrets."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

from pytest_llmops.errors import SweepUnavailable
from pytest_llmops.sweep import Resource

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

KIND = "Databricks cluster"
SCOPE_KIND = "Databricks secret scope"


def find_clusters(workspace: WorkspaceClient | None = None) -> Iterator[Resource]:
    """The clusters of the workspace that unified auth points at (``DATABRICKS_HOST`` and
    ``DATABRICKS_TOKEN``, a profile, an Azure service principal, ``az login``)."""
    from pytest_llmops.databricks.cluster import remove

    client = workspace if workspace is not None else _client("Databricks clusters")
    for details in client.clusters.list():
        cluster_id = str(details.cluster_id)
        started = details.start_time
        yield Resource(
            kind=KIND,
            id=cluster_id,
            delete=partial(remove, client, cluster_id, lambda message: None),
            name=details.cluster_name or "",
            tags=dict(details.custom_tags or {}),
            created=dt.datetime.fromtimestamp(started / 1000, dt.UTC) if started else None,
            detail=details.state.value if details.state is not None else "",
        )


def find_secret_scopes(workspace: WorkspaceClient | None = None) -> Iterator[Resource]:
    """The secret scopes of the workspace that unified auth points at; the sweep deletes only
    those pytest-llmops named (see :func:`pytest_llmops.databricks.secrets.scope_tags`)."""
    from pytest_llmops.databricks.secrets import remove_scope, scope_tags

    client = workspace if workspace is not None else _client("Databricks secret scopes")
    for scope in client.secrets.list_scopes():
        name = str(scope.name)
        yield Resource(
            kind=SCOPE_KIND,
            id=name,
            delete=partial(remove_scope, client, name, lambda message: None),
            tags=scope_tags(name),
            detail=scope.backend_type.value if scope.backend_type is not None else "",
        )


def _client(what: str) -> WorkspaceClient:
    from databricks.sdk import WorkspaceClient

    from pytest_llmops.databricks.workspace import workspace_configured

    if not workspace_configured(os.environ):
        raise SweepUnavailable(
            f"{what}: no workspace configured. Set DATABRICKS_HOST and DATABRICKS_TOKEN "
            "(or DATABRICKS_CONFIG_PROFILE), then rerun `pytest-llmops sweep`."
        )
    try:
        return WorkspaceClient(product="pytest-llmops")
    except ValueError as error:
        raise SweepUnavailable(
            f"{what}: the SDK rejected the configuration ({error}). Fix DATABRICKS_HOST and "
            "DATABRICKS_TOKEN (or the profile), then rerun `pytest-llmops sweep`."
        ) from error
