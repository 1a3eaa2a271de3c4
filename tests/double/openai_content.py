"""What the double's "model" says: deterministic answers, tool calls and token counts.

Everything here is a pure function of the request body, so a test (and a cassette recorded
against the double) sees the same answer for the same messages, on every run.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

ANIMAL_JOKE = "Why don't elephants use computers? Because they're afraid of the mouse!"

# Canned answers, looked up by keywords that must all occur in the last user message.
_CANNED: list[tuple[tuple[str, ...], str]] = [
    (("joke", "animal"), ANIMAL_JOKE),
    (("hello",), "Hello! How can I assist you today?"),
]

_GENERIC = [
    "Here is a short answer from the lab double.",
    "Good question. The lab double answers deterministically.",
    "Let me think about that. The lab double says: it depends.",
    "The lab double has considered your question carefully.",
]

# Each token keeps its leading whitespace so that joining tokens rebuilds the text exactly.
_TOKEN_RE = re.compile(r"\s*(?:\w+|[^\w\s])")
_WORD_RE = re.compile(r"[a-z]+")
_PLACE_RE = re.compile(r"\b(?:in|for|at)\s+([A-Z][\w'-]*(?:,?\s+[A-Z][\w'-]*)*)")
# Words too common to say which tool a user means.
# fmt: off
_STOPWORDS = frozenset({
    "what", "when", "where", "which", "with", "that", "this", "from", "your", "have", "does", "tell",
    "please", "about", "there", "their", "them", "give", "into", "will", "would", "could", "should",
    "like", "know", "some", "than", "then", "also", "just", "make"
})
# fmt: on
_PLACE_PARAMS = frozenset({"city", "location", "place", "town", "country", "region"})
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def count_tokens(text: str) -> int:
    """A deterministic stand-in for tiktoken: words and punctuation marks count one each."""
    return len(_TOKEN_RE.findall(text))


def truncate_tokens(text: str, max_tokens: int) -> str:
    """The first ``max_tokens`` tokens of ``text``, whitespace preserved."""
    return "".join(_TOKEN_RE.findall(text)[:max_tokens])


def stable_id(payload: Any, length: int) -> str:
    """A base62 id of ``length`` characters derived from a JSON-able payload."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose content is a string, a list of parts, or null."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def prompt_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
    """Prompt tokens like the chat format counts them: 3 per message, 3 to prime the reply."""
    total = 3
    for message in messages:
        total += 3 + count_tokens(message_text(message)) + count_tokens(str(message.get("name", "")))
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            total += count_tokens(function.get("name", "")) + count_tokens(function.get("arguments", ""))
    if tools:
        total += count_tokens(json.dumps(tools))
    return total


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asks the client to make."""

    id: str
    name: str
    arguments: str


@dataclass
class Completion:
    """One answer: text or tool calls, why it stopped, and its usage."""

    content: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tool_calls: list[ToolCall] = field(default_factory=list)


def _last_index(messages: list[dict[str, Any]], role: str) -> int:
    return max((i for i, m in enumerate(messages) if m.get("role") == role), default=-1)


def _words(text: str) -> set[str]:
    return {w for w in _WORD_RE.findall(text.lower()) if len(w) > 3 and w not in _STOPWORDS}


def _tool_words(function: dict[str, Any]) -> set[str]:
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", function.get("name", "")).replace("_", " ").replace("-", " ")
    return _words(f"{name} {function.get('description', '')}")


def choose_tool(tools: list[dict[str, Any]], tool_choice: Any, user_text: str) -> dict[str, Any] | None:
    """The function to call: forced by ``tool_choice``, else the one sharing most words with the ask."""
    functions = [t["function"] for t in tools if t.get("type", "function") == "function" and "function" in t]
    if not functions or tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        wanted = tool_choice.get("function", {}).get("name")
        return next((f for f in functions if f.get("name") == wanted), None)
    asked = _words(user_text)
    scored = [(len(asked & _tool_words(f)), -i, f) for i, f in enumerate(functions)]
    best_score, _, best = max(scored, key=lambda item: item[:2])
    chosen: dict[str, Any] | None = best if best_score > 0 or tool_choice == "required" else None
    return chosen


def _argument_value(name: str, schema: dict[str, Any], user_text: str) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    if name.lower() in _PLACE_PARAMS:
        match = _PLACE_RE.search(user_text)
        return match.group(1).rstrip(".?!") if match else "Seattle"
    return user_text[:200]


def tool_arguments(function: dict[str, Any], user_text: str) -> dict[str, Any]:
    """Arguments for every required parameter (all of them when none is marked required)."""
    parameters = function.get("parameters") or {}
    properties: dict[str, Any] = parameters.get("properties") or {}
    required = parameters.get("required") or list(properties)
    return {name: _argument_value(name, properties.get(name, {}), user_text) for name in required}


def _tool_result_answer(messages: list[dict[str, Any]], since: int) -> str:
    names = {
        call.get("id"): call.get("function", {}).get("name", "tool")
        for message in messages
        for call in message.get("tool_calls") or []
    }
    parts = [
        f"The {names.get(m.get('tool_call_id'), 'tool')} tool returned: {message_text(m)}"
        for m in messages[since + 1 :]
        if m.get("role") == "tool"
    ]
    return " ".join(parts)


def answer_text(user_text: str) -> str:
    """The deterministic answer to a user message (no tools involved)."""
    lowered = user_text.lower()
    for keywords, answer in _CANNED:
        if all(k in lowered for k in keywords):
            return answer
    if not user_text.strip():
        return "How can I help you today?"
    index = int(hashlib.sha256(user_text.encode()).hexdigest(), 16) % len(_GENERIC)
    question = user_text.strip().replace("\n", " ")
    question = question if len(question) <= 100 else question[:97] + "..."
    return f'{_GENERIC[index]} You asked: "{question}"'


def complete(body: dict[str, Any]) -> Completion:
    """The answer to a chat completions request body."""
    messages: list[dict[str, Any]] = body["messages"]
    tools: list[dict[str, Any]] = body.get("tools") or []
    prompt = prompt_tokens(messages, tools)
    last_user = _last_index(messages, "user")
    user_text = message_text(messages[last_user]) if last_user >= 0 else ""

    # A tool result after the last user message: answer with it (the second turn of a tool call).
    if _last_index(messages, "tool") > last_user:
        content = _tool_result_answer(messages, last_user)
    else:
        function = choose_tool(tools, body.get("tool_choice"), user_text) if tools else None
        if function is not None:
            arguments = json.dumps(tool_arguments(function, user_text))
            call_id = "call_" + stable_id([messages, function.get("name")], 24)
            call = ToolCall(call_id, function["name"], arguments)
            used = count_tokens(call.name) + count_tokens(arguments)
            return Completion(None, "tool_calls", prompt, used, [call])
        content = answer_text(user_text)

    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish_reason = "stop"
    if isinstance(limit, int) and count_tokens(content) > limit:
        content, finish_reason = truncate_tokens(content, limit), "length"
    return Completion(content, finish_reason, prompt, count_tokens(content))
