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

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"

UNREADABLE = {
    "pydantic-ai/test_azure_provider_call.yaml": "*stores its body as `parsed_body`*",
    "dd-trace-py/azure_openai_openai_deployments_gpt-4.1-mini_chat_completions_api-version_"
    "2024-12-01-preview_post_5836d4fe.yaml": "*carries a YAML tag the safe loader refuses at line 6*",
    "dd-trace-py/azure_openai_openai_deployments_gpt-4.1-mini_chat_completions_api-version_"
    "2024-12-01-preview_post_5836d4fe.json": "*not a vcrpy cassette*",
}


def _cassettes() -> list[str]:
    if not REALWORLD.is_dir():
        return []
    return sorted(
        str(p.relative_to(REALWORLD))
        for p in REALWORLD.rglob("*")
        if p.suffix in {".yaml", ".json"} and p.parent.name in {"crewai", "dd-trace-py", "openllmetry-openai",
                                                                "pydantic-ai"}
    )


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


@pytest.mark.parametrize("name", _cassettes())
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
