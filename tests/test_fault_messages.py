"""``llmops_faults`` names the right cause when scheduled faults were not served, or a served
one never reached the test's code (issue 14.8): a client that gave up with its
``max_retries`` spent is attached (it is not "not attached"); a client that really is not
attached is named in a failing test's report too; and their siblings (no request made, no
request matching ``match=``, an error the SDK's retries absorbed)."""

from __future__ import annotations

import itertools
import re

import pytest

from tests.double import LabDouble

SUITE = """
# One copy of httpcore2 across in-process runs (see tests/test_faults.py).
import httpcore2  # noqa: F401
import openai
import pytest

Q = [{"role": "user", "content": "Tell me a joke about animals."}]


def ask(client, deployment):
    return client.chat.completions.create(model=deployment.deployment, messages=Q)


def test_gave_up(azure_openai_client, azure_openai_deployment, llmops_faults):
    llmops_faults.next(500, count=5)  # the SDK makes 3 attempts (max_retries=2), then raises
    with pytest.raises(openai.InternalServerError):
        ask(azure_openai_client, azure_openai_deployment)


def test_gave_up_without_retries(azure_openai_deployment, llmops_faults):
    client = llmops_faults.attach(openai.AzureOpenAI(
        azure_endpoint=azure_openai_deployment.endpoint, api_key=azure_openai_deployment.api_key,
        api_version=azure_openai_deployment.api_version, max_retries=0))
    llmops_faults.next(429, count=2, retry_after=0.01)
    with pytest.raises(openai.RateLimitError):
        ask(client, azure_openai_deployment)


def test_not_attached_and_failing(azure_openai_deployment, llmops_faults, llmops_cassette):
    client = openai.AzureOpenAI(
        azure_endpoint=azure_openai_deployment.endpoint, api_key=azure_openai_deployment.api_key,
        api_version=azure_openai_deployment.api_version, max_retries=0)
    llmops_faults.next(429)
    with pytest.raises(openai.RateLimitError):
        ask(client, azure_openai_deployment)


def test_no_request(azure_openai_client, llmops_faults):
    llmops_faults.next(503)


def test_no_match(azure_openai_client, azure_openai_deployment, llmops_faults):
    llmops_faults.next(503, match="deployments/gpt-4o-mini/")
    ask(azure_openai_client, azure_openai_deployment)


def test_absorbed_by_a_retry(azure_openai_client, azure_openai_deployment, llmops_faults):
    llmops_faults.next(500)  # one fault: the SDK's first retry gets the real answer
    with pytest.raises(openai.InternalServerError):
        ask(azure_openai_client, azure_openai_deployment)
"""


HEADER = re.compile(r"^_{3,} (?:ERROR at \w+ of )?(test_\w+) _{3,}$|^=+ short test summary", re.M)


def section(run: pytest.RunResult, test: str) -> str:
    """What the report says about one test: its failure, or its error at teardown."""
    text = run.stdout.str()
    headers = list(HEADER.finditer(text))
    for header, following in itertools.pairwise(headers):
        if header.group(1) == test:
            return text[header.start() : following.start()]
    raise AssertionError(f"no report block for {test}:\n{text}")


def test_each_cause_is_named(pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str]) -> None:
    pytester.makepyfile(test_user=SUITE)

    run = pytester.runpytest("--llmops-live", "-p", "no:cacheprovider")

    run.assert_outcomes(passed=4, failed=2, errors=4)
    # A client that gave up, its max_retries spent, is attached: the cause is named.
    said = section(run, "test_gave_up")
    assert "2 scheduled faults (500) never served: 3 faults served" in said
    assert "the last call's 3 attempts all met one, then the client gave up" in said
    assert "max_retries (2) was spent" in said and "Schedule count=3 (max_retries + 1)" in said
    assert "not attached" not in said.replace("(the client is attached)", "")
    said = section(run, "test_gave_up_without_retries")
    assert "1 scheduled fault (429) never served: 1 fault served; the last call's 1 attempt all met one" in said
    assert "max_retries (0) was spent" in said and "Schedule count=1" in said
    # A client that really is not attached, in a failing test: the report says so.
    said = section(run, "test_not_attached_and_failing")
    assert "DID NOT RAISE" in said
    assert "1 scheduled fault (429) never served: no client is attached" in said
    assert "llmops_faults.attach(your_client)" in said
    # Siblings: an attached client that sent nothing; requests not matching match=; a fault
    # the SDK's retry absorbed (the test fails, the report says why).
    said = section(run, "test_no_request")
    assert "1 scheduled fault (503) never served: no request reached an attached client" in said
    said = section(run, "test_no_match")
    assert "0 faults served; 1 request reached attached clients without matching" in said
    assert "match='deployments/gpt-4o-mini/'" in said and "/openai/deployments/gpt-4o/chat/completions" in said
    said = section(run, "test_absorbed_by_a_retry")
    assert "DID NOT RAISE" in said
    assert "the injected 500 never reached the test's code: the openai SDK retried it" in said
    assert "client.with_options(max_retries=0)" in said
