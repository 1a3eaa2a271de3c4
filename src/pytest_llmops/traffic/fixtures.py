"""The fixture of the traffic concern: ``llmops_faults``. The fault machinery is imported
when the fixture is first used, so plugin load stays cheap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_llmops.cassettes.fixtures import test_passed

if TYPE_CHECKING:
    from pytest_llmops.traffic.faults import Faults

faults_key = pytest.StashKey["Faults"]()
PLUGIN_CLIENTS = frozenset({"azure_openai_client", "azure_openai_async_client"})
"""The plugin's clients: they always see the scheduled faults."""


@pytest.fixture
def llmops_faults(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Iterator[Faults]:
    """Make the next calls of Azure OpenAI clients fail as the real service fails, without
    the network and without anything reaching a cassette (every mode).

    The plugin's clients always see the scheduled faults; attach your own with
    ``llmops_faults.attach(client)``. Faults still scheduled when a passing test ends fail
    it at teardown, naming the cause (no client attached, no request made, none matching
    ``match=``, or a client that gave up with its ``max_retries`` spent); a failing test's
    report says the same, or that the SDK's retries absorbed an injected fault.

    Example::

        def test_answer_survives_throttling(azure_openai_client, llmops_faults):
            llmops_faults.next(429, retry_after=0.05)  # the SDK retries after retry-after-ms
            assert my_app.answer(azure_openai_client, "Hello?")

        def test_app_reports_the_filter(llmops_faults):
            client = llmops_faults.attach(openai.AzureOpenAI(..., max_retries=0))
            llmops_faults.next("content_filter")
            with pytest.raises(openai.BadRequestError) as error:
                client.chat.completions.create(...)
            assert error.value.code == "content_filter"

        def test_partial_stream(azure_openai_client, llmops_faults):
            llmops_faults.next("cut_stream", after_chunks=3)
            with pytest.raises(openai.APIConnectionError):
                for chunk in azure_openai_client.chat.completions.create(..., stream=True):
                    ...
    """
    from pytest_llmops.traffic.faults.diagnosis import unserved
    from pytest_llmops.traffic.faults.hub import hub
    from pytest_llmops.traffic.faults.schedule import Faults

    faults_hub = hub(pytestconfig)
    faults = Faults(faults_hub)
    faults_hub.active = faults
    request.node.stash[faults_key] = faults
    try:
        yield faults
    finally:
        faults_hub.active = None
        faults.detach_all()
    if faults.pending and test_passed(request.node):
        pytest.fail(unserved(faults, _uses_a_plugin_client(request.node)), pytrace=False)


def _uses_a_plugin_client(item: pytest.Item) -> bool:
    return not PLUGIN_CLIENTS.isdisjoint(getattr(item, "fixturenames", ()))


def failure_note(item: pytest.Item) -> str | None:
    """For a test that failed while it had ``llmops_faults``: what the faults did that the
    failure may come from (faults never served, or one the SDK's retries absorbed)."""
    faults = item.stash.get(faults_key, None)
    if faults is None:
        return None
    from pytest_llmops.traffic.faults.diagnosis import absorbed, unserved

    if faults.pending:
        return unserved(faults, _uses_a_plugin_client(item))
    return absorbed(faults)
