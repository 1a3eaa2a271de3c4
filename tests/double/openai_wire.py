"""Azure OpenAI wire formats: completion bodies, stream chunks and error bodies.

Shapes follow real Azure OpenAI traffic (see ``shared/realworld/crewai`` and ``dd-trace-py``):
``content_filter_results`` per choice, ``prompt_filter_results`` at the top (in the first,
choice-less chunk of a stream), ``usage`` with the token details objects.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .openai_content import Completion

_SAFE = {"filtered": False, "severity": "safe"}
_NOT_DETECTED = {"filtered": False, "detected": False}
_PROMPT_FILTER = {
    "hate": _SAFE,
    "jailbreak": _NOT_DETECTED,
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
_COMPLETION_FILTER = {
    "hate": _SAFE,
    "protected_material_code": _NOT_DETECTED,
    "protected_material_text": _NOT_DETECTED,
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
# Streamed content chunks carry the four harm categories only.
_CHUNK_FILTER = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_FILTERED = {"filtered": True, "severity": "high"}

FILTER_SHAPES = ("no_message", "role_only", "partial")
"""How a choice cut by the content filter comes (``finish_reason: content_filter``), each seen
from the real service: with no ``message`` key at all (a stream's last chunk with no
``delta``), with ``message: {"role": "assistant"}`` only, or with the text written before
the cut (both with ``delta: {}`` in a stream)."""
RATE_LIMIT_CODES = ("RateLimitReached", "429")
"""The ``error.code`` of a 429: newer resources say ``RateLimitReached``, older ones ``"429"``."""

_WORDS_PER_CHUNK = 2
_ARGUMENT_CHARS_PER_CHUNK = 8


def prompt_filter_results() -> list[dict[str, Any]]:
    """The prompt's content filter verdict: everything safe."""
    return [{"prompt_index": 0, "content_filter_results": copy.deepcopy(_PROMPT_FILTER)}]


def usage(completion: Completion) -> dict[str, Any]:
    """The ``usage`` object with Azure's detail sub-objects."""
    return {
        "completion_tokens": completion.completion_tokens,
        "completion_tokens_details": {
            "accepted_prediction_tokens": 0,
            "audio_tokens": 0,
            "reasoning_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        "prompt_tokens": completion.prompt_tokens,
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def _tool_calls(completion: Completion) -> list[dict[str, Any]]:
    return [
        {"function": {"arguments": c.arguments, "name": c.name}, "id": c.id, "type": "function"}
        for c in completion.tool_calls
    ]


def _verdict(filters: dict[str, Any], filtered: bool) -> dict[str, Any]:
    verdict = copy.deepcopy(filters)
    if filtered:
        verdict["violence"] = dict(_FILTERED)
    return verdict


def completion_payload(
    completion: Completion,
    completion_id: str,
    model: str,
    created: int,
    fingerprint: str,
    filter_shape: str | None = None,
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` body; ``filter_shape`` (one of ``FILTER_SHAPES``):
    the completion was cut by the content filter, and its choice comes in that shape."""
    message: dict[str, Any] = {
        "annotations": [],
        "content": completion.content,
        "refusal": None,
        "role": "assistant",
    }
    if completion.tool_calls:
        message["tool_calls"] = _tool_calls(completion)
    # Azure reports no completion filter verdict for tool calls (empty object).
    filters = {} if completion.tool_calls else _verdict(_COMPLETION_FILTER, filter_shape is not None)
    choice: dict[str, Any] = {
        "content_filter_results": filters,
        "finish_reason": "content_filter" if filter_shape else completion.finish_reason,
        "index": 0,
        "logprobs": None,
        "message": message,
    }
    if filter_shape == "no_message":
        del choice["message"]
    elif filter_shape == "role_only":
        choice["message"] = {"role": "assistant"}
    return {
        "choices": [choice],
        "created": created,
        "id": completion_id,
        "model": model,
        "object": "chat.completion",
        "prompt_filter_results": prompt_filter_results(),
        "system_fingerprint": fingerprint,
        "usage": usage(completion),
    }


def _split_words(text: str) -> list[str]:
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail:
        pieces.append(tail)
    return ["".join(pieces[i : i + _WORDS_PER_CHUNK]) for i in range(0, len(pieces), _WORDS_PER_CHUNK)]


def stream_chunks(
    completion: Completion,
    completion_id: str,
    model: str,
    created: int,
    fingerprint: str,
    include_usage: bool,
    filter_shape: str | None = None,
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a stream, in order (without ``[DONE]``);
    ``filter_shape``: the content filter cut it (``"no_message"``: its last chunk has no ``delta``)."""

    def chunk(delta: dict[str, Any], filters: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "choices": [
                {
                    "content_filter_results": copy.deepcopy(filters),
                    "delta": delta,
                    "finish_reason": finish_reason,
                    "index": 0,
                    "logprobs": None,
                }
            ],
            "created": created,
            "id": completion_id,
            "model": model,
            "object": "chat.completion.chunk",
            "system_fingerprint": fingerprint,
        }
        if include_usage:
            body["usage"] = None  # present, null, on every chunk but the usage chunk
        return body

    # Azure's first event has no choices, blank ids and the prompt filter verdict.
    chunks: list[dict[str, Any]] = [
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": prompt_filter_results(),
        }
    ]
    if completion.tool_calls:
        first = [
            {"function": {"arguments": "", "name": c.name}, "id": c.id, "index": i, "type": "function"}
            for i, c in enumerate(completion.tool_calls)
        ]
        role_delta = {"content": None, "refusal": None, "role": "assistant", "tool_calls": first}
        chunks.append(chunk(role_delta, {}, None))
        for index, call in enumerate(completion.tool_calls):
            args = call.arguments
            for start in range(0, len(args), _ARGUMENT_CHARS_PER_CHUNK):
                fragment = args[start : start + _ARGUMENT_CHARS_PER_CHUNK]
                delta = {"tool_calls": [{"function": {"arguments": fragment}, "index": index}]}
                chunks.append(chunk(delta, {}, None))
    else:
        chunks.append(chunk({"content": "", "refusal": None, "role": "assistant"}, {}, None))
        for piece in _split_words(completion.content or ""):
            chunks.append(chunk({"content": piece}, _CHUNK_FILTER, None))
    if filter_shape is None:
        chunks.append(chunk({}, {}, completion.finish_reason))
    else:
        cut = chunk({}, _verdict(_CHUNK_FILTER, True), "content_filter")
        if filter_shape == "no_message":
            del cut["choices"][0]["delta"]
        chunks.append(cut)
    if include_usage:
        last = chunk({}, {}, None)
        last["choices"] = []
        last["usage"] = usage(completion)
        chunks.append(last)
    return chunks


# -- error bodies ----------------------------------------------------------------------------

INVALID_KEY_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your resource."
)
INVALID_TOKEN_MESSAGE = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect "
    "(https://cognitiveservices.azure.com), or have expired."
)


def azure_error(code: str, message: str) -> dict[str, Any]:
    """Azure's gateway error shape: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": code, "message": message}}


def openai_error(message: str, type_: str | None, param: str | None, code: str | None) -> dict[str, Any]:
    """The model service's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


STRUCTURED_OUTPUTS_SINCE = "2024-08-01-preview"


def structured_outputs_too_early() -> dict[str, Any]:
    """400 for ``response_format: {"type": "json_schema"}`` under an API version before
    2024-08-01-preview: Azure's own error shape and code, as clients report it (the SDKs raise
    it as a BadRequest with exactly this message)."""
    return azure_error(
        "BadRequest",
        f"response_format value as json_schema is enabled only for api versions {STRUCTURED_OUTPUTS_SINCE} and later",
    )


def deployment_not_found() -> dict[str, Any]:
    """404 for a deployment the resource does not have."""
    return azure_error(
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within "
        "the last 5 minutes, please wait a moment and try again.",
    )


def rate_limited(
    deployment: str, region: str, api_version: str, retry_after: int, code: str = "RateLimitReached"
) -> dict[str, Any]:
    """429 for the tokens-per-minute limit, as newer resources (``RateLimitReached``) or older
    ones (``"429"``) say it."""
    if code == "429":
        return azure_error(
            "429",
            f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {api_version} "
            f"have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after "
            f"{retry_after} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to "
            "further increase the default rate limit.",
        )
    return azure_error(
        "RateLimitReached",
        f"Your requests to {deployment} for {deployment} in {region} have exceeded the token rate "
        f"limit for your current OpenAI S0 pricing tier. This request was for ChatCompletions_Create "
        f"under Azure OpenAI API version {api_version}. Please retry after {retry_after} seconds. "
        "To increase your default rate limit, visit: https://aka.ms/oai/quotaincrease.",
    )


def content_filtered() -> dict[str, Any]:
    """400 when the prompt trips the content filter (here: violence, medium)."""
    result = copy.deepcopy(_PROMPT_FILTER)
    result["violence"] = {"filtered": True, "severity": "medium"}
    return {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry. To learn more about our content "
            "filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result},
        }
    }


def server_error(status: int) -> dict[str, Any]:
    """500/503 bodies as the service sends them."""
    if status == 503:
        return azure_error(
            "ServiceUnavailable",
            "The service is temporarily unable to process your request. Please try again later.",
        )
    return openai_error(
        "The server had an error processing your request. Sorry about that! You can retry your request, "
        "or contact us through an Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 "
        "if you keep seeing this error.",
        "server_error",
        None,
        None,
    )
