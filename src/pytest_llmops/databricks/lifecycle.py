"""What the Databricks fixtures do: the workspace client (live, or replayed from its
session cassette), the cluster's environment, and the lab's cluster for
``databricks_cluster``: attached, provisioned (once per invocation, shared by xdist workers,
removed after the last one) or replayed."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import resources, session
from pytest_llmops import settings as settings_mod
from pytest_llmops.cassettes.lifecycle import open_session_cassette
from pytest_llmops.errors import ReplayMiss

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from pytest_llmops.azure.workspace import AzureDatabricksWorkspace
    from pytest_llmops.cassettes.recorder import Cassette, Recorder
    from pytest_llmops.databricks.cluster import DatabricksCluster, Progress
    from pytest_llmops.databricks.secrets import ClusterEnvironment

CLUSTER = "databricks_cluster"
"""The cluster fixture's name (its session cassette, its progress lines)."""


def workspace_client(
    request: pytest.FixtureRequest, azure_workspace: AzureDatabricksWorkspace
) -> Iterator[WorkspaceClient]:
    """The body of ``databricks_workspace``: a client of the workspace, or of the
    placeholder host in replay (its host probe answered by the session cassette)."""
    from pytest_llmops import extras

    extras.require(extras.DATABRICKS_FIXTURES, "databricks.sdk")
    from pytest_llmops.databricks import workspace

    cassette = open_session_cassette(request, "databricks_workspace")
    with cassette.activate():
        if cassette.replaying:
            client = workspace.replay_client()
        else:
            named = azure_workspace.client_kwargs()
            client = workspace.live_client(
                settings_mod.get(request.config),
                host=named.get("host"),
                azure_workspace_resource_id=named.get("azure_workspace_resource_id"),
            )
    if not cassette.replaying:
        cassette.metadata.update(workspace.metadata(client))
    yield client
    cassette.save()


def cluster_environment(request: pytest.FixtureRequest) -> ClusterEnvironment:
    """The body of ``databricks_cluster_environment``: the lab's variables, from the
    session's Azure OpenAI deployment (nothing without one)."""
    from pytest_llmops.databricks.secrets import ClusterEnvironment, openai_environment

    try:
        deployment = request.getfixturevalue("azure_openai_deployment")
    except pytest.skip.Exception as skipped:
        resources.progress(
            request.config,
            f"{CLUSTER}: no Azure OpenAI deployment for the cluster's environment ({skipped.msg})",
        )
        return ClusterEnvironment()
    return openai_environment(deployment)


def cluster(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config, databricks_workspace: WorkspaceClient
) -> Iterator[DatabricksCluster]:
    """The body of ``databricks_cluster`` (see its docstring)."""
    settings = settings_mod.get(pytestconfig)
    cassette: Cassette = open_session_cassette(request, CLUSTER)
    if cassette.replaying:
        yield from _replayed(pytestconfig, databricks_workspace, cassette)
        return

    def progress(message: str) -> None:
        resources.progress(pytestconfig, f"{CLUSTER}: {message}")

    cluster_id = databricks_workspace.config.cluster_id
    if cluster_id:
        yield from _attached(pytestconfig, databricks_workspace, cassette, str(cluster_id), progress)
    elif settings.provision:
        yield from _provisioned(request, databricks_workspace, cassette, progress)
    else:
        from pytest_llmops.azure.openai import missing

        missing(["DATABRICKS_CLUSTER_ID"], settings, f"{CLUSTER} (or --llmops-provision, to create one)")


def _replayed(
    config: pytest.Config, workspace: WorkspaceClient, cassette: Cassette
) -> Iterator[DatabricksCluster]:
    from pytest_llmops.databricks import cluster as clusters
    from pytest_llmops.databricks import secrets

    recorded = cassette.metadata
    action = recorded.get("action")
    if action not in ("attach", "provision"):
        problem = "does not exist" if not cassette.exists else "does not say which cluster was used"
        raise ReplayMiss(
            f"{CLUSTER} has no recording to replay: {cassette.path} {problem}.\nRecord it against a "
            "workspace: `DATABRICKS_CLUSTER_ID=<cluster id> pytest --llmops-record` (attach), or "
            "`pytest --llmops-record --llmops-provision` (create the lab's cluster).",
            cassette=str(cassette.path),
        )
    described = clusters.DatabricksCluster.from_metadata(recorded["cluster"])
    scope, environment = secrets.replayed_environment(recorded.get("environment") or {})

    def say(message: str) -> None:
        # Creations and removals say what is replayed; the waits in between take no time.
        if message.startswith("replaying"):
            resources.progress(config, f"{CLUSTER}: {message}")

    with cassette.activate():
        if action == "attach":
            found = clusters.attach(workspace, described.cluster_id, lambda message: None)
        else:
            if scope:
                secrets.create_scope(workspace, scope, environment.secrets, say, replaying=True)
            found = clusters.provision(
                workspace,
                name=described.cluster_name,
                node_type_id=str(described.node_type_id),
                tags=recorded.get("tags", {}),
                progress=say,
                spark_env_vars=environment.spark_env_vars(scope) if scope else None,
                replaying=True,
            )
    yield found
    if action == "provision" and recorded.get("removed"):
        with cassette.activate():
            say(resources.removal_line(f"cluster {found.cluster_id}", replaying=True))
            clusters.remove(workspace, found.cluster_id, lambda message: None)
            if scope:
                secrets.remove_scope(workspace, scope, say, replaying=True)


def _attached(
    config: pytest.Config, workspace: WorkspaceClient, cassette: Cassette, cluster_id: str, progress: Progress
) -> Iterator[DatabricksCluster]:
    from pytest_llmops.databricks import cluster as clusters

    def attach() -> dict[str, Any]:
        with cassette.activate():
            return clusters.attach(workspace, cluster_id, progress).metadata()

    value, first = _once_per_invocation(config, f"{CLUSTER}-attached", attach)
    found = clusters.DatabricksCluster.from_metadata(value)
    yield found
    if first:  # under xdist, the worker that attached writes the session cassette
        cassette.metadata.update(action="attach", cluster=found.metadata())
        cassette.save()


def _provisioned(
    request: pytest.FixtureRequest, workspace: WorkspaceClient, cassette: Cassette, progress: Progress
) -> Iterator[DatabricksCluster]:
    from pytest_llmops.databricks import cluster as clusters
    from pytest_llmops.databricks import secrets

    config = request.config
    settings = settings_mod.get(config)
    tags = resources.tags(config)
    name = f"pytest-llmops-{session.session_id(config)}"
    node_type_id = clusters.node_type(str(config.getini(clusters.NODE_TYPE_INI) or ""), os.environ)
    scope = secrets.scope_name(session.session_id(config), tags[resources.TAG_REMOVE_AFTER])
    recorder: Recorder = request.getfixturevalue("llmops_recorder")

    def create() -> dict[str, Any]:
        environment: ClusterEnvironment = request.getfixturevalue("databricks_cluster_environment")
        with cassette.activate():
            if environment.secrets:
                secrets.create_scope(workspace, scope, environment.secrets, progress)
            try:
                made = clusters.provision(
                    workspace,
                    name=name,
                    node_type_id=node_type_id,
                    tags=tags,
                    progress=progress,
                    spark_env_vars=environment.spark_env_vars(scope),
                )
            except BaseException:
                if environment.secrets:
                    secrets.remove_scope(workspace, scope, progress)
                raise
        stored = secrets.recorded_environment(
            scope if environment.secrets else "", environment, recorder.sanitizer.scrub_text
        )
        return {**made.metadata(), "_environment": stored}

    def remove(value: dict[str, Any]) -> None:
        with cassette.activate():
            try:
                clusters.remove(workspace, value["cluster_id"], progress)
            finally:
                if value["_environment"]["scope"]:
                    secrets.remove_scope(workspace, value["_environment"]["scope"], progress)

    def describe(value: dict[str, Any]) -> str:
        scope_kept = value["_environment"]["scope"]
        return f"cluster {value['cluster_id']} ({value['cluster_name']})" + (
            f" and secret scope {scope_kept}" if scope_kept else ""
        )

    with resources.shared(config, CLUSTER, create, remove, describe=describe) as shared:
        found = clusters.DatabricksCluster.from_metadata(shared.value)
        yield found
    if shared.created:  # under xdist only the creator writes the session cassette
        cassette.metadata.update(
            action="provision",
            cluster=found.metadata(),
            tags=tags,
            environment=shared.value["_environment"],
            removed=not settings.keep_resources,
        )
        cassette.save()


def _once_per_invocation(
    config: pytest.Config, name: str, make: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """``make()`` in the first process of this invocation that asks (xdist workers share the
    result); returns the value and whether this process made it. Nothing to remove after."""
    from filelock import FileLock

    directory = resources.state_dir(config)
    record = directory / f"{name}.json"
    with FileLock(str(directory / f"{name}.lock")):
        if record.is_file():
            return json.loads(record.read_text()), False
        value = make()
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, record)
        return value, True
