"""Azure OpenAI's bodies for the faults: copies of what the service sends
(``tests/double/openai_wire.py`` serves the same from the lab double)."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

REGION = "Sweden Central"
"""The region the fault bodies name (a lab region; the real one is only known from a real answer)."""

_SAFE = {"filtered": False, "severity": "safe"}
_PROMPT_FILTER = {
    "hate": _SAFE,
    "jailbreak": {"filtered": False, "detected": False},
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
_CHUNK_FILTER = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_FILTERED = {"filtered": True, "severity": "high"}
ANSWER = "Why don't elephants use computers? Because they're afraid of the mouse!"
"""What a cut or filtered completion says before it stops."""
_WORDS = re.findall(r"\s*\S+", ANSWER)
_PIECES = ["".join(_WORDS[i : i + 2]) for i in range(0, len(_WORDS), 2)]
"""The answer as a stream carries it: words two by two."""
FILTER_SHAPES = ("no_message", "role_only", "partial")
"""How a choice the content filter cut comes (each seen from the real service): no ``message``
key at all (in a stream, a last chunk with no ``delta``); ``message: {"role": "assistant"}``
only; or the message with what was written before the cut (both with ``delta: {}``)."""
RATE_LIMIT_CODES = ("RateLimitReached", "429")
"""A 429's ``error.code``: newer resources say ``RateLimitReached``, older ones ``"429"``."""


def rate_limited_body(
    deployment: str, api_version: str, retry_after: int, code: str = "RateLimitReached"
) -> dict[str, Any]:
    """Azure's 429 body for the tokens-per-minute limit, in the newer (``RateLimitReached``)
    or the older (``"429"``) form."""
    if code == "429":
        return {
            "error": {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                f"version {api_version} have exceeded token rate limit of your current OpenAI S0 pricing "
                f"tier. Please retry after {retry_after} seconds. Please go here: "
                "https://aka.ms/oai/quotaincrease if you would like to further increase the default "
                "rate limit.",
            }
        }
    return {
        "error": {
            "code": "RateLimitReached",
            "message": f"Your requests to {deployment} for {deployment} in {REGION} have exceeded the token "
            "rate limit for your current OpenAI S0 pricing tier. This request was for ChatCompletions_Create "
            f"under Azure OpenAI API version {api_version}. Please retry after {retry_after} seconds. "
            "To increase your default rate limit, visit: https://aka.ms/oai/quotaincrease.",
        }
    }


def server_error_body(status: int) -> dict[str, Any]:
    """Azure's 500 and 503 bodies."""
    if status == 503:
        return {
            "error": {
                "code": "ServiceUnavailable",
                "message": "The service is temporarily unable to process your request. "
                "Please try again later.",
            }
        }
    return {
        "error": {
            "message": "The server had an error processing your request. Sorry about that! You can "
            "retry your request, or contact us through an Azure support request at: "
            "https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def content_filtered_body() -> dict[str, Any]:
    """Azure's 400 when the prompt trips the content filter (violence, medium)."""
    verdict = copy.deepcopy(_PROMPT_FILTER)
    verdict["violence"] = {"filtered": True, "severity": "medium"}
    return {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry. To learn more about our content "
            "filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": verdict},
        }
    }


def prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": copy.deepcopy(_PROMPT_FILTER)}]


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:29]


def completion_body(deployment: str, filter_shape: str | None) -> dict[str, Any]:
    """A ``chat.completion``: the whole answer, or (``filter_shape``, one of ``FILTER_SHAPES``)
    a choice the content filter cut."""
    verdict = copy.deepcopy(_CHUNK_FILTER)
    verdict.update({"protected_material_code": {"filtered": False, "detected": False},
                    "protected_material_text": {"filtered": False, "detected": False}})
    content = "".join(_PIECES[: len(_PIECES) // 2]) if filter_shape else ANSWER
    choice: dict[str, Any] = {
        "content_filter_results": verdict,
        "finish_reason": "stop",
        "index": 0,
        "logprobs": None,
        "message": {"annotations": [], "content": content, "refusal": None, "role": "assistant"},
    }
    if filter_shape:
        verdict["violence"] = dict(_FILTERED)
        choice["finish_reason"] = "content_filter"
        if filter_shape == "no_message":
            del choice["message"]
        elif filter_shape == "role_only":
            choice["message"] = {"role": "assistant"}
    return {
        "choices": [choice],
        "created": 0,
        "id": completion_id(),
        "model": deployment,
        "object": "chat.completion",
        "prompt_filter_results": prompt_filter_results(),
        "system_fingerprint": None,
        "usage": {"completion_tokens": 8 if filter_shape else 16, "prompt_tokens": 0, "total_tokens": 0},
    }


def stream_events(deployment: str, filter_shape: str | None) -> list[dict[str, Any]]:
    """Azure's stream: the prompt filter event, the role, words two by two, the finish (or,
    with ``filter_shape``, half the words and the content filter's cut)."""
    stream_id = completion_id()

    def event(delta: dict[str, Any], verdict: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "choices": [
                {
                    "content_filter_results": copy.deepcopy(verdict),
                    "delta": delta,
                    "finish_reason": finish,
                    "index": 0,
                    "logprobs": None,
                }
            ],
            "created": 0,
            "id": stream_id,
            "model": deployment,
            "object": "chat.completion.chunk",
            "system_fingerprint": None,
        }

    events: list[dict[str, Any]] = [
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": prompt_filter_results(),
        },
        event({"content": "", "refusal": None, "role": "assistant"}, {}, None),
    ]
    for piece in _PIECES[: len(_PIECES) // 2] if filter_shape else _PIECES:
        events.append(event({"content": piece}, _CHUNK_FILTER, None))
    if filter_shape:
        verdict = copy.deepcopy(_CHUNK_FILTER)
        verdict["violence"] = dict(_FILTERED)
        events.append(event({}, verdict, "content_filter"))
        if filter_shape == "no_message":
            del events[-1]["choices"][0]["delta"]
    else:
        events.append(event({}, {}, "stop"))
    return events
