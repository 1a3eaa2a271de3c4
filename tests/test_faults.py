"""Fault injection: each injected fault reaches user code exactly as the real fault does.

The reference is the lab double serving the real fault over real HTTP (``fail_next``,
``cut_next_stream``, a slow answer, a closed port); the same client then meets the injected
fault, and the exception the openai SDK raises must match: type, status, code, body,
headers, cause. Every client flavour: the SDK's own ``httpx2`` client and ``httpx``
(``http_client=httpx.Client()``, through respx), sync and async.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

# In-process pytester runs drop modules their inner session imported. httpx2 imports
# httpcore2 lazily and caches its exception map: once a dropped httpcore2 is re-imported, real
# transport errors surface as raw httpcore2 ones. Importing it at collection keeps one copy.
import httpcore2  # noqa: F401
import httpx
import openai
import pytest

from pytest_llmops.traffic.faults import Faults
from tests.conftest import SECRET_API_KEY, all_bytes
from tests.double import LabDouble

API_VERSION = "2024-05-01-preview"
QUESTION: list[Any] = [{"role": "user", "content": "Tell me a joke about animals."}]
FLAVOURS = ["httpx2", "httpx", "httpx2-async", "httpx-async"]


@pytest.fixture
def double() -> Iterator[LabDouble]:
    with LabDouble() as lab:
        yield lab
        assert lab.handler_errors == []


def make_client(flavour: str, url: str, api_key: str, **options: Any) -> Any:
    """An AzureOpenAI client of one flavour, without retries (the first error surfaces)."""
    kwargs: dict[str, Any] = {"azure_endpoint": url, "api_key": api_key, "api_version": API_VERSION}
    kwargs.update({"max_retries": 0, **options})
    if flavour.endswith("async"):
        if flavour.startswith("httpx-"):
            kwargs["http_client"] = httpx.AsyncClient()
        return openai.AsyncAzureOpenAI(**kwargs)
    if flavour == "httpx":
        kwargs["http_client"] = httpx.Client()
    return openai.AzureOpenAI(**kwargs)


def call(client: Any, **options: Any) -> Any:
    """A chat completion; streams are read to the end; async clients run on a fresh loop."""
    if isinstance(client, openai.AsyncAzureOpenAI):

        async def run() -> Any:
            reply = await client.chat.completions.create(model="gpt-4o", messages=QUESTION, **options)
            if options.get("stream"):
                chunks: list[Any] = []
                try:
                    async for chunk in reply:
                        chunks.append(chunk)
                except Exception as error:
                    error.chunks = chunks  # type: ignore[attr-defined]
                    raise
                return chunks
            return reply

        return asyncio.run(run())
    reply = client.chat.completions.create(model="gpt-4o", messages=QUESTION, **options)
    if not options.get("stream"):
        return reply
    chunks = []
    try:
        for chunk in reply:
            chunks.append(chunk)
    except Exception as error:
        error.chunks = chunks  # type: ignore[attr-defined]
        raise
    return chunks


def raised(action: Callable[[], Any]) -> BaseException:
    with pytest.raises(openai.APIError) as info:
        action()
    return info.value


def facts(error: BaseException) -> dict[str, Any]:
    """What user code can see of an openai error (ids that differ per answer left out)."""
    seen: dict[str, Any] = {
        "type": type(error),
        "message": str(error),
        "cause": type(error.__cause__).__name__ if error.__cause__ else None,
        "cause module": type(error.__cause__).__module__ if error.__cause__ else None,
        "cause message": str(error.__cause__) if error.__cause__ else None,
        "chunks": len(getattr(error, "chunks", [])),
    }
    if isinstance(error, openai.APIStatusError):
        headers = error.response.headers
        seen.update(
            {
                "status": error.status_code,
                "code": error.code,
                "param": error.param,
                "error type": error.type,
                "body": error.body,
                "headers": {
                    name: headers.get(name)
                    for name in ("content-type", "retry-after", "retry-after-ms", "x-ms-region")
                },
                "header names": {"apim-request-id", "x-request-id", "x-ms-rai-invoked"} <= set(headers),
            }
        )
    return seen


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    ("fault", "options"),
    [(429, {"retry_after": 2}), (429, {"retry_after": 0.25}), (500, {}), (503, {}), ("content_filter", {})],
)
def test_status_faults_match_the_real_ones(
    double: LabDouble, llmops_faults: Faults, flavour: str, fault: Any, options: dict[str, Any]
) -> None:
    client = llmops_faults.attach(make_client(flavour, double.url, double.openai.api_key))
    double.openai.fail_next(fault, retry_after=options.get("retry_after", 1.0))
    real = raised(lambda: call(client))
    llmops_faults.next(fault, **options)
    injected = raised(lambda: call(client))

    assert facts(injected) == facts(real)
    assert len(double.requests_to("chat/completions")) == 1  # the injected one never left the process
    assert [f.kind for f in llmops_faults.injected] == [str(fault)]


def test_the_table_of_status_faults(double: LabDouble, llmops_faults: Faults) -> None:
    """The fields a user's error handling reads, spelled out once."""
    client = llmops_faults.attach(make_client("httpx2", double.url, double.openai.api_key))
    llmops_faults.next(429, retry_after=2).next(500).next(503).next("content_filter")

    rate = raised(lambda: call(client))
    assert isinstance(rate, openai.RateLimitError) and rate.status_code == 429
    assert rate.response.headers["retry-after"] == "2" and rate.response.headers["retry-after-ms"] == "2000"
    assert rate.code == "RateLimitReached" and "Please retry after 2 seconds" in rate.message
    for status, code in ((500, None), (503, "ServiceUnavailable")):
        error = raised(lambda: call(client))
        assert isinstance(error, openai.InternalServerError)
        assert (error.status_code, error.code) == (status, code)
    refusal = raised(lambda: call(client))
    assert isinstance(refusal, openai.BadRequestError) and refusal.status_code == 400
    assert (refusal.code, refusal.param) == ("content_filter", "prompt")
    body: Any = refusal.body
    assert body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert body["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_timeout_matches_a_real_read_timeout(double: LabDouble, llmops_faults: Faults, flavour: str) -> None:
    client = llmops_faults.attach(make_client(flavour, double.url, double.openai.api_key, timeout=0.2))
    double.openai.response_delay = 0.5
    real = raised(lambda: call(client))
    double.openai.response_delay = 0.0
    llmops_faults.next("timeout")
    injected = raised(lambda: call(client))

    assert isinstance(injected, openai.APITimeoutError)
    assert facts(injected) == facts(real)
    assert facts(injected)["cause message"] == ("" if flavour.endswith("async") else "timed out")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cut_stream_matches_a_real_cut(double: LabDouble, llmops_faults: Faults, flavour: str) -> None:
    client = llmops_faults.attach(make_client(flavour, double.url, double.openai.api_key))
    double.openai.cut_next_stream(after_chunks=3)
    real = raised(lambda: call(client, stream=True))
    llmops_faults.next("cut_stream", after_chunks=3)
    injected = raised(lambda: call(client, stream=True))

    assert isinstance(injected, openai.APIConnectionError)
    assert facts(injected) == facts(real)
    assert facts(injected)["cause"] == "RemoteProtocolError" and facts(injected)["chunks"] == 3
    first = injected.chunks[0]  # type: ignore[attr-defined]
    assert first.choices == [] and first.prompt_filter_results  # Azure's first event, as before a real cut
    assert len(double.requests_to("chat/completions")) == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_connection_error_matches_a_refused_connection(llmops_faults: Faults, flavour: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = llmops_faults.attach(make_client(flavour, f"http://127.0.0.1:{closed_port}", "key"))
    real = raised(lambda: call(client))
    llmops_faults.next("connection_error")
    injected = raised(lambda: call(client))

    assert isinstance(injected, openai.APIConnectionError)
    assert facts(injected) == facts(real)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_filtered_completion_plain_and_streamed(double: LabDouble, llmops_faults: Faults, flavour: str):
    client = llmops_faults.attach(make_client(flavour, double.url, double.openai.api_key))
    llmops_faults.next("content_filter", where="completion", count=2)

    reply = call(client)
    chunks = call(client, stream=True)

    choice = reply.choices[0]
    assert choice.finish_reason == "content_filter" and choice.message is None  # the default: no message
    assert choice.model_extra["content_filter_results"]["violence"] == {"filtered": True, "severity": "high"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "content_filter" and chunks[0].choices == []
    assert chunks[-1].choices[0].delta is None  # and a last chunk without delta
    assert double.requests == []


def test_the_sdk_retries_injected_faults_like_real_ones(double: LabDouble, llmops_faults: Faults) -> None:
    client = llmops_faults.attach(make_client("httpx2", double.url, double.openai.api_key, max_retries=2))
    llmops_faults.next(429, retry_after=0.01, count=2)

    reply = call(client)

    assert reply.choices[0].finish_reason == "stop"
    assert [r.headers["x-stainless-retry-count"] for r in double.requests_to("chat/completions")] == ["2"]


def test_match_limits_a_fault_to_some_requests(double: LabDouble, llmops_faults: Faults) -> None:
    double.openai.deployments.add("gpt-4o-mini")
    client = llmops_faults.attach(make_client("httpx2", double.url, double.openai.api_key))
    llmops_faults.next(503, match="deployments/gpt-4o-mini/")

    call(client)  # gpt-4o passes
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)


def test_detached_after_the_test(double: LabDouble, pytestconfig: pytest.Config) -> None:
    from pytest_llmops.traffic.faults.hub import hub

    faults = Faults(hub(pytestconfig))
    client = make_client("httpx", double.url, double.openai.api_key)
    transport = client._client._transport
    faults.attach(client)
    assert client._client._transport is not transport
    faults.detach_all()
    assert client._client._transport is transport


def test_wrong_arguments_say_what_to_pass(llmops_faults: Faults) -> None:
    with pytest.raises(ValueError, match=r"unknown fault\. Use one of: 429, 500, 503, timeout"):
        llmops_faults.next(404)
    with pytest.raises(ValueError, match="count must be >= 1"):
        llmops_faults.next(429, count=0)
    with pytest.raises(TypeError, match="pass an openai client, or an httpx2 or httpx"):
        llmops_faults.attach(object())


# -- through the plugin, black-box: every mode, and nothing on a cassette -----------------------------------

WITH_FAULTS = """
# In-process pytester runs drop modules their inner session imported. httpx2 imports
# httpcore2 lazily and caches its exception map: once a dropped httpcore2 is re-imported, real
# transport errors surface as raw httpcore2 ones. Importing it at collection keeps one copy.
import httpcore2  # noqa: F401
import httpx
import openai
import pytest

Q = [{"role": "user", "content": "Tell me a joke about animals."}]


def test_retried_429(azure_openai_client, azure_openai_deployment, llmops_faults):
    llmops_faults.next(429, retry_after=0.01)
    reply = azure_openai_client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    assert reply.choices[0].message.content
    assert [f.kind for f in llmops_faults.injected] == ["429"]


def test_500_reaches_the_test(azure_openai_client, azure_openai_deployment, llmops_faults):
    llmops_faults.next(500, count=3)  # the first try and the SDK's two retries
    with pytest.raises(openai.InternalServerError):
        azure_openai_client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    reply = azure_openai_client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    assert reply.choices[0].message.content


def test_refusal_then_cut_stream(azure_openai_client, azure_openai_deployment, llmops_faults):
    client = azure_openai_client.with_options(max_retries=0)
    llmops_faults.next("content_filter").next("cut_stream", after_chunks=2)
    with pytest.raises(openai.BadRequestError) as refusal:
        client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    assert refusal.value.code == "content_filter"
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q,
                                                    stream=True):
            seen.append(chunk)
    assert len(seen) == 2


@pytest.mark.anyio
async def test_async_client(azure_openai_async_client, azure_openai_deployment, llmops_faults):
    llmops_faults.next(503, count=3)
    with pytest.raises(openai.InternalServerError):
        await azure_openai_async_client.chat.completions.create(
            model=azure_openai_deployment.deployment, messages=Q)


def test_own_httpx_client(azure_openai_deployment, llmops_faults, llmops_cassette):
    client = openai.AzureOpenAI(
        azure_endpoint=azure_openai_deployment.endpoint, api_key=azure_openai_deployment.api_key,
        api_version=azure_openai_deployment.api_version, http_client=httpx.Client(), max_retries=0)
    llmops_faults.attach(client)
    llmops_faults.next("timeout")
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q)
    assert client.chat.completions.create(model=azure_openai_deployment.deployment, messages=Q).choices
"""


def test_faults_in_record_live_and_replay_never_reach_a_cassette(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], monkeypatch
) -> None:
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n")
    pytester.makepyfile(test_faults_user=WITH_FAULTS)

    pytester.runpytest("--llmops-live").assert_outcomes(passed=5)
    assert not (pytester.path / "cassettes").exists()
    live_calls = len(lab_double.requests_to("chat/completions"))
    assert live_calls == 3  # only the calls that were meant to succeed reached the service

    pytester.runpytest("--llmops-record").assert_outcomes(passed=5)
    cassettes = pytester.path / "cassettes" / "test_faults_user"
    written = all_bytes(cassettes)
    faults = (b"RateLimitReached", b"ResponsibleAIPolicyViolation", b"code: 500", b"code: 503", b"code: 429")
    for trace in faults:
        assert trace not in written
    assert written.count(b"code: 200") == 3
    assert not (cassettes / "test_async_client.yaml").exists()  # it made no real request
    assert SECRET_API_KEY.encode() not in written

    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    pytester.runpytest().assert_outcomes(passed=5)  # replay: the same faults, from no network


def test_faults_never_served_fail_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_forgot_to_attach(llmops_faults):
            llmops_faults.next(429, count=2)
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*llmops_faults: 2 scheduled faults (429) never served: no client is attached*"
         "llmops_faults.attach(your_client)*"]
    )
