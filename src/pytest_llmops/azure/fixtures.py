"""Azure fixtures: credential, OpenAI deployment and clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import settings as settings_mod
from pytest_llmops.azure.openai import AzureOpenAIDeployment, attach, client_kwargs, replayed
from pytest_llmops.cassettes.fixtures import open_session_cassette

if TYPE_CHECKING:
    from openai import AsyncAzureOpenAI, AzureOpenAI

    from pytest_llmops.cassettes.recorder import Cassette


@pytest.fixture(scope="session")
def azure_credential(pytestconfig: pytest.Config) -> Any:
    """The ``TokenCredential`` for Entra ID and Azure Resource Manager calls:
    ``DefaultAzureCredential`` in live and record modes, None in replay (cassettes need no
    credential). Override it in a conftest, e.g. to talk to a local double."""
    if settings_mod.get(pytestconfig).is_replay:
        return None
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@pytest.fixture(scope="session")
def azure_openai_deployment(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[AzureOpenAIDeployment]:
    """The Azure OpenAI deployment of this session: endpoint, deployment, model,
    api_version, region, and whether it was provisioned.

    Live and record: attached from ``AZURE_OPENAI_ENDPOINT`` (plus ``AZURE_OPENAI_API_KEY``,
    else Entra ID; ``AZURE_OPENAI_DEPLOYMENT``, default ``gpt-4o``;
    ``AZURE_OPENAI_API_VERSION``, default ``2024-05-01-preview``). A missing variable skips
    the test naming it. Replay: what the recording used, from
    ``<cassette dir>/_session/azure_openai_deployment.yaml``, with no variable at all.

    Example::

        def test_joke(azure_openai_client, azure_openai_deployment):
            reply = azure_openai_client.chat.completions.create(
                model=azure_openai_deployment.deployment,
                messages=[{"role": "user", "content": "Tell me a joke about animals."}],
            )
    """
    settings = settings_mod.get(pytestconfig)
    cassette: Cassette = open_session_cassette(request, "azure_openai_deployment")
    if settings.is_replay:
        yield replayed(cassette.metadata)
        return
    deployment = attach(settings)
    cassette.metadata.update(deployment.metadata())
    yield deployment
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
) -> AzureOpenAI:
    """An ``openai.AzureOpenAI`` client bound to ``azure_openai_deployment``; its traffic
    goes through this test's cassette. Built once per session and shared."""
    client = _llmops_openai_clients.get(azure_openai_deployment)
    if client is None:
        from openai import AzureOpenAI

        client = AzureOpenAI(**client_kwargs(azure_openai_deployment, azure_credential))
        _llmops_openai_clients[azure_openai_deployment] = client
    return client


@pytest.fixture
def azure_openai_async_client(
    llmops_cassette: Cassette, azure_openai_deployment: AzureOpenAIDeployment, azure_credential: Any
) -> AsyncAzureOpenAI:
    """An ``openai.AsyncAzureOpenAI`` client bound to ``azure_openai_deployment``, one per
    test (an async client belongs to one event loop). Use it from async tests run by
    anyio's pytest plugin (``@pytest.mark.anyio``, installed with openai) or pytest-asyncio."""
    from openai import AsyncAzureOpenAI

    return AsyncAzureOpenAI(**client_kwargs(azure_openai_deployment, azure_credential))
