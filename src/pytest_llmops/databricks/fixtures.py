"""Databricks fixtures: the workspace client, the lab's cluster, commands run on it.

Session fixtures record into ``<cassette dir>/_session/<fixture>.yaml``; in replay they
read from there what the recording did (attach or provision, which cluster) and replay its
calls, with no flag and no variable. Nothing from databricks-sdk is imported until a
fixture runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import extras, resources, session
from pytest_llmops import settings as settings_mod
from pytest_llmops.cassettes.fixtures import open_session_cassette
from pytest_llmops.errors import ReplayMiss
from pytest_llmops.extras import DATABRICKS_FIXTURES

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from pytest_llmops.azure.workspace import AzureDatabricksWorkspace
    from pytest_llmops.cassettes.recorder import Cassette, Recorder
    from pytest_llmops.databricks.cluster import DatabricksCluster, Progress
    from pytest_llmops.databricks.command import DatabricksCommand
    from pytest_llmops.databricks.secrets import ClusterEnvironment

CLUSTER = "databricks_cluster"


@pytest.fixture(scope="session")
def databricks_workspace(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    azure_databricks_workspace: AzureDatabricksWorkspace,
) -> Iterator[WorkspaceClient]:
    """A ``databricks.sdk.WorkspaceClient`` for this session.

    Live and record: the workspace of ``azure_databricks_workspace`` (``DATABRICKS_HOST``,
    or the one ``--llmops-provision`` created) through the SDK's unified authentication
    (``DATABRICKS_TOKEN``, a profile, an Azure service principal, the Azure CLI); a
    workspace that is not configured skips the test naming ``DATABRICKS_HOST``. Replay: a
    placeholder host and a dummy token; its calls are answered by cassettes (the host probe
    by ``<cassette dir>/_session/databricks_workspace.yaml``).

    Calls made from a test go through that test's cassette: use the client in a test that
    has one (``@pytest.mark.llmops_cassette``, ``@pytest.mark.llmops`` or the
    ``llmops_cassette`` fixture). Example::

        @pytest.mark.llmops_cassette
        def test_who_am_i(databricks_workspace):
            assert databricks_workspace.current_user.me().user_name
    """
    extras.require(DATABRICKS_FIXTURES, "databricks.sdk")
    from pytest_llmops.databricks import workspace

    settings = settings_mod.get(pytestconfig)
    cassette: Cassette = open_session_cassette(request, "databricks_workspace")
    with cassette.activate():
        if cassette.replaying:
            client = workspace.replay_client()
        else:
            named = azure_databricks_workspace.client_kwargs()
            client = workspace.live_client(
                settings,
                host=named.get("host"),
                azure_workspace_resource_id=named.get("azure_workspace_resource_id"),
            )
    if not cassette.replaying:
        cassette.metadata.update(workspace.metadata(client))
    yield client
    cassette.save()


@pytest.fixture(scope="session")
def databricks_cluster_environment(request: pytest.FixtureRequest) -> ClusterEnvironment:
    """The environment variables a cluster created with ``--llmops-provision`` gets: its
    ``variables`` go into the cluster's ``spark_env_vars`` as they are; its ``secrets`` are
    put in a secret scope created for the session (removed after the cluster) and referenced
    as ``{{secrets/<scope>/<name>}}``, so no key is in the cluster's configuration.

    Default: what the lab's cluster cell reads, from ``azure_openai_deployment``:
    ``AZURE_OPENAI_ENDPOINT`` and ``AZURE_OPENAI_API_VERSION``, and ``AZURE_OPENAI_API_KEY``
    as a secret (none with Entra ID). Without an Azure OpenAI deployment configured, nothing.
    Override it to give the cluster other variables::

        from pytest_llmops.databricks.secrets import ClusterEnvironment

        @pytest.fixture(scope="session")
        def databricks_cluster_environment():
            return ClusterEnvironment(variables={"STAGE": "test"}, secrets={"TOKEN": os.environ["MY_TOKEN"]})
    """
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


@pytest.fixture(scope="session")
def databricks_cluster(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config, databricks_workspace: WorkspaceClient
) -> Iterator[DatabricksCluster]:
    """The lab's cluster: ``cluster_id``, ``cluster_name``, ``spark_version`` (runtime),
    ``node_type_id``, and whether it was ``provisioned`` (or attached).

    - ``DATABRICKS_CLUSTER_ID`` set (or ``cluster_id`` in the profile): attach. A terminated
      cluster is started and awaited; a cluster it did not create is never terminated.
    - ``--llmops-provision``: create the lab's single node 16.4 LTS ML cluster (node type
      ``Standard_D4ds_v5``, or the ``llmops_databricks_node_type`` ini option, or
      ``DATABRICKS_NODE_TYPE``), wait until it runs (state and time on the terminal), and
      terminate and permanently delete it at the end of the session, also after failures
      and Ctrl-C (``--llmops-keep-resources`` keeps it and prints its id). Under xdist one
      cluster serves every worker and is removed after the last one.
    - Neither: the test is skipped naming ``DATABRICKS_CLUSTER_ID``.
    - Replay: what the recording did, from ``<cassette dir>/_session/databricks_cluster.yaml``.

    Example::

        def test_runtime(databricks_cluster):
            assert "-ml-" in databricks_cluster.spark_version
    """
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


@pytest.fixture
def databricks_command(
    llmops_cassette: Cassette, databricks_workspace: WorkspaceClient, databricks_cluster: DatabricksCluster
) -> Iterator[DatabricksCommand]:
    """Run Python on ``databricks_cluster`` and get its output; the test's cassette records
    (or replays) the traffic. The commands of a test share one execution context, destroyed
    after the test. A remote exception fails the test with the cluster's traceback
    (``RemoteCommandError``).

    Example::

        def test_lab_logging_cell(databricks_command):
            databricks_command("import os; os.environ['AZURE_OPENAI_API_VERSION'] = '2024-05-01-preview'")
            assert databricks_command("print(1 + 1)") == "2"
            result = databricks_command.run(LOGGING_CELL, timeout=900)  # a CommandResult
            print(result.output)
    """
    from pytest_llmops.databricks.command import DatabricksCommand

    command = DatabricksCommand(databricks_workspace, databricks_cluster.cluster_id)
    yield command
    command.close()
