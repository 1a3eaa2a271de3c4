"""What a request will cost: its tokens estimated before it is sent, and what the service
charged, from the usage of its answer."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

DEFAULT_COMPLETION_TOKENS = 256
"""Tokens reserved for an answer whose request sets no ``max_tokens`` (reconciled after)."""


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(part.get("text", "") if isinstance(part, dict) else part) for part in value)
    return 0


def estimate(body: Mapping[str, Any], completion_budget: int = DEFAULT_COMPLETION_TOKENS) -> int:
    """Tokens the service will charge for a request body, roughly: prompt characters / 4
    (plus per-message overhead and tools) and the requested maximum answer, per choice."""
    messages = body.get("messages")
    characters = 0
    overhead = 0
    if isinstance(messages, list):
        overhead = 3 + 4 * len(messages)
        for message in messages:
            if isinstance(message, dict):
                characters += _text_length(message.get("content")) + len(str(message.get("name") or ""))
                if message.get("tool_calls"):
                    characters += len(json.dumps(message["tool_calls"]))
    characters += _text_length(body.get("input")) + _text_length(body.get("prompt"))
    if body.get("tools"):
        characters += len(json.dumps(body["tools"]))
    generates = isinstance(messages, list) or "prompt" in body or "max_output_tokens" in body
    answer = _max_tokens(body) or (completion_budget if generates else 0)
    choices = _choices(body)
    return math.ceil(characters / 4) + overhead + answer * choices


def _choices(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def charged(body: Mapping[str, Any], usage: Mapping[str, Any]) -> int | None:
    """What the service charged, from the answer's usage: the prompt plus the requested
    maximum (Azure reserves it up front), else what was produced."""
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    if not isinstance(prompt, int):
        return None
    produced = usage.get("completion_tokens", usage.get("output_tokens")) or 0
    choices = _choices(body)
    limit = _max_tokens(body)
    return prompt + (limit * choices if limit else int(produced))
