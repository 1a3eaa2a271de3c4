"""Cassettes written directly (vcrpy format), for tests that need replayable chat
completions without recording them first: plain and streamed, with token usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CHAT_URI = (
    "https://resource.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
    "?api-version=2024-05-01-preview"
)


def question(text: str) -> list[dict[str, str]]:
    """The messages of a one-question chat."""
    return [{"role": "user", "content": text}]


def completion(content: str, prompt_tokens: int = 12, completion_tokens: int = 7) -> dict[str, Any]:
    """A ``chat.completion`` body with usage."""
    return {
        "id": "chatcmpl-llmops",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-05-13",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chat(messages: list[dict[str, str]], content: str, prompt_tokens: int = 12, completion_tokens: int = 7,
         **request: Any) -> dict[str, Any]:
    """One interaction: a chat completion request and its JSON answer."""
    return _interaction(
        {"messages": messages, "model": "gpt-4o", **request},
        "application/json",
        json.dumps(completion(content, prompt_tokens, completion_tokens)),
    )


def streamed_chat(
    messages: list[dict[str, str]], words: list[str], prompt_tokens: int = 12
) -> dict[str, Any]:
    """One interaction: a streamed chat completion (``stream_options.include_usage``) the way
    Azure sends it: a first chunk without choices (prompt filter results), one chunk per word,
    the finish chunk, the usage chunk, ``[DONE]``."""

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None, **extra: Any) -> str:
        body = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1700000000,
                "model": "gpt-4o-2024-05-13", "choices": choices, "usage": usage, **extra}
        return f"data: {json.dumps(body)}\n\n"

    events = [chunk([], prompt_filter_results=[{"prompt_index": 0, "content_filter_results": {}}])]
    events.append(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
    events += [
        chunk([{"index": 0, "delta": {"content": f"{word} "}, "finish_reason": None}]) for word in words
    ]
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
             "total_tokens": prompt_tokens + len(words)}
    events.append(chunk([], usage=usage))
    events.append("data: [DONE]\n\n")
    request = {
        "messages": messages, "model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}
    }
    return _interaction(request, "text/event-stream", "".join(events))


def _interaction(request_body: dict[str, Any], content_type: str, response_body: str) -> dict[str, Any]:
    return {
        "request": {
            "method": "POST",
            "uri": CHAT_URI,
            "body": json.dumps(request_body),
            "headers": {"content-type": ["application/json"]},
        },
        "response": {
            "status": {"code": 200, "message": "OK"},
            "headers": {"content-type": [content_type]},
            "body": {"string": response_body},
        },
    }


def write(root: Path, test_module: str, test_name: str, *interactions: dict[str, Any]) -> Path:
    """Write ``cassettes/<module>/<test name>.yaml`` under ``root`` (a pytester folder)."""
    path = root / "cassettes" / test_module / f"{test_name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "interactions": list(interactions)}), encoding="utf-8")
    return path
