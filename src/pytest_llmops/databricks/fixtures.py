"""Databricks fixtures: the workspace client, the lab's cluster, commands run on it.

Session fixtures record into ``<cassette dir>/_session/<fixture>.yaml``; in replay they
read from there what the recording did (attach or provision, which cluster) and replay its
calls, with no flag and no variable. Thin: the domain modules (and databricks-sdk) are imported
when a fixture runs; the cluster's attach/provision/replay is in :mod:`.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_llmops import settings as settings_mod
from pytest_llmops.cassettes.fixtures import open_session_cassette

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from pytest_llmops.azure.workspace import AzureDatabricksWorkspace
    from pytest_llmops.cassettes.recorder import Cassette
    from pytest_llmops.databricks.cluster import DatabricksCluster
    from pytest_llmops.databricks.command import DatabricksCommand
    from pytest_llmops.databricks.secrets import ClusterEnvironment

CLUSTER = "databricks_cluster"
"""The cluster fixture's name (its session cassette, its progress lines)."""


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
    from pytest_llmops import extras

    extras.require(extras.DATABRICKS_FIXTURES, "databricks.sdk")
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
    from pytest_llmops import resources
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
    from pytest_llmops.databricks import lifecycle

    yield from lifecycle.cluster(request, pytestconfig, databricks_workspace)


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
