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
    judged = judge_answer(body, user_text)

    # A tool result after the last user message: answer with it (the second turn of a tool call).
    if judged is not None:
        content = judged
    elif _last_index(messages, "tool") > last_user:
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


# -- judges ---------------------------------------------------------------------------------------------
# An LLM judge (MLflow's Guidelines, Safety, make_judge...) asks for a JSON verdict, either with
# ``response_format: json_schema`` (structured outputs) or with the JSON template in its prompt.
# The real model answers a JSON object: ``{"rationale": "Let's think step by step. ...", "result":
# "yes"}``, raw (no markdown), as the prompts ask. The double judges a few kinds of guideline the
# way a reader would (is it a joke, is it about animals, does it mention a quoted word, is it in
# another language) and says yes to the rest; content is safe unless it holds violent words.

_ANIMALS = re.compile(
    r"\b(?:animals?|elephants?|mouse|mice|cats?|dogs?|cows?|birds?|fish|lions?|tigers?|bears?|monkeys?|"
    r"horses?|ducks?|penguins?|otters?|herons?|badgers?|owls?|frogs?|rabbits?|sheep|goats?|pigs?|"
    r"chickens?|giraffes?|zebras?|kangaroos?|koalas?|snakes?|whales?|dolphins?|sharks?|bees?)\b"
)
_LANGUAGES = ("french", "spanish", "german", "italian", "portuguese", "chinese", "japanese", "korean")
_UNSAFE = re.compile(r"\b(?:kill|murder|bomb|weapon|attack|hate|suicide|poison)\w*\b")
_QUOTED = re.compile(r"(?<!\w)[\"'\u201c\u2018]([^\"'\u201d\u2019]{2,40})[\"'\u201d\u2019](?!\w)")


def _tag(prompt: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"<{name}>(.*?)</{name}>", prompt, flags=re.DOTALL)]


def _is_joke(text: str) -> bool:
    lowered = text.lower()
    return ("?" in text and ("because" in lowered or "!" in text)) or "joke" in lowered


def _meets(guideline: str, response: str) -> tuple[bool, str]:
    """Whether ``response`` meets one guideline, and why."""
    wanted = guideline.lower()
    lowered = response.lower()
    reasons: list[str] = []
    met = True
    if "joke" in wanted:
        joke = _is_joke(response)
        met &= joke
        reasons.append("it is a joke: a question and its punchline" if joke else "it is not a joke")
    if "animal" in wanted:
        found = _ANIMALS.search(lowered)
        met &= found is not None
        reasons.append(f"it is about animals ({found.group(0)})" if found else "it mentions no animal")
    for language in _LANGUAGES:
        if language in wanted:
            met = False
            reasons.append(f"it is written in English, not {language.capitalize()}")
    for term in _QUOTED.findall(guideline):
        present = term.lower() in lowered
        met &= present
        reasons.append(f"it {'mentions' if present else 'does not mention'} \"{term}\"")
    if not reasons:
        reasons.append("nothing in it goes against the guideline")
    return met, "; ".join(reasons)


def _verdict(prompt: str) -> tuple[bool, str]:
    """The judge's decision on a judge prompt, and its rationale."""
    guidelines = _tag(prompt, "guideline")
    if guidelines:
        response = " ".join(_tag(prompt, "response")) or prompt
        checks = [(g, *_meets(g, response)) for g in guidelines]
        failed = [(g, why) for g, ok, why in checks if not ok]
        if failed:
            said = "; ".join(f'the guideline "{g}" is not met: {why}' for g, why in failed)
            return False, f"Let's think step by step. {said[0].upper()}{said[1:]}."
        said = "; ".join(f'"{g}": {why}' for g, _, why in checks)
        return True, f"Let's think step by step. The response meets every guideline. {said}."
    if "safety" in prompt.lower() or "<text>" in prompt:
        text = " ".join(_tag(prompt, "text")) or prompt
        harmful = _UNSAFE.search(text.lower())
        if harmful:
            return False, f"Let's think step by step. The text speaks of \"{harmful.group(0)}\": it violates the policy."
        return True, "Let's think step by step. The text holds no hate, harassment, violence or harmful acts: it is safe."
    return True, "Let's think step by step. The response does what the instructions ask."


def judge_answer(body: dict[str, Any], prompt: str) -> str | None:
    """The JSON verdict for a judge's request, or None when the request is no judge's."""
    response_format = body.get("response_format") or {}
    schema = None
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
    elif not ('"rationale"' in prompt and '"result"' in prompt):
        return None
    result, rationale = _verdict(prompt)
    answer: dict[str, Any] = {"rationale": rationale, "result": "yes" if result else "no"}
    if schema is None:
        return json.dumps(answer, indent=2)
    properties = schema.get("properties") or {}
    shaped = {
        name: answer.get(name, answer_text(prompt) if spec.get("type", "string") == "string" else None)
        for name, spec in properties.items()
    }
    return json.dumps(shaped or answer)
