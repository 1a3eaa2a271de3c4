"""Streamed chat completions (SSE) record and replay with the real openai SDK, sync and
async, the chunk sequence intact, Azure's first chunk (empty choices, prompt filter
results) included."""

from __future__ import annotations

import pytest

STREAMS = """
import pytest

QUESTION = [{"role": "user", "content": "Tell me a joke about animals."}]


def check(chunks):
    assert chunks[0].choices == []
    assert chunks[0].prompt_filter_results  # Azure's first chunk
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = [c.usage for c in chunks if c.usage]
    assert usage and usage[-1].completion_tokens > 0
    print("CHUNKS", len(chunks), repr(text))


def test_sync_stream(azure_openai_client, azure_openai_deployment):
    stream = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=QUESTION, stream=True,
        stream_options={"include_usage": True})
    check(list(stream))


@pytest.mark.anyio
async def test_async_stream(azure_openai_async_client, azure_openai_deployment):
    stream = await azure_openai_async_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=QUESTION, stream=True,
        stream_options={"include_usage": True})
    check([chunk async for chunk in stream])


def test_stream_with_tool_calls(azure_openai_client, azure_openai_deployment):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    stream = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, stream=True, tools=tools,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
"""


def test_streams_record_and_replay_identically(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n")
    pytester.makepyfile(test_streams=STREAMS)
    recorded = pytester.runpytest("--llmops-record", "-s")
    recorded.assert_outcomes(passed=3)
    cassette = (pytester.path / "cassettes" / "test_streams" / "test_sync_stream.yaml").read_text()
    assert "text/event-stream" in cassette and "prompt_filter_results" in cassette

    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    replayed = pytester.runpytest("-s")
    replayed.assert_outcomes(passed=3)
    lines = lambda result: sorted(line for line in result.stdout.lines if "CHUNKS" in line)  # noqa: E731
    assert lines(replayed) == lines(recorded), "the same chunks, in the same order"
