"""Azure fixtures: credential, OpenAI deployment and clients, Databricks workspace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import settings as settings_mod
from pytest_llmops.cassettes.fixtures import open_session_cassette

# The domain modules are imported inside the fixtures: plugin load stays cheap.
if TYPE_CHECKING:
    from openai import AsyncAzureOpenAI, AzureOpenAI

    from pytest_llmops.azure.openai import AzureOpenAIDeployment
    from pytest_llmops.azure.workspace import AzureDatabricksWorkspace
    from pytest_llmops.cassettes.recorder import Cassette


@pytest.fixture(scope="session")
def azure_credential(pytestconfig: pytest.Config) -> Any:
    """The ``TokenCredential`` for Entra ID and Azure Resource Manager calls:
    ``DefaultAzureCredential`` in live and record modes, None in replay (cassettes need no
    credential; provisioning replays without one). Override it in a conftest, e.g. to talk
    to a local double (azure-identity refuses an ``http://`` authority)::

        @pytest.fixture(scope="session")
        def azure_credential():
            return MyTokenCredential()  # anything with get_token(*scopes) -> AccessToken

    or name a factory without touching code: ``LLMOPS_AZURE_CREDENTIAL=package.module:factory``
    (e.g. ``azure.identity:AzureCliCredential``).
    """
    if settings_mod.get(pytestconfig).is_replay:
        return None
    factory = os.environ.get("LLMOPS_AZURE_CREDENTIAL", "").strip()
    if factory:
        from pytest_llmops.azure.openai import load_credential_factory

        return load_credential_factory(factory)()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@pytest.fixture(scope="session")
def azure_openai_deployment(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[AzureOpenAIDeployment]:
    """The Azure OpenAI deployment of this session: endpoint, deployment, model,
    api_version, region, and whether it was provisioned.

    Live and record, by default: attached from ``AZURE_OPENAI_ENDPOINT`` (plus
    ``AZURE_OPENAI_API_KEY``, else Entra ID; ``AZURE_OPENAI_DEPLOYMENT``, default ``gpt-4o``;
    ``AZURE_OPENAI_API_VERSION``, default ``2024-05-01-preview``). A missing variable skips
    the test naming it.

    With ``--llmops-provision`` and ``AZURE_SUBSCRIPTION_ID`` plus ``AZURE_RESOURCE_GROUP``:
    provisioned once for the whole run (also under xdist) in ``AZURE_LOCATION`` or a random
    lab region, moving to another region on a quota error, and deleted and purged after
    the last test (also after failures and Ctrl-C) unless ``--llmops-keep-resources``.

    Replay: what the recording did (attach, or the whole provisioning replayed from the
    session cassette without waiting), from
    ``<cassette dir>/_session/azure_openai_deployment.yaml``, with no flag or variable.

    Example::

        def test_joke(azure_openai_client, azure_openai_deployment):
            reply = azure_openai_client.chat.completions.create(
                model=azure_openai_deployment.deployment,
                messages=[{"role": "user", "content": "Tell me a joke about animals."}],
            )

    Run ``pytest --llmops-live --llmops-provision`` to create (and remove) the resource.
    """
    from pytest_llmops.azure import lifecycle
    from pytest_llmops.azure.openai import attach, replayed

    settings = settings_mod.get(pytestconfig)
    cassette: Cassette = open_session_cassette(request, "azure_openai_deployment")
    if cassette.replaying:
        if cassette.metadata.get("provisioned"):
            yield from lifecycle.provisioned_deployment(request, cassette)
        else:
            yield replayed(cassette.metadata)
        return
    if lifecycle.provision_target(settings, "azure_openai_deployment") is not None:
        yield from lifecycle.provisioned_deployment(request, cassette)
        return
    deployment = attach(settings)
    cassette.metadata.update(deployment.metadata())
    yield deployment
    cassette.save()


@pytest.fixture(scope="session")
def azure_databricks_workspace(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[AzureDatabricksWorkspace]:
    """The lab's Azure Databricks workspace: its ``url`` (what ``databricks_workspace``
    connects to), ARM ``resource_id``, region, SKU, and whether it was provisioned.

    Live and record, by default: attached by ``DATABRICKS_HOST`` (``url`` is None without
    it: the Databricks SDK's unified auth, e.g. a profile, then picks the workspace).

    With ``--llmops-provision``, ``AZURE_SUBSCRIPTION_ID`` and ``AZURE_RESOURCE_GROUP``, and
    neither ``DATABRICKS_HOST`` nor ``DATABRICKS_CONFIG_PROFILE`` naming a workspace to reuse:
    a Premium workspace is created once for the run in that resource group, in the region
    of the Azure OpenAI account this run provisioned (request ``azure_openai_deployment``
    first to share it), else ``AZURE_LOCATION``, and deleted after the last
    test unless ``--llmops-keep-resources``. A new workspace has no token: authenticate with
    Entra ID (``resource_id`` is the SDK's ``azure_workspace_resource_id``).

    Replay: what the recording did, from ``<cassette dir>/_session/azure_databricks_workspace.yaml``,
    with the placeholder host ``https://adb-0000000000000000.0.azuredatabricks.net``.

    Example::

        def test_workspace_region(azure_openai_deployment, azure_databricks_workspace):
            if azure_databricks_workspace.provisioned:
                assert azure_databricks_workspace.region == azure_openai_deployment.region
    """
    from pytest_llmops.azure import lifecycle
    from pytest_llmops.azure.workspace import AzureDatabricksWorkspace
    from pytest_llmops.azure.workspace import attach as attach_workspace

    settings = settings_mod.get(pytestconfig)
    cassette: Cassette = open_session_cassette(request, "azure_databricks_workspace")
    if cassette.replaying:
        if cassette.metadata.get("provisioned"):
            yield from lifecycle.provisioned_workspace(request, cassette)
        else:
            yield AzureDatabricksWorkspace.from_metadata(cassette.metadata)
        return
    if lifecycle.provision_target(settings, "azure_databricks_workspace") is not None:
        yield from lifecycle.provisioned_workspace(request, cassette)
        return
    workspace = attach_workspace()
    cassette.metadata.update(workspace.metadata())
    yield workspace
    cassette.save()


@pytest.fixture(scope="session")
def _llmops_openai_clients() -> Iterator[dict[Any, Any]]:
    """Clients built once per session: building one costs ~20 ms (its SSL context)."""
    clients: dict[Any, Any] = {}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def azure_openai_client(
    llmops_cassette: Cassette,
    azure_openai_deployment: AzureOpenAIDeployment,
    azure_credential: Any,
    _llmops_openai_clients: dict[Any, Any],
    pytestconfig: pytest.Config,
) -> AzureOpenAI:
    """An ``openai.AzureOpenAI`` client bound to ``azure_openai_deployment``; its traffic
    goes through this test's cassette. Built once per session and shared. Live and record
    runs pace it to the deployment's rate limit (all xdist workers together); ``llmops_faults``
    reaches it in every mode."""
    client = _llmops_openai_clients.get(azure_openai_deployment)
    if client is None:
        from openai import AzureOpenAI

        from pytest_llmops.azure.openai import client_kwargs
        from pytest_llmops.traffic.clients import instrument

        client = AzureOpenAI(**client_kwargs(azure_openai_deployment, azure_credential))
        instrument(client, pytestconfig, azure_openai_deployment)
        _llmops_openai_clients[azure_openai_deployment] = client
    return client


@pytest.fixture
def azure_openai_async_client(
    llmops_cassette: Cassette,
    azure_openai_deployment: AzureOpenAIDeployment,
    azure_credential: Any,
    pytestconfig: pytest.Config,
) -> AsyncAzureOpenAI:
    """An ``openai.AsyncAzureOpenAI`` client bound to ``azure_openai_deployment``, one per
    test (an async client belongs to one event loop). Use it from async tests run by
    anyio's pytest plugin (``@pytest.mark.anyio``, installed with openai) or pytest-asyncio.
    Paced and open to ``llmops_faults`` like ``azure_openai_client``."""
    from openai import AsyncAzureOpenAI

    from pytest_llmops.azure.openai import client_kwargs
    from pytest_llmops.traffic.clients import instrument

    client = AsyncAzureOpenAI(**client_kwargs(azure_openai_deployment, azure_credential))
    return instrument(client, pytestconfig, azure_openai_deployment)
