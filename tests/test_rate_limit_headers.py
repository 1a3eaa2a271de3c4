"""Rate-limit headers follow the deployment (issue 13.3, 13.6), and pacing takes them as the
truth: ``x-ratelimit-limit-tokens`` is the deployment's tokens per minute, ``-requests`` its
requests per minute, with ``x-ratelimit-remaining-*``, ``x-ratelimit-reset-*``, the renewal
period, ``apim-request-id``, ``x-ms-region`` and ``azureml-model-session`` as real Azure
answers carry them (``shared/realworld``)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from pytest_llmops.traffic.ledger import Limits
from pytest_llmops.traffic.limiter import Limiter
from pytest_llmops.traffic.options import Options
from tests import test_azure_support as support
from tests.double import LabDouble
from tests.test_azure_support import CHAT, CONFTEST

arm_double = support.arm_double
azure_env = support.azure_env

QUESTION: list[Any] = [{"role": "user", "content": "Tell me a joke about animals."}]
RATE_LIMIT_HEADER = re.compile(r"x-ratelimit-(limit|remaining|reset|renewalperiod)-(tokens|requests)$")


@pytest.fixture
def double() -> Any:
    with LabDouble() as lab:
        yield lab
        assert lab.handler_errors == []


def ask(double: LabDouble, deployment: str) -> Any:
    client = openai.AzureOpenAI(
        azure_endpoint=double.url, api_key=double.openai.api_key, api_version="2024-05-01-preview", max_retries=0
    )
    return client.chat.completions.with_raw_response.create(model=deployment, messages=QUESTION, max_tokens=50)


def real_headers(shared_dir: Path) -> dict[str, str]:
    """The headers of a real Azure OpenAI answer that carries them all (dd-trace-py's)."""
    path = shared_dir / "realworld" / "dd-trace-py" / "completion_azure_stream.yaml"
    response = yaml.safe_load(path.read_text())["interactions"][0]["response"]
    return {name.lower(): values[0] for name, values in response["headers"].items()}


def test_the_double_sends_the_headers_real_azure_sends(double: LabDouble, shared_dir: Path) -> None:
    double.openai.add_deployment("lab", "gpt-4o-2024-11-20", capacity=10, location="swedencentral")
    real = real_headers(shared_dir)
    wanted = {name for name in real if RATE_LIMIT_HEADER.match(name)}
    wanted |= {"apim-request-id", "x-ms-region", "azureml-model-session", "x-ms-deployment-name"}

    sent = {name.lower(): value for name, value in ask(double, "lab").headers.items()}

    assert wanted <= set(sent), sorted(wanted - set(sent))
    for name in wanted:  # the same shape: digits, a uuid, a region name, a model session id
        if RATE_LIMIT_HEADER.match(name):
            assert sent[name].isdigit() and real[name].isdigit(), name
    uuid.UUID(sent["apim-request-id"])
    assert re.fullmatch(r"d\d{3}-\d{14}", sent["azureml-model-session"])
    assert re.fullmatch(r"d\d{3}-\d{14}|d\d{14}-[0-9a-f]{8}", real["azureml-model-session"])
    assert sent["x-ms-region"] == "Sweden Central" and real["x-ms-region"] == "East US 2"


def test_the_limits_are_the_deployments(double: LabDouble) -> None:
    double.openai.add_deployment("lab", "gpt-4o-2024-11-20", capacity=10)  # the lab's 10K TPM deployment
    double.openai.add_deployment("big", "gpt-4o-2024-11-20", capacity=250)

    lab, big = ask(double, "lab").headers, ask(double, "big").headers
    second = ask(double, "lab").headers

    assert (lab["x-ratelimit-limit-tokens"], lab["x-ratelimit-limit-requests"]) == ("10000", "60")
    assert (big["x-ratelimit-limit-tokens"], big["x-ratelimit-limit-requests"]) == ("250000", "1500")
    charged = 10_000 - int(lab["x-ratelimit-remaining-tokens"])
    assert charged > 50 and lab["x-ratelimit-remaining-requests"] == "59"  # the prompt + max_tokens
    assert int(second["x-ratelimit-remaining-tokens"]) == 10_000 - 2 * charged  # each deployment its own
    assert second["x-ratelimit-remaining-requests"] == "58" and big["x-ratelimit-remaining-requests"] == "1499"
    assert lab["x-ratelimit-renewalperiod-tokens"] == lab["x-ratelimit-renewalperiod-requests"] == "60"
    assert lab["x-ratelimit-reset-tokens"] == lab["x-ratelimit-reset-requests"] == "0"  # room left


def test_a_newer_models_ratio_and_the_limit_enforced(double: LabDouble) -> None:
    double.openai.requests_per_1000_tokens = 1  # e.g. gpt-4.1-mini: 1 request per 1,000 tokens per minute
    double.openai.add_deployment("newer", "gpt-4.1-mini-2025-04-14", capacity=2)

    first = ask(double, "newer").headers
    ask(double, "newer")
    with pytest.raises(openai.RateLimitError) as refused:
        ask(double, "newer")

    assert (first["x-ratelimit-limit-tokens"], first["x-ratelimit-limit-requests"]) == ("2000", "2")
    headers = refused.value.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert int(headers["x-ratelimit-reset-requests"]) >= 1 and int(headers["retry-after"]) >= 1


def test_a_provisioned_10k_deployment_records_its_own_limits(
    pytester: pytest.Pytester, arm_double: LabDouble, azure_env: dict[str, str]
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=CHAT)

    result = pytester.runpytest("--llmops-record", "--llmops-provision")

    result.assert_outcomes(passed=1)
    cassette = yaml.safe_load((pytester.path / "cassettes" / "test_lab" / "test_chat.yaml").read_text())
    headers = {k.lower(): v[0] for k, v in cassette["interactions"][-1]["response"]["headers"].items()}
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-limit-requests"]) == ("10000", "60")
    assert headers["x-ratelimit-renewalperiod-tokens"] == "60"
    region = yaml.safe_load((pytester.path / "cassettes" / "_session" / "azure_openai_deployment.yaml")
                           .read_text())["metadata"]["region"]
    names = {"eastus2": "East US 2", "northcentralus": "North Central US", "swedencentral": "Sweden Central",
             "switzerlandwest": "Switzerland West"}
    assert headers["x-ms-region"] == names[region]
    result.stdout.fnmatch_lines(["*limits: 10000 tokens and 60 requests per 60 s (response headers)"])


# -- the limiter: the headers are the truth, the capacity only a start ---------------------------------


def test_before_any_answer_capacity_grants_one_request_per_1000_tokens(tmp_path: Path) -> None:
    limiter = Limiter(tmp_path / "pacing-x.json", "gpt-4o", "h:443", Options(), capacity=10)

    assert limiter.limits(limiter.snapshot()) == Limits(10_000, 10, 60.0, "deployment capacity")


@pytest.mark.parametrize(
    ("tokens", "requests"),
    [("10000", "60"), ("250000", "250"), ("8000", "8")],  # gpt-4o; gpt-4.1-mini; an 8K deployment (realworld)
)
def test_the_headers_replace_what_capacity_suggested(tmp_path: Path, tokens: str, requests: str) -> None:
    limiter = Limiter(tmp_path / "pacing-x.json", "gpt-4o", "h:443", Options(), capacity=10)
    reservation, _ = limiter.try_acquire(100, 0.0)
    assert reservation is not None

    limiter.settle(reservation, 200, {"x-ratelimit-limit-tokens": tokens, "x-ratelimit-limit-requests": requests,
                                      "x-ratelimit-renewalperiod-requests": "60"})

    limits = limiter.limits(limiter.snapshot())
    assert limits == Limits(int(tokens), int(requests), 60.0, "response headers")
