"""The lab double, driven by the real SDKs over real HTTP on loopback.

Each test reads as a contract the double keeps with ``openai`` (AzureOpenAI) and
``databricks-sdk``; the shapes asserted here are the ones real Azure traffic has.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    BadRequest,
    NotFound,
    OperationFailed,
    PermissionDenied,
    ResourceDoesNotExist,
)
from databricks.sdk.service import compute
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.double import LabDouble

API_VERSION = "2024-05-01-preview"
JOKE: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Assistant is a large language model trained by OpenAI."},
    {"role": "user", "content": "Tell me a joke about animals."},
]
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "unit"],
        },
    },
}
WEATHER_QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What's the weather like in Paris today?"}
]


@pytest.fixture
def double() -> Iterator[LabDouble]:
    """A fresh double with fast Databricks transitions."""
    with LabDouble() as lab:
        lab.databricks.transition_seconds = 0.05
        yield lab
        assert lab.handler_errors == []


@pytest.fixture(scope="module")
def http_client() -> Iterator[openai.DefaultHttpxClient]:
    """One HTTP client for the module: building a TLS context per test costs ~50 ms."""
    with openai.DefaultHttpxClient() as shared_client:
        yield shared_client


@pytest.fixture
def client(double: LabDouble, http_client: openai.DefaultHttpxClient) -> openai.AzureOpenAI:
    """A real AzureOpenAI client on the double, no retries (tests opt into them)."""
    return openai.AzureOpenAI(
        azure_endpoint=double.url,
        api_key=double.openai.api_key,
        api_version=API_VERSION,
        max_retries=0,
        http_client=http_client,
    )


@pytest.fixture
def workspace(double: LabDouble, monkeypatch: pytest.MonkeyPatch) -> WorkspaceClient:
    """A real WorkspaceClient on the double whose waiters poll every 10 ms instead of 1-10 s."""
    real_sleep = time.sleep
    fast_time = types.SimpleNamespace(time=time.time, sleep=lambda seconds: real_sleep(0.01))
    # Patch the waiters' module only: patching time.sleep globally would hit the server too.
    monkeypatch.setattr(compute, "time", fast_time)
    return WorkspaceClient(host=double.url, token="dapi-double")


def raw_post(
    double: LabDouble, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[Any, bytes]:
    """POST with http.client, to see headers and bytes exactly as sent on the wire."""
    connection = http.client.HTTPConnection("127.0.0.1", double.port, timeout=10)
    connection.request("POST", path, json.dumps(body), {"content-type": "application/json", **headers})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def new_cluster(
    workspace: WorkspaceClient, spark_env_vars: dict[str, str] | None = None
) -> compute.ClusterDetails:
    """The lab's single-node 16.4 LTS ML cluster (with ``spark_env_vars``), created and waited for."""
    return workspace.clusters.create(
        cluster_name="llmops-lab",
        spark_version="16.4.x-cpu-ml-scala2.12",
        node_type_id="Standard_D4ds_v5",
        num_workers=0,
        spark_conf={"spark.databricks.cluster.profile": "singleNode", "spark.master": "local[*, 4]"},
        custom_tags={"ResourceClass": "SingleNode"},
        autotermination_minutes=30,
        spark_env_vars=spark_env_vars,
    ).result()


def openai_env(double: LabDouble, workspace: WorkspaceClient) -> dict[str, str]:
    """What a cluster needs to reach the double's Azure OpenAI: endpoint and version as
    variables, the key in a secret scope."""
    workspace.secrets.create_scope("lab")
    workspace.secrets.put_secret("lab", "openai-key", string_value=double.openai.api_key)
    return {
        "AZURE_OPENAI_ENDPOINT": double.url,
        "AZURE_OPENAI_API_VERSION": "2024-05-01-preview",
        "AZURE_OPENAI_API_KEY": "{{secrets/lab/openai-key}}",
    }


# -- Azure OpenAI: answers ---------------------------------------------------------------------


def test_plain_completion_has_the_azure_shape(double: LabDouble, client: openai.AzureOpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=JOKE)
    completion = raw.parse()
    body = json.loads(raw.http_response.content)

    assert (
        completion.choices[0].message.content
        == "Why don't elephants use computers? Because they're afraid of the mouse!"
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-") and len(completion.id) == len("chatcmpl-") + 29
    assert completion.model == "gpt-4o-2024-11-20"
    assert completion.object == "chat.completion"
    assert (completion.system_fingerprint or "").startswith("fp_")
    assert body["choices"][0]["message"]["refusal"] is None
    assert body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
    assert body["prompt_filter_results"][0]["content_filter_results"]["jailbreak"]["detected"] is False
    usage = completion.usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens_details is not None and usage.prompt_tokens_details is not None
    for header in ("apim-request-id", "x-request-id", "x-ms-region", "x-ratelimit-remaining-requests"):
        assert raw.headers.get(header), header
    assert raw.headers["content-type"] == "application/json"

    sent = double.requests_to(r"/openai/deployments/gpt-4o/chat/completions", "POST")[0]
    assert sent.headers["api-key"] == double.openai.api_key
    assert f"api-version={API_VERSION}" in sent.path
    assert sent.json()["messages"] == JOKE


def test_answers_are_deterministic_and_echo_the_question(client: openai.AzureOpenAI) -> None:
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What does MLflow autolog record?"}
    ]
    first = client.chat.completions.create(model="gpt-4o", messages=question)
    second = client.chat.completions.create(model="gpt-4o", messages=question)

    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.id == second.id
    assert first.usage == second.usage
    assert "What does MLflow autolog record?" in (first.choices[0].message.content or "")


def test_max_tokens_truncates_with_finish_reason_length(client: openai.AzureOpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=JOKE, max_tokens=3)

    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Why don'"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


# -- Azure OpenAI: streams ---------------------------------------------------------------------


def test_stream_starts_with_the_prompt_filter_chunk_and_reassembles(client: openai.AzureOpenAI) -> None:
    expected = client.chat.completions.create(model="gpt-4o", messages=JOKE)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=JOKE, stream=True, stream_options={"include_usage": True}
        )
    )

    first, role, last_choice, usage_chunk = chunks[0], chunks[1], chunks[-2], chunks[-1]
    assert first.choices == [] and first.id == ""
    assert (first.model_extra or {})["prompt_filter_results"][0]["prompt_index"] == 0
    assert role.choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # a few words each
    assert last_choice.choices[0].finish_reason == "stop"
    assert usage_chunk.choices == [] and usage_chunk.usage == expected.usage


def test_stream_on_the_wire_is_chunked_sse_ending_with_done(double: LabDouble) -> None:
    response, data = raw_post(
        double,
        f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}",
        {"messages": JOKE, "stream": True},
        {"api-key": double.openai.api_key},
    )

    assert response.status == 200
    assert response.getheader("content-type") == "text/event-stream; charset=utf-8"
    assert response.getheader("transfer-encoding") == "chunked"
    events = [e for e in data.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert '"usage"' not in events[-2]  # no usage chunk unless stream_options asks for it


def test_async_stream_with_usage(double: LabDouble) -> None:
    async def collect() -> list[Any]:
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=double.url, api_key=double.openai.api_key, api_version=API_VERSION, max_retries=0
        )
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=JOKE, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        await client.close()
        return chunks

    chunks = asyncio.run(collect())

    assert chunks[0].choices == [] and "prompt_filter_results" in (chunks[0].model_extra or {})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith("mouse!")
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


# -- Azure OpenAI: tools -----------------------------------------------------------------------


def test_tool_call_then_answer_from_the_tool_result(client: openai.AzureOpenAI) -> None:
    first = client.chat.completions.create(model="gpt-4o", messages=WEATHER_QUESTION, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = (choice.message.tool_calls or [])[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id.startswith("call_") and call.function.name == "get_current_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}
    again = client.chat.completions.create(model="gpt-4o", messages=WEATHER_QUESTION, tools=[WEATHER_TOOL])
    assert (again.choices[0].message.tool_calls or [])[0].id == call.id

    follow_up: list[Any] = [
        *WEATHER_QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18, "unit": "celsius"}'},
    ]
    second = client.chat.completions.create(model="gpt-4o", messages=follow_up, tools=[WEATHER_TOOL])

    assert second.choices[0].finish_reason == "stop"
    assert '{"temperature": 18' in (second.choices[0].message.content or "")
    assert "get_current_weather" in (second.choices[0].message.content or "")


def test_unrelated_question_with_tools_gets_a_plain_answer(client: openai.AzureOpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=JOKE, tools=[WEATHER_TOOL])

    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None


def test_streamed_tool_call(client: openai.AzureOpenAI) -> None:
    plain = client.chat.completions.create(model="gpt-4o", messages=WEATHER_QUESTION, tools=[WEATHER_TOOL])
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], stream=True
        )
    )

    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id == (plain.choices[0].message.tool_calls or [])[0].id
    assert deltas[0].function is not None and deltas[0].function.name == "get_current_weather"
    arguments = "".join((d.function.arguments or "") if d.function else "" for d in deltas)
    assert json.loads(arguments) == {"location": "Paris", "unit": "celsius"}
    assert len(deltas) > 2  # arguments arrive in fragments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


# -- Azure OpenAI: auth and faults -------------------------------------------------------------


def test_wrong_key_raises_authentication_error(client: openai.AzureOpenAI) -> None:
    bad = client.with_options(api_key="wrong")

    with pytest.raises(openai.AuthenticationError) as raised:
        bad.chat.completions.create(model="gpt-4o", messages=JOKE)

    assert raised.value.status_code == 401
    assert "Access denied due to invalid subscription key" in raised.value.message


def test_entra_bearer_token_is_accepted(double: LabDouble, http_client: openai.DefaultHttpxClient) -> None:
    entra = openai.AzureOpenAI(
        azure_endpoint=double.url,
        azure_ad_token="double-bearer-token",
        api_version=API_VERSION,
        http_client=http_client,
    )

    entra.chat.completions.create(model="gpt-4o", messages=JOKE)

    assert double.requests[-1].headers["authorization"] == "Bearer double-bearer-token"


def test_unknown_deployment_is_404_deployment_not_found(client: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-5-turbo", messages=JOKE)

    assert raised.value.code == "DeploymentNotFound"


def test_429_fault_raises_rate_limit_error_with_retry_after(
    double: LabDouble, client: openai.AzureOpenAI
) -> None:
    double.openai.fail_next(status=429, count=1, retry_after=2)

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=JOKE)

    headers = raised.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
    assert raised.value.code == "RateLimitReached"
    assert "Please retry after 2 seconds" in raised.value.message
    assert double.openai.pending_faults == 0


def test_429_fault_is_retried_after_retry_after(double: LabDouble, client: openai.AzureOpenAI) -> None:
    double.openai.fail_next(status=429, count=2, retry_after=0.1)
    patient = client.with_options(max_retries=2)

    started = time.monotonic()
    completion = patient.chat.completions.create(model="gpt-4o", messages=JOKE)

    assert completion.choices[0].finish_reason == "stop"
    assert time.monotonic() - started >= 0.2  # retry-after-ms honoured twice
    sent = double.requests_to("chat/completions")
    assert [r.headers["x-stainless-retry-count"] for r in sent] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("status", "error"), [(500, openai.InternalServerError), (503, openai.InternalServerError)]
)
def test_server_faults(
    double: LabDouble, client: openai.AzureOpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    double.openai.fail_next(status=status)

    with pytest.raises(error) as raised:
        client.chat.completions.create(model="gpt-4o", messages=JOKE)

    assert raised.value.status_code == status
    client.chat.completions.create(model="gpt-4o", messages=JOKE)  # the fault was served once


def test_content_filter_raises_bad_request(double: LabDouble, client: openai.AzureOpenAI) -> None:
    double.openai.fail_next(status="content_filter")

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=JOKE)

    assert raised.value.code == "content_filter"
    assert raised.value.param == "prompt"
    body: Any = raised.value.body
    assert body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert body["innererror"]["content_filter_result"]["violence"]["filtered"] is True


STRUCTURED = {"type": "json_schema", "json_schema": {"name": "Joke", "schema": {
    "type": "object", "properties": {"joke": {"type": "string"}}, "required": ["joke"]}}}


@pytest.mark.parametrize("api_version", ["2024-05-01-preview", "2024-06-01", "2024-07-01-preview"])
def test_structured_outputs_before_2024_08_01_preview_are_refused(
    double: LabDouble, client: openai.AzureOpenAI, api_version: str
) -> None:
    """Real Azure answers ``json_schema`` under an older API version with a 400 BadRequest."""
    older = client.with_options(api_version=api_version)

    with pytest.raises(openai.BadRequestError) as raised:
        older.chat.completions.create(model="gpt-4o", messages=JOKE, response_format=STRUCTURED)  # type: ignore[arg-type]

    assert raised.value.status_code == 400 and raised.value.code == "BadRequest"
    assert raised.value.body == {
        "code": "BadRequest",
        "message": "response_format value as json_schema is enabled only for api versions 2024-08-01-preview and later",
    }
    assert double.requests[-1].path.endswith(f"?api-version={api_version}")
    plain = older.chat.completions.create(model="gpt-4o", messages=JOKE, response_format={"type": "json_object"})
    assert plain.choices[0].finish_reason == "stop"  # JSON mode is older: still accepted


@pytest.mark.parametrize("api_version", ["2024-08-01-preview", "2024-10-21", "2025-04-01-preview"])
def test_structured_outputs_from_2024_08_01_preview_are_answered(
    double: LabDouble, client: openai.AzureOpenAI, api_version: str
) -> None:
    newer = client.with_options(api_version=api_version)

    completion = newer.chat.completions.create(model="gpt-4o", messages=JOKE, response_format=STRUCTURED)  # type: ignore[arg-type]

    assert completion.choices[0].finish_reason == "stop"
    assert double.requests[-1].path.endswith(f"?api-version={api_version}")


def test_structured_outputs_on_the_v1_api_are_answered(double: LabDouble) -> None:
    """The v1 API takes no api-version: it is the current one."""
    body = {"model": "gpt-4o", "messages": JOKE, "response_format": STRUCTURED}
    response, data = raw_post(double, "/openai/v1/chat/completions", body, {"api-key": double.openai.api_key})

    assert response.status == 200, data
    assert json.loads(data)["choices"][0]["finish_reason"] == "stop"


def test_tokens_per_minute_limit_gives_429_then_recovers(
    double: LabDouble, client: openai.AzureOpenAI
) -> None:
    double.openai.tokens_per_minute = 100
    double.openai.rate_limit_window = 0.25  # a shorter window, to see it slide within the test
    first = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=JOKE)
    used = int(first.headers["x-ratelimit-limit-tokens"]) - int(first.headers["x-ratelimit-remaining-tokens"])
    assert used == double.openai.tokens_used() > 0

    with pytest.raises(openai.RateLimitError) as raised:
        for _ in range(100 // used + 1):
            client.chat.completions.create(model="gpt-4o", messages=JOKE)

    headers = raised.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert int(headers["x-ratelimit-remaining-tokens"]) < used
    assert "x-ratelimit-remaining-requests" in headers
    time.sleep(0.3)
    client.chat.completions.create(model="gpt-4o", messages=JOKE)


# -- Databricks: workspace ---------------------------------------------------------------------


def test_workspace_discovery_and_current_user(double: LabDouble, workspace: WorkspaceClient) -> None:
    me = workspace.current_user.me()

    assert me.user_name == "lab-user@example.com"
    probe = double.requests_to(r"^/\.well-known/databricks-config$")
    assert len(probe) == 1 and "authorization" not in probe[0].headers  # an anonymous probe
    assert workspace.config.workspace_id == double.databricks.workspace_id  # taken from the probe
    assert workspace.get_workspace_id() == int(double.databricks.workspace_id)  # X-Databricks-Org-Id
    assert double.requests_to("scim/v2/Me")[0].headers["authorization"] == "Bearer dapi-double"


def test_wrong_token_is_refused(double: LabDouble) -> None:
    stranger = WorkspaceClient(host=double.url, token="dapi-wrong")

    with pytest.raises(PermissionDenied, match="Invalid access token"):
        stranger.current_user.me()


def test_runtime_and_node_type_selection(workspace: WorkspaceClient) -> None:
    assert (
        workspace.clusters.select_spark_version(ml=True, long_term_support=True) == "16.4.x-cpu-ml-scala2.12"
    )
    assert workspace.clusters.select_spark_version(long_term_support=True) == "16.4.x-scala2.12"
    assert workspace.clusters.select_spark_version(ml=True, scala="2.13") == "17.0.x-cpu-ml-scala2.13"
    node = workspace.clusters.select_node_type(min_memory_gb=16, min_cores=4, local_disk=True)
    assert node == "Standard_D4ds_v5"


# -- Databricks: clusters ----------------------------------------------------------------------


def test_cluster_lifecycle(double: LabDouble, workspace: WorkspaceClient) -> None:
    seen: list[compute.State | None] = []
    waiter = workspace.clusters.create(
        cluster_name="llmops-lab",
        spark_version="16.4.x-cpu-ml-scala2.12",
        node_type_id="Standard_D4ds_v5",
        num_workers=0,
    )
    running = waiter.result(callback=lambda details: seen.append(details.state))
    cluster_id = running.cluster_id or ""

    assert running.state == compute.State.RUNNING
    assert seen and set(seen) == {compute.State.PENDING}
    assert running.driver is not None and running.spark_context_id
    assert running.creator_user_name == "lab-user@example.com"
    assert [c.cluster_id for c in workspace.clusters.list()] == [cluster_id]

    terminated = workspace.clusters.delete(cluster_id).result()
    assert terminated.state == compute.State.TERMINATED
    assert terminated.termination_reason is not None
    assert terminated.termination_reason.code == compute.TerminationReasonCode.USER_REQUEST

    assert workspace.clusters.start(cluster_id).result().state == compute.State.RUNNING
    workspace.clusters.delete(cluster_id).result()
    workspace.clusters.permanent_delete(cluster_id)

    with pytest.raises(ResourceDoesNotExist):  # real: 400 INVALID_PARAMETER_VALUE, mapped by the SDK
        workspace.clusters.get(cluster_id)
    assert isinstance(ResourceDoesNotExist(), NotFound)
    assert list(workspace.clusters.list()) == []
    assert double.databricks.live_clusters() == []
    assert double.databricks.clusters[cluster_id]["permanently_deleted"] is True


def test_cluster_json_follows_the_real_shape(workspace: WorkspaceClient) -> None:
    cluster_id = new_cluster(workspace).cluster_id or ""
    ours = workspace.api_client.do("GET", "/api/2.1/clusters/get", query={"cluster_id": cluster_id})
    assert isinstance(ours, dict)

    assert ours["spark_conf"]["spark.databricks.cluster.profile"] == "singleNode"
    assert ours["default_tags"]["ClusterId"] == cluster_id


def test_cluster_json_has_the_keys_of_a_real_cluster(workspace: WorkspaceClient, shared_dir: Path) -> None:
    """Against a real RUNNING cluster's body (terraform-provider-databricks, in ../shared):
    skipped by name where ../shared is absent, never skipped inside a passing test."""
    cluster_id = new_cluster(workspace).cluster_id or ""
    ours = workspace.api_client.do("GET", "/api/2.1/clusters/get", query={"cluster_id": cluster_id})
    assert isinstance(ours, dict)
    folder = shared_dir / "realworld" / "terraform-provider-databricks"
    real = json.loads((folder / "get-cluster-test1-response.json").read_text())
    # Every top-level key of a real RUNNING cluster that applies to ours is there too.
    skipped = {"init_scripts", "pinned_by_user_name"}
    assert set(real) - skipped - set(ours) == set()


def test_cores_quota_failure_ends_terminated(double: LabDouble, workspace: WorkspaceClient) -> None:
    double.databricks.fail_create_with_quota = True

    with pytest.raises(OperationFailed, match=r"(?i)cores quota"):
        new_cluster(workspace)

    (cluster,) = double.databricks.live_clusters()
    assert cluster["state"] == "TERMINATED"
    assert cluster["termination_reason"]["code"] == "AZURE_QUOTA_EXCEEDED_EXCEPTION"
    assert cluster["termination_reason"]["type"] == "CLIENT_ERROR"
    assert (
        "standardDDSv5Family Cores quota"
        in cluster["termination_reason"]["parameters"]["azure_error_message"]
    )
    workspace.clusters.permanent_delete(cluster["cluster_id"])
    assert double.databricks.live_clusters() == []


# -- Databricks: command execution -------------------------------------------------------------


def test_command_execution_runs_python(double: LabDouble, workspace: WorkspaceClient) -> None:
    double.databricks.command_env = {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}
    cluster_id = new_cluster(workspace, {"AZURE_OPENAI_ENDPOINT": double.url}).cluster_id or ""
    context = workspace.command_execution.create(
        cluster_id=cluster_id, language=compute.Language.PYTHON
    ).result()
    assert context.status == compute.ContextStatus.RUNNING and context.id

    def run(code: str) -> compute.CommandStatusResponse:
        return workspace.command_execution.execute(
            cluster_id=cluster_id, context_id=context.id, language=compute.Language.PYTHON, command=code
        ).result()

    hello = run('print("hello")')
    assert hello.status == compute.CommandStatus.FINISHED
    assert hello.results is not None and hello.results.result_type == compute.ResultType.TEXT
    assert hello.results.data == "hello"

    env = run("import os; print(os.environ['MLFLOW_TRACKING_URI'], os.environ['AZURE_OPENAI_ENDPOINT'])")
    assert env.results is not None and env.results.data == f"sqlite:///mlflow.db {double.url}"

    indented = run("\n    x = 2\n    print(x * 21)\n")  # the SDK's dbutils proxy sends indented code
    assert indented.results is not None and indented.results.data == "42"

    failed = run("def divide():\n    return 1 / 0\n\ndivide()")
    assert failed.status == compute.CommandStatus.FINISHED  # a Python error still "finishes"
    assert failed.results is not None and failed.results.result_type == compute.ResultType.ERROR
    assert failed.results.summary == "<span class='ansi-red-fg'>ZeroDivisionError</span>: division by zero"
    assert "Traceback (most recent call last)" in (failed.results.cause or "")
    assert "in divide" in (failed.results.cause or "")

    workspace.command_execution.destroy(cluster_id=cluster_id, context_id=context.id or "")
    assert double.databricks.live_contexts() == []
    assert double.databricks.contexts[context.id or ""]["destroyed"] is True


def test_commands_of_a_context_queue_in_order(double: LabDouble, workspace: WorkspaceClient) -> None:
    cluster_id = new_cluster(workspace).cluster_id or ""
    context_id = workspace.command_execution.create_and_wait(cluster_id=cluster_id).id or ""
    executions = workspace.command_execution

    slow = executions.execute(
        cluster_id=cluster_id, context_id=context_id, command="import time; time.sleep(0.25)"
    )
    quick = executions.execute(cluster_id=cluster_id, context_id=context_id, command="print('after')")
    statuses = {
        executions.command_status(cluster_id, context_id, slow.command_id).status,
        executions.command_status(cluster_id, context_id, quick.command_id).status,
    }

    assert compute.CommandStatus.QUEUED in statuses  # the second waits for the first
    quick_result = quick.result().results
    assert quick_result is not None and quick_result.data == "after"
    assert slow.result().status == compute.CommandStatus.FINISHED
    executions.destroy(cluster_id=cluster_id, context_id=context_id)


def test_no_context_on_a_terminated_cluster(workspace: WorkspaceClient) -> None:
    cluster_id = new_cluster(workspace).cluster_id or ""
    workspace.clusters.delete(cluster_id).result()

    with pytest.raises(BadRequest, match="is TERMINATED; start it"):
        workspace.command_execution.create(cluster_id=cluster_id, language=compute.Language.PYTHON)


def test_a_command_on_the_cluster_reaches_the_doubles_openai(
    double: LabDouble, workspace: WorkspaceClient
) -> None:
    cluster_id = new_cluster(workspace, openai_env(double, workspace)).cluster_id or ""
    context_id = workspace.command_execution.create_and_wait(cluster_id=cluster_id).id or ""
    # The stdlib instead of `from openai import AzureOpenAI`, whose import alone costs ~1 s here.
    cell = """
        import json, os, urllib.request
        url = (os.environ["AZURE_OPENAI_ENDPOINT"] + "/openai/deployments/gpt-4o/chat/completions"
               + "?api-version=" + os.environ["AZURE_OPENAI_API_VERSION"])
        body = {"messages": [{"role": "user", "content": "Tell me a joke about animals."}]}
        request = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers={
            "api-key": os.environ["AZURE_OPENAI_API_KEY"], "content-type": "application/json"})
        with urllib.request.urlopen(request) as response:
            print(json.load(response)["choices"][0]["message"]["content"])
    """

    result = workspace.command_execution.execute_and_wait(
        cluster_id=cluster_id, context_id=context_id, language=compute.Language.PYTHON, command=cell
    )

    assert result.results is not None and (result.results.data or "").endswith("afraid of the mouse!")
    assert double.requests_to("chat/completions")[0].headers["api-key"] == double.openai.api_key
    workspace.command_execution.destroy(cluster_id=cluster_id, context_id=context_id)


# -- the server itself -------------------------------------------------------------------------


def test_request_log_and_reset(double: LabDouble, client: openai.AzureOpenAI) -> None:
    double.openai.tokens_per_minute = 5
    double.reset()

    client.chat.completions.create(model="gpt-4o", messages=JOKE)  # the limit is gone with reset
    method, path, headers, body = double.requests[0]
    assert (method, json.loads(body)["messages"]) == ("POST", JOKE)
    assert path.startswith("/openai/deployments/gpt-4o/chat/completions?") and headers["api-key"]

    double.reset()
    assert double.requests == [] and double.openai.tokens_per_minute is None


def test_unknown_databricks_endpoint_is_endpoint_not_found(workspace: WorkspaceClient) -> None:
    with pytest.raises(NotFound, match="No API found"):
        workspace.api_client.do("GET", "/api/2.0/no-such-api")


def test_stop_cuts_kept_alive_connections(double: LabDouble) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", double.port, timeout=5)
    connection.request("GET", "/.well-known/databricks-config")
    assert connection.getresponse().read()

    double.stop()

    with pytest.raises((ConnectionError, http.client.HTTPException)):
        connection.request("GET", "/.well-known/databricks-config")
        connection.getresponse()


def test_only_loopback_is_allowed() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LabDouble(host="0.0.0.0")


def test_main_prints_url_and_exports() -> None:
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.double", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(7)]
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert lines[0].startswith("Lab double listening on http://127.0.0.1:")
    url = lines[0].rsplit(" ", 1)[1]
    assert f"export AZURE_OPENAI_ENDPOINT={url}" in lines
    assert f"export DATABRICKS_HOST={url}" in lines
    assert "export DATABRICKS_TOKEN=dapi-double" in lines
    assert "export AZURE_OPENAI_API_KEY=double-api-key-0000" in lines
