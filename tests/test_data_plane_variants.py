"""Data-plane variants real Azure OpenAI sends (issue 13.3): a choice the content filter cut
with no ``message`` key (or ``message: {"role": "assistant"}`` only), a stream chunk with no
``delta``, and the two 429 bodies (``RateLimitReached`` and the older ``"429"``).

Each comes from the lab double over real HTTP and from ``llmops_faults``, and the openai SDK
(sync, async, streaming) must see the same; through the plugin they record and replay
byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_llmops.traffic.faults import Faults
from tests.double import LabDouble
from tests.test_faults import FLAVOURS, call, facts, make_client, raised

SHAPES = ["no_message", "role_only", "partial"]


@pytest.fixture
def double() -> Any:
    with LabDouble() as lab:
        yield lab
        assert lab.handler_errors == []


def choice_keys(reply: Any) -> set[str]:
    """The keys the service sent in a completion's first choice (not the SDK's defaults)."""
    return set(reply.choices[0].model_fields_set) | set(reply.choices[0].model_extra or {})


def last_choice(chunks: list[Any]) -> Any:
    return [chunk for chunk in chunks if chunk.choices][-1].choices[0]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("shape", SHAPES)
def test_filtered_choices_from_the_double_and_from_faults_look_alike(
    double: LabDouble, llmops_faults: Faults, flavour: str, shape: str
) -> None:
    def client() -> Any:  # an async client belongs to the event loop of one call
        return llmops_faults.attach(make_client(flavour, double.url, double.openai.api_key))

    double.openai.fail_next("content_filter", where="completion", shape=shape, count=2)
    real_reply, real_chunks = call(client()), call(client(), stream=True)
    llmops_faults.next("content_filter", where="completion", shape=shape, count=2)
    injected_reply, injected_chunks = call(client()), call(client(), stream=True)

    for reply, chunks in ((real_reply, real_chunks), (injected_reply, injected_chunks)):
        choice, last = reply.choices[0], last_choice(chunks)
        assert choice.finish_reason == last.finish_reason == "content_filter"
        assert choice.model_extra["content_filter_results"]["violence"] == {"filtered": True, "severity": "high"}
        if shape == "no_message":
            assert "message" not in choice_keys(reply) and choice.message is None
            assert "delta" not in last.model_fields_set and last.delta is None
        elif shape == "role_only":
            assert choice.message.role == "assistant" and choice.message.content is None
            assert last.delta is not None and last.delta.content is None
        else:
            assert choice.message.content and last.delta is not None
    assert choice_keys(injected_reply) == choice_keys(real_reply)
    assert [f.kind for f in llmops_faults.injected] == ["content_filter"] * 2
    assert len(double.requests_to("chat/completions")) == 2


def test_the_double_charges_a_filtered_answer_and_sends_half_of_it(double: LabDouble) -> None:
    client = make_client("httpx2", double.url, double.openai.api_key)
    whole = call(client).choices[0].message.content
    double.openai.fail_next("content_filter", where="completion", shape="partial")

    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Tell me a joke about animals."}]
    )

    body = json.loads(reply.http_response.content)
    cut = body["choices"][0]["message"]["content"]
    assert cut and whole.startswith(cut) and len(cut) < len(whole)
    assert body["usage"]["completion_tokens"] > 0
    assert int(reply.headers["x-ratelimit-remaining-tokens"]) < int(reply.headers["x-ratelimit-limit-tokens"])


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("code", ["RateLimitReached", "429"])
def test_both_429_bodies_from_the_double_and_from_faults(
    double: LabDouble, llmops_faults: Faults, flavour: str, code: str
) -> None:
    def client() -> Any:  # an async client belongs to the event loop of one call
        return llmops_faults.attach(make_client(flavour, double.url, double.openai.api_key))

    double.openai.fail_next(429, retry_after=2, code=code)
    real = raised(lambda: call(client()))
    llmops_faults.next(429, retry_after=2, code=code)
    injected = raised(lambda: call(client()))

    assert facts(injected) == facts(real)
    assert facts(injected)["code"] == code
    assert "retry after 2 seconds" in str(injected)


def test_the_double_can_say_429_in_the_older_form_for_its_own_limit(double: LabDouble) -> None:
    double.openai.tokens_per_minute = 10
    double.openai.rate_limit_code = "429"
    client = make_client("httpx2", double.url, double.openai.api_key)

    error = raised(lambda: call(client))

    assert getattr(error, "code", None) == "429"
    assert "Requests to the ChatCompletions_Create Operation" in str(error)


def test_wrong_shapes_and_codes_say_what_to_pass(llmops_faults: Faults) -> None:
    with pytest.raises(ValueError, match=r"shape='none'.*no_message, role_only, partial"):
        llmops_faults.next("content_filter", where="completion", shape="none")
    with pytest.raises(ValueError, match=r"code='RateLimitExceeded'.*RateLimitReached, 429"):
        llmops_faults.next(429, code="RateLimitExceeded")


# -- through the plugin: recorded and replayed unchanged, sync, async and streamed ------------------

FILTERED_USER = """
import httpcore2  # noqa: F401  (one copy across in-process runs, see tests/test_faults.py)
import pytest

Q = [{"role": "user", "content": "Tell me a joke about animals."}]


def reply_text(reply):
    choice = reply.choices[0]
    return None if choice.message is None else choice.message.content


def test_sync(azure_openai_client, azure_openai_deployment):
    reply = azure_openai_client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    assert reply.choices[0].finish_reason == "content_filter" and reply_text(reply) is None


@pytest.mark.anyio
async def test_async(azure_openai_async_client, azure_openai_deployment):
    reply = await azure_openai_async_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=Q)
    assert reply.choices[0].finish_reason == "content_filter" and reply_text(reply) is None


def test_streamed(azure_openai_client, azure_openai_deployment):
    stream = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=Q, stream=True)
    choices = [chunk.choices[0] for chunk in stream if chunk.choices]
    assert choices[-1].finish_reason == "content_filter" and choices[-1].delta is None
    assert "".join(c.delta.content or "" for c in choices[:-1])  # what came before the cut


def test_injected_in_every_mode(azure_openai_client, azure_openai_deployment, llmops_faults):
    llmops_faults.next("content_filter", where="completion", count=2).next(429, code="429", retry_after=0.01)
    reply = azure_openai_client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    assert reply.choices[0].message is None
    chunks = list(azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=Q, stream=True))
    assert chunks[-1].choices[0].delta is None
    retried = azure_openai_client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    assert retried.choices[0].message.content  # the SDK retried the injected 429 itself
"""


def answers(path: Path) -> str:
    """The response bodies a cassette holds, as the service sent them."""
    return "\n".join(i["response"]["body"]["string"] for i in yaml.safe_load(path.read_text())["interactions"])


def test_filtered_answers_record_and_replay_unchanged(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n")
    pytester.makepyfile(test_filtered=FILTERED_USER)
    lab_double.openai.fail_next("content_filter", where="completion", shape="no_message", count=3)

    pytester.runpytest("--llmops-record").assert_outcomes(passed=4)

    folder = pytester.path / "cassettes" / "test_filtered"
    cut = '"finish_reason":"content_filter","index":0,"logprobs":null}'  # nothing after: no message, no delta
    assert cut in answers(folder / "test_sync.yaml") and cut in answers(folder / "test_async.yaml")
    assert cut in answers(folder / "test_streamed.yaml")
    injected = answers(folder / "test_injected_in_every_mode.yaml")
    assert '"finish_reason":"content_filter"' not in injected and "rate limit" not in injected  # faults stay off
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)

    pytester.runpytest().assert_outcomes(passed=4)
