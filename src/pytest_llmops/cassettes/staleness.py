"""Stale cassettes: in live mode, each live answer is compared with the recorded answer to
the same request. A recording whose finish reason, token counts or text no longer look
like what the service answers today is reported at the end of the session, so it can be
re-recorded before replays drift away from reality.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

import pytest

TOKEN_TOLERANCE = 0.5
"""Relative difference in completion tokens beyond which a recording is stale."""
TEXT_SIMILARITY = 0.25
"""Below this similarity (difflib ratio of the answer texts) a recording is stale."""


@dataclass(frozen=True)
class Answer:
    """What matters in a chat completion answer (plain JSON or SSE stream)."""

    finish_reason: str | None
    completion_tokens: int | None
    text: str


@dataclass(frozen=True)
class Staleness:
    """One request whose recorded answer no longer matches the live one."""

    cassette: str
    request: str
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.cassette}: {self.request}: {'; '.join(self.reasons)}"


def _body(response: dict[str, Any]) -> str:
    body = response.get("body", {})
    raw = body.get("string") if isinstance(body, dict) else None
    if raw is None:
        raw = response.get("content", b"")
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


def answer_of(response: dict[str, Any]) -> Answer | None:
    """The answer in a vcrpy response dict, or None when it is not a chat completion."""
    text = _body(response)
    chunks: list[dict[str, Any]] = []
    try:
        if text.lstrip().startswith("data:"):
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
                    chunks.append(json.loads(line[5:]))
        else:
            chunks.append(json.loads(text))
    except ValueError:
        return None
    finish: str | None = None
    tokens: int | None = None
    parts: list[str] = []
    found = False
    for chunk in chunks:
        if not isinstance(chunk, dict):
            return None
        usage = chunk.get("usage") or {}
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            tokens = int(usage["completion_tokens"])
        for choice in chunk.get("choices") or []:
            found = True
            finish = choice.get("finish_reason") or finish
            message = choice.get("message") or choice.get("delta") or {}
            if isinstance(message, dict) and message.get("content"):
                parts.append(str(message["content"]))
    if not found:
        return None
    return Answer(finish, tokens, "".join(parts))


def compare(recorded: Answer, live: Answer) -> tuple[str, ...]:
    """Why a recorded answer no longer matches the live one (empty: it still does)."""
    reasons = []
    if recorded.finish_reason != live.finish_reason:
        reasons.append(f"finish reason {recorded.finish_reason} -> {live.finish_reason}")
    if recorded.completion_tokens and live.completion_tokens is not None:
        change = abs(live.completion_tokens - recorded.completion_tokens) / recorded.completion_tokens
        if change > TOKEN_TOLERANCE:
            reasons.append(f"completion tokens {recorded.completion_tokens} -> {live.completion_tokens}")
    if recorded.text or live.text:
        similarity = difflib.SequenceMatcher(None, recorded.text, live.text, autojunk=False).ratio()
        if similarity < TEXT_SIMILARITY:
            reasons.append(f"answer text {similarity:.0%} similar")
    return tuple(reasons)


STALE_PROPERTY = "llmops_stale_cassettes"
"""The report property that carries a test's stale recordings (to the xdist controller too)."""


class StaleCassettes:
    """Collects the recordings found stale in live mode (from this process or xdist workers,
    whose reports carry them) and lists them at the end."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == STALE_PROPERTY and isinstance(value, list):
                self.found.extend(str(line) for line in value)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.found:
            return
        terminalreporter.write_sep("-", "llmops: stale cassettes")
        terminalreporter.write_line(
            f"{len(self.found)} recorded answer(s) no longer match the live service; re-record with "
            "`pytest --llmops-record <test>`:"
        )
        for line in self.found:
            terminalreporter.write_line(f"  {line}")
