"""What a provisioned cluster's notebooks find in their environment, and the secret scope
that holds the secret part of it.

A Databricks cluster gets environment variables only from its spec (``spark_env_vars``); a
secret belongs in a secret scope and is referenced there as ``{{secrets/<scope>/<key>}}``,
which the cluster resolves when it starts. So the lab's cluster is created with
``AZURE_OPENAI_ENDPOINT`` and ``AZURE_OPENAI_API_VERSION`` as plain variables and
``AZURE_OPENAI_API_KEY`` as a reference into a scope the fixture creates first (Secrets
API) and deletes after the cluster.

Scopes carry no tags, so the name says what a tag would: ``pytest-llmops-<session>-
removeafter-<YYYYMMDDHH>`` lets ``pytest-llmops sweep`` recognise a leaked one and know when
it is due (:func:`scope_tags`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_llmops.errors import ClusterEnvironmentMissing, ProvisioningError
from pytest_llmops.resources import (
    CREATED_BY,
    TAG_CREATED_BY,
    TAG_REMOVE_AFTER,
    TAG_SESSION,
    creation_line,
    removal_line,
)

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from pytest_llmops.azure.openai import AzureOpenAIDeployment

Progress = Callable[[str], None]

SCOPE_PREFIX = "pytest-llmops-"
_SCOPE = re.compile(r"^pytest-llmops-(?P<session>[0-9a-z]+)-removeafter-(?P<remove_after>\d{10})$")
REPLAY_SECRET = "replay-secret-value"  # not a secret: replay answers from cassettes
OPENAI_VARIABLES = ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")
"""What the lab's cluster cell reads from the cluster's environment (the API version has a default)."""


@dataclass(frozen=True)
class ClusterEnvironment:
    """Environment variables for a cluster: ``variables`` go into ``spark_env_vars`` as they
    are; each of ``secrets`` is stored in the session's secret scope and referenced there."""

    variables: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def spark_env_vars(self, scope: str) -> dict[str, str]:
        """The cluster spec's ``spark_env_vars``: values, and ``{{secrets/<scope>/<name>}}``."""
        return {**self.variables, **{name: reference(scope, name) for name in self.secrets}}

    def names(self) -> tuple[str, ...]:
        """Every variable the cluster gets, sorted."""
        return tuple(sorted({*self.variables, *self.secrets}))


def openai_environment(deployment: AzureOpenAIDeployment) -> ClusterEnvironment:
    """What the lab's cluster cell needs of the session's Azure OpenAI deployment: endpoint
    and API version, and its key as a secret (none with Entra ID: the deployment has no key)."""
    variables = {
        "AZURE_OPENAI_ENDPOINT": deployment.endpoint,
        "AZURE_OPENAI_API_VERSION": deployment.api_version,
    }
    secrets = {"AZURE_OPENAI_API_KEY": deployment.api_key} if deployment.api_key else {}
    return ClusterEnvironment(variables, secrets)


def reference(scope: str, key: str) -> str:
    """A Databricks secret reference, as ``spark_env_vars`` take it."""
    return "{{secrets/" + scope + "/" + key + "}}"


def scope_name(session_id: str, remove_after: str) -> str:
    """The session's scope: its tags written into the name (scopes have no tags)."""
    return f"{SCOPE_PREFIX}{session_id}-removeafter-{remove_after}"


def scope_tags(name: str) -> dict[str, str]:
    """The tags a scope's name stands for (``{}`` when pytest-llmops did not name it)."""
    match = _SCOPE.match(name)
    if match is None:
        return {}
    return {
        TAG_CREATED_BY: CREATED_BY,
        TAG_REMOVE_AFTER: match["remove_after"],
        TAG_SESSION: match["session"],
    }


def create_scope(
    workspace: WorkspaceClient,
    scope: str,
    secrets: Mapping[str, str],
    progress: Progress,
    *,
    replaying: bool = False,
) -> None:
    """Create ``scope`` and put ``secrets`` in it; a failure removes the scope again."""
    from databricks.sdk.errors.base import DatabricksError

    listed = ", ".join(sorted(secrets))
    progress(creation_line(f"secret scope {scope}", replaying=replaying, detail=f"holding {listed}"))
    try:
        workspace.secrets.create_scope(scope)
    except DatabricksError as error:
        raise ProvisioningError(
            f"Could not create the secret scope {scope} for the cluster's {listed}: {error}\nThe "
            "cluster needs it to read the key as {{secrets/<scope>/<key>}}. Check that the workspace "
            "lets you create secret scopes (Premium plan; at most 100 scopes), then rerun."
        ) from error
    try:
        for key, value in secrets.items():
            workspace.secrets.put_secret(scope, key, string_value=value)
    except BaseException:
        remove_scope(workspace, scope, lambda message: None)
        raise


def remove_scope(
    workspace: WorkspaceClient, scope: str, progress: Progress, *, replaying: bool = False
) -> None:
    """Delete ``scope`` and its secrets; a scope that is already gone is fine."""
    from databricks.sdk.errors import NotFound
    from databricks.sdk.errors.base import DatabricksError

    progress(removal_line(f"secret scope {scope}", replaying=replaying))
    try:
        workspace.secrets.delete_scope(scope)
    except NotFound:
        return
    except DatabricksError as error:
        raise ProvisioningError(
            f"Could not delete the secret scope {scope}: {error}. Delete it with "
            f"`databricks secrets delete-scope {scope}`, or run `pytest-llmops sweep` once its "
            "RemoveAfter hour (in its name) has passed."
        ) from error


def environment_problem(
    cluster_id: str, has: tuple[str, ...], names: tuple[str, ...], *, provisioned: bool
) -> ClusterEnvironmentMissing | None:
    """The error for a cluster whose environment lacks some of ``names``, or None."""
    missing = [name for name in names if name not in has]
    if not missing:
        return None
    listed = ", ".join(missing)
    if provisioned:
        fix = (
            "pytest-llmops created this cluster with the variables of the `databricks_cluster_environment` "
            "fixture, which had none of them: configure the session's Azure OpenAI deployment "
            "(AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY, or --llmops-provision with "
            "AZURE_SUBSCRIPTION_ID and AZURE_RESOURCE_GROUP), or override that fixture in conftest.py."
        )
    else:
        shown = " ".join(
            f"{name}={reference('<scope>', name) if 'KEY' in name else '<' + name.lower() + '>'}"
            for name in missing
        )
        fix = (
            "A cluster gets environment variables only from its configuration. Set them on cluster "
            f"{cluster_id}: Compute > the cluster > Edit > Advanced options > Spark > Environment "
            f"variables (the API's spark_env_vars), e.g. {shown}. Keep a key in a secret scope "
            "(`databricks secrets create-scope <scope>`, then `databricks secrets put-secret <scope> "
            "<key>`) and reference it as {{secrets/<scope>/<key>}}. Restart the cluster, then rerun. "
            "Or let pytest-llmops create a cluster that has them: unset DATABRICKS_CLUSTER_ID and run "
            "`pytest --llmops-record --llmops-provision`."
        )
    return ClusterEnvironmentMissing(
        f"Cluster {cluster_id} has no {listed} in its environment, which the code run on it reads.\n{fix}"
    )


def replayed_environment(recorded: Mapping[str, Any]) -> tuple[str, ClusterEnvironment]:
    """``(scope, environment)`` as a recording stored them (secret values replaced)."""
    variables = {str(k): str(v) for k, v in (recorded.get("variables") or {}).items()}
    secrets = dict.fromkeys((str(name) for name in recorded.get("secrets") or ()), REPLAY_SECRET)
    return str(recorded.get("scope") or ""), ClusterEnvironment(variables, secrets)


def recorded_environment(
    scope: str, environment: ClusterEnvironment, scrub: Callable[[str], str]
) -> dict[str, Any]:
    """What a session cassette stores of a cluster's environment: the scope, the variables
    (scrubbed like the traffic), the secrets' names (never their values)."""
    return {
        "scope": scope,
        "variables": {name: scrub(value) for name, value in environment.variables.items()},
        "secrets": sorted(environment.secrets),
    }
