"""Own clients are paced too (issue 14.10): in live and record runs, every request to an Azure
OpenAI deployment waits for the shared limiter, whichever client sends it: an app's own
``AzureOpenAI`` (sync, async, on ``httpx``), built from the environment, with no plugin
fixture at all; across xdist workers; and the summary's waiting figure counts them."""

from __future__ import annotations

import re

import pytest

from tests.double import LabDouble
from tests.test_pacing import Arrivals

CALLS = 16
MAX_TOKENS = 300  # + 10 prompt tokens: 310 charged per call, 6 calls in 2,000 tokens

OWN_CLIENTS = f"""
import asyncio
import os

import httpx
import openai
import pytest

pytestmark = pytest.mark.llmops_cassette  # a cassette each (record mode writes it), no plugin client


def client_kwargs():
    return dict(azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"], api_key=os.environ["AZURE_OPENAI_API_KEY"],
                api_version=os.environ["AZURE_OPENAI_API_VERSION"], max_retries=0)  # a 429 would fail the test


def ask(client, n):
    return client.chat.completions.create(
        model="gpt-4o", max_tokens={MAX_TOKENS}, messages=[{{"role": "user", "content": f"Question number {{n}}?"}}])


@pytest.mark.parametrize("n", range({CALLS - 2}))
def test_own_client(n):
    assert ask(openai.AzureOpenAI(**client_kwargs()), n).choices[0].message.content


def test_own_httpx_client():
    client = openai.AzureOpenAI(**client_kwargs(), http_client=httpx.Client())
    assert ask(client, 100).choices[0].message.content


def test_own_async_client():
    async def run():
        return await ask(openai.AsyncAzureOpenAI(**client_kwargs()), 101)
    assert asyncio.run(run()).choices[0].message.content
"""


@pytest.mark.parametrize("mode", ["--llmops-live", "--llmops-record"])
def test_own_clients_on_two_workers_meet_no_429(
    pytester: pytest.Pytester,
    lab_double: LabDouble,
    double_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    lab_double.openai.tokens_per_minute = 2000
    lab_double.openai.rate_limit_window = 2.0  # the logic of a minute, in 2 s (the headers say so)
    arrivals = Arrivals(lab_double, monkeypatch)
    pytester.makepyfile(test_own=OWN_CLIENTS)

    result = pytester.runpytest_subprocess("-n", "2", mode, "-p", "no:cacheprovider")

    result.assert_outcomes(passed=CALLS)
    assert arrivals.statuses == [200] * CALLS  # not one 429, though 16 calls need 3 windows
    assert arrivals.span >= 2 * 2.0 - 0.1  # batches of 6, 6 and 4, a window apart
    [line] = [line for line in result.stdout.lines if line.startswith("gpt-4o at 127.0.0.1:")]
    found = re.search(r": (\d+) requests; waited ([\d.]+) s for the rate limit \((\d+) requests held", line)
    assert found is not None, line
    requests, waited, held = int(found.group(1)), float(found.group(2)), int(found.group(3))
    assert requests == CALLS and held >= 4 and waited >= 1.0, line  # the last batch at least waited
    assert "0 answered 429" in line and "limits: 2000 tokens and 12 requests per 2 s (response headers)" in line
    if mode == "--llmops-record":  # what was recorded replays, the server gone, without waiting
        lab_double.stop()
        for name in double_env:
            monkeypatch.delenv(name)
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://resource.openai.azure.com")
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "placeholder")
        monkeypatch.setenv("AZURE_OPENAI_API_VERSION", double_env["AZURE_OPENAI_API_VERSION"])
        replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        replayed.assert_outcomes(passed=CALLS)
        assert "llmops: rate limit" not in replayed.stdout.str()


SIBLINGS = """
import os

import httpcore2  # noqa: F401  (one copy across in-process runs, see tests/test_faults.py)
import httpx2
import openai

Q = [{"role": "user", "content": "Hello there"}]


def own_client(**options):
    return openai.AzureOpenAI(azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"],
                              api_key=os.environ["AZURE_OPENAI_API_KEY"],
                              api_version=os.environ["AZURE_OPENAI_API_VERSION"], **options)


def test_a_real_429_is_left_to_the_clients_own_retries():
    assert own_client().chat.completions.create(model="gpt-4o", messages=Q).choices[0].message.content


def test_faults_are_served_above_the_pacing(llmops_faults):
    client = llmops_faults.attach(own_client(max_retries=0))
    llmops_faults.next(429, retry_after=5)
    try:
        client.chat.completions.create(model="gpt-4o", messages=Q)
    except openai.RateLimitError:
        pass
    else:
        raise AssertionError("the injected 429 did not reach the code")
    assert client.chat.completions.create(model="gpt-4o", messages=Q).choices[0].message.content


def test_other_traffic_is_not_paced():
    reply = httpx2.get(os.environ["AZURE_OPENAI_ENDPOINT"] + "/api/2.0/clusters/list",
                       headers={"Authorization": "Bearer " + os.environ["DATABRICKS_TOKEN"]})
    assert reply.status_code == 200
"""


def test_own_clients_keep_their_429_handling_and_their_faults(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str]
) -> None:
    lab_double.openai.fail_next(429, retry_after=0.2)  # the service's own 429, on the first request
    pytester.makepyfile(test_siblings=SIBLINGS)

    result = pytester.runpytest("--llmops-live", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)
    sent = lab_double.requests_to("chat/completions")
    assert [r.headers["x-stainless-retry-count"] for r in sent] == ["0", "1", "0"]  # the SDK retried, once
    # 3 requests reached the service (the injected 429 never did, nor the Databricks call) and the
    # limiter saw the real 429: every later request waited for its Retry-After.
    result.stdout.fnmatch_lines(
        [f"gpt-4o at 127.0.0.1:{lab_double.port}: 3 requests; waited * s for the rate limit *; "
         "1 answered 429 (0 sent again); limits: *"]
    )
