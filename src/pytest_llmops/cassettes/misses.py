"""The error a replay miss raises: the request, the cassette, and the nearest recording
with the fields that differ."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_llmops.cassettes.advice import record_command
from pytest_llmops.cassettes.matching import nearest
from pytest_llmops.errors import ReplayMiss

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette


def explain(cassette: Cassette, request: Any, prepared: Any) -> ReplayMiss:
    """The error for a request ``cassette`` has no recording for."""
    shown = prepared if prepared is not None else request
    line = f"{shown.method} {shown.uri}"
    body = matching_preview(shown)
    lines = [
        f"ReplayMiss: {cassette.nodeid} made a request that its cassette has no recording for.",
        "",
        f"  {line}",
    ]
    if body:
        lines.append(f"  body: {body}")
    lines.append("")
    if not cassette.exists:
        lines.append(f"The cassette {cassette.path} does not exist: this test was never recorded.")
    else:
        lines += _nearest(cassette, shown)
    lines += ["", f"To record it: {record_command(cassette.nodeid)}"]
    if cassette.mode == "record" and cassette.exists:
        lines.append(
            "(--llmops-record-mode=missing replays the cassettes that exist; "
            "--llmops-record-mode=new adds the requests they lack)"
        )
    return ReplayMiss("\n".join(lines), nodeid=cassette.nodeid, request=line, cassette=str(cassette.path))


def _nearest(cassette: Cassette, shown: Any) -> list[str]:
    lines = [
        f"Cassette: {cassette.path} ({cassette.recorded} interactions, {cassette.played} played; "
        f"matching on {', '.join(cassette.match_on)})"
    ]
    stored = list(enumerate(cassette.stored_requests()))
    found = nearest(((n, r) for n, r in stored if r is not None), shown, cassette.ignored_fields)
    if found is None:
        return lines
    number, near, diff = found
    if not any(diff.get(name) for name in cassette.match_on):
        lines.append(
            f"It matches interaction #{number + 1}, which was already played: the test makes "
            "this request more often than when it was recorded."
        )
        return lines
    lines.append(f"Nearest recorded request, interaction #{number + 1}:")
    lines.append(f"  {near.method} {near.uri}")
    for name in cassette.match_on:
        if diff.get(name):
            lines.append(f"  {name} differs:")
            lines.extend(f"    {text}" for text in diff[name])
        else:
            lines.append(f"  {name}: same")
    return lines


def matching_preview(request: Any, limit: int = 300) -> str:
    """A short preview of a request body for messages."""
    body = request.body_bytes if hasattr(request, "body_bytes") else request.body
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
