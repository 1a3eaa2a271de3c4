"""One request, one reservation, whichever path it takes to the deployment: the plugin's
client (paced at its transport), an app's own client (paced through the patched
``Client._transport_for_url``) and MLflow's judges (paced through ``llmops_judge``'s
stand-in for ``requests``, two at once under ``mlflow.genai.evaluate``), in record and live
sessions run one after the other in one process, as in-process pytester runs do (each run
loads the plugin's lazily imported modules again, while the classes it patched stay patched).
The pacing summary counts exactly the requests the service received, and, the limits
nowhere near, nothing was held."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx2

# One copy of MLflow's judges and evaluate for the whole session (see tests/test_evaluation.py).
import mlflow.genai.evaluation.base
import mlflow.genai.judges.adapters.gateway_adapter
import mlflow.genai.scorers  # noqa: F401
import pytest

from pytest_llmops.traffic.options import Options
from pytest_llmops.traffic.paced_transport import PacedTransport
from pytest_llmops.traffic.pacer import Pacer
from tests.double import LabDouble

PROJECT = """
import os

import mlflow
import openai
import pytest
from mlflow.genai.scorers import Guidelines, Safety

Q = [{"role": "user", "content": "Tell me a joke about animals."}]


@pytest.mark.llmops
def test_plugin_client_then_judges(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_traces):
    azure_openai_client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    about = Guidelines(name="about_animals", guidelines="The response is about animals.", model=llmops_judge)
    result = mlflow.genai.evaluate(data=llmops_traces(), scorers=[about, Safety(model=llmops_judge)])
    assert result.metrics == {"about_animals/mean": 1.0, "safety/mean": 1.0}


@pytest.mark.llmops
def test_own_client():
    client = openai.AzureOpenAI(azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"],
                                api_key=os.environ["AZURE_OPENAI_API_KEY"],
                                api_version=os.environ["AZURE_OPENAI_API_VERSION"])
    assert client.chat.completions.create(model="gpt-4o", messages=Q).choices[0].message.content


@pytest.mark.llmops
def test_plugin_client_again(azure_openai_client, azure_openai_deployment):
    azure_openai_client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
"""

SUMMARY = re.compile(r"^gpt-4o at 127\.0\.0\.1:\d+: (\d+) requests; waited ([\d.]+) s for the rate limit \((\d+) requests held")


def test_every_path_meets_the_limiter_once(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str]
) -> None:
    pytester.makepyfile(test_paths=PROJECT)
    for mode in ("--llmops-record", "--llmops-live"):
        before = len(lab_double.requests_to(r"/chat/completions$"))
        result = pytester.runpytest(mode, "-p", "no:cacheprovider")
        result.assert_outcomes(passed=3)
        sent = len(lab_double.requests_to(r"/chat/completions$")) - before
        assert sent == 5  # two answers of the plugin's client, one of an own client, two judges
        [found] = [m for m in map(SUMMARY.match, result.stdout.lines) if m]
        assert (int(found.group(1)), found.group(2), int(found.group(3))) == (sent, "0.0", 0), found.string


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_request_crossing_two_paced_transports_is_reserved_once(tmp_path: Path, asynchronous: bool) -> None:
    """Two paced layers over one client (here from two pacers on one run folder, as two copies
    of the plugin's modules make them): the request takes one place in the limiter, and the
    layer beneath does not wait for the reservation of the one above (limits unknown yet:
    one request at a time, which held it until that reservation expired)."""
    answer = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5}}

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=answer, headers={"x-ratelimit-limit-tokens": "10000"})

    above, beneath = Pacer(tmp_path, Options(window=1.0)), Pacer(tmp_path, Options(window=1.0))
    url, body = "http://h/openai/deployments/gpt-4o/chat/completions", {"messages": [], "max_tokens": 10}
    if asynchronous:
        inner: Any = PacedTransport(httpx2.MockTransport(handler), beneath)
        transport = PacedTransport(inner, above, retry_429=False, azure_only=True)

        async def send() -> None:
            async with httpx2.AsyncClient(transport=transport) as client:
                (await client.post(url, json=body)).raise_for_status()

        asyncio.run(send())
    else:
        inner = PacedTransport(httpx2.MockTransport(handler), beneath)
        client = httpx2.Client(transport=PacedTransport(inner, above, retry_429=False, azure_only=True))
        client.post(url, json=body).raise_for_status()
        client.post(url, json=body).raise_for_status()  # the same layers, a second request: paced again

    stats = above.limiter("h:80", "gpt-4o").snapshot()["stats"]
    assert (stats["requests"], stats["held"]) == (1 if asynchronous else 2, 0)
