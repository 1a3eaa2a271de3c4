"""Cassettes recorded by other projects against the real services (../shared/realworld)
replay through the plugin, for a test that builds its own client with the recorded
endpoint and names the file with ``llmops_cassette(name=...)``; formats that are not
standard vcrpy cassettes fail with a message that names the file and the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from tests.conftest import SHARED

REALWORLD = SHARED / "realworld"
DD = "dd-trace-py/azure_openai_openai_deployments_gpt-4.1-mini_chat_completions_api-version_2024-12-01-preview_post_5836d4fe"
CASES = (
    "crewai/TestAzureNativeToolCalling.test_azure_agent_with_native_tool_calling.yaml",
    "crewai/TestAzureResponsesCall.test_call_delegates_to_responses.yaml",
    "crewai/TestAzureToolCallStreaming.test_azure_streaming_emits_tool_call_events.yaml",
    "crewai/test_azure_async_non_streaming.yaml",
    "crewai/test_azure_streaming_completion.yaml",
    "dd-trace-py/azure_chat_completion.yaml",
    "dd-trace-py/azure_chat_completion_streamed.yaml",
    "dd-trace-py/azure_embedding.yaml",
    f"{DD}.json",
    f"{DD}.yaml",
    "dd-trace-py/chat_completion_error.yaml",
    "dd-trace-py/chat_completion_tool_call.yaml",
    "dd-trace-py/chat_completion_tool_call_streamed.yaml",
    "dd-trace-py/completion_azure_stream.yaml",
    "openllmetry-openai/test_chat.yaml",
    "openllmetry-openai/test_chat_async_streaming.yaml",
    "openllmetry-openai/test_chat_tool_calls.yaml",
    "openllmetry-openai/test_chat_tools_streaming.yaml",
    "pydantic-ai/test_azure_provider_call.yaml",
)
"""The corpus's cassettes, named here so that each case skips by name where ../shared is
absent (a user's clone), instead of collapsing into one "empty parameter set" skip."""

UNREADABLE = {
    "pydantic-ai/test_azure_provider_call.yaml": "*stores its body as `parsed_body`*",
    f"{DD}.yaml": "*carries a YAML tag the safe loader refuses at line 6*",
    f"{DD}.json": "*not a vcrpy cassette*",
}


def test_the_case_list_is_the_corpus(shared_dir: Path):
    """Every cassette of the corpus is a case (a file added there must be added here)."""
    found = sorted(
        str(p.relative_to(shared_dir / "realworld"))
        for p in (shared_dir / "realworld").rglob("*")
        if p.suffix in {".yaml", ".json"} and p.parent.name in {"crewai", "dd-trace-py", "openllmetry-openai",
                                                                "pydantic-ai"}
    )
    assert found == sorted(CASES)


def _calls(path: Path) -> tuple[list[dict[str, object]], bool]:
    """The client calls that made a cassette's requests, and whether bodies can be matched
    (a body recorded by another SDK, e.g. azure-ai-inference, has no ``model``)."""
    data = yaml.safe_load(path.read_text())
    calls: list[dict[str, object]] = []
    match_body = True
    for interaction in data["interactions"]:
        request, response = interaction["request"], interaction["response"]
        uri = urlsplit(request["uri"])
        body = json.loads(request["body"])
        status = response.get("status", {}).get("code") or response.get("status_code")
        path_ = uri.path.replace("//", "/")
        deployment = path_.split("/openai/deployments/")[1].split("/")[0] if "/deployments/" in path_ else None
        if "model" not in body:
            body["model"] = deployment
            match_body = False
        calls.append({
            "host": uri.hostname,
            "api_version": dict(parse_qsl(uri.query)).get("api-version"),
            "operation": path_.rsplit("/", 2)[-2] + "/" + path_.rsplit("/", 1)[-1],
            "body": body,
            "status": status,
        })
    return calls, match_body


INNER = '''
import json
import openai
import pytest

CALLS = json.loads(%r)


def client_for(call):
    if call["host"].endswith(".openai.azure.com"):
        if call["operation"] == "v1/responses":
            return openai.OpenAI(base_url=f"https://{call['host']}/openai/v1/", api_key="replay-key")
        return openai.AzureOpenAI(
            azure_endpoint=f"https://{call['host']}", api_key="replay-key", api_version=call["api_version"]
        )
    return openai.OpenAI(api_key="replay-key")


@pytest.mark.llmops_cassette(name=%r%s)
def test_replays():
    for call in CALLS:
        client = client_for(call)
        body = dict(call["body"])
        if call["operation"] == "v1/responses":
            reply = client.responses.create(**body)
            assert reply.output
            continue
        if call["status"] == 401:
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(**body)
            continue
        if call["operation"].endswith("embeddings"):
            reply = client.embeddings.create(**body)
            assert reply.data
            continue
        if body.get("stream"):
            chunks = list(client.chat.completions.create(**body))
            assert chunks, "a replayed stream yields its chunks"
            continue
        reply = client.chat.completions.create(**body)
        assert reply.choices
'''


@pytest.mark.parametrize("name", CASES, ids=CASES)
def test_realworld_cassette(pytester: pytest.Pytester, shared_dir: Path, name: str):
    source = shared_dir / "realworld" / name
    target = pytester.path / "cassettes" / "realworld" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    if name in UNREADABLE:
        pytester.makepyfile(
            f"import pytest\n\n@pytest.mark.llmops_cassette(name={'realworld/' + name!r})\n"
            "def test_replays():\n    pass\n"
        )
        result = pytester.runpytest()
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines([f"*Cassette *{Path(name).name} cannot be used: {UNREADABLE[name]}"])
        return
    calls, match_body = _calls(source)
    match = "" if match_body else ", match_on=['method', 'host', 'path', 'query']"
    pytester.makepyfile(INNER % (json.dumps(calls), "realworld/" + name, match))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_without_shared_each_case_skips_by_name(tmp_path: Path):
    """A clone without ../shared: every case is reported skipped under its own name with the
    reason, and no assertion that needs the corpus hides inside a passing test."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["LLMOPS_TEST_SHARED_DIR"] = str(tmp_path / "no-shared")
    env["COLUMNS"] = "1000"  # skip reasons are cut at the terminal width
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-p", "no:randomly",
         "tests/test_realworld.py", "tests/test_double.py::test_cluster_json_has_the_keys_of_a_real_cluster",
         "-k", "not without_shared"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    assert "empty parameter set" not in out
    assert f"{len(CASES) + 2} skipped" in out, out[-3000:]
    reason = f"{tmp_path / 'no-shared' / 'realworld'} is not present"
    for name in CASES:
        assert f"test_realworld_cassette[{name}]: {reason}" in out, name
    assert f"test_cluster_json_has_the_keys_of_a_real_cluster: {reason}" in out
