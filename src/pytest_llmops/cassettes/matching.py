"""LLM-aware request matching.

A request's *key* is what two requests must share to match: method, host and path with
placeholders (a deployment name does not matter: the body names the model), the sorted
query, and the body compared semantically (JSON with key order and volatile fields
ignored, form bodies as sorted pairs). Keys are hashable, so a cassette finds the
recordings of a request in O(1); identical requests are played in recorded order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

DEFAULT_IGNORED_BODY_FIELDS = frozenset({"RemoveAfter", "LLMOpsSession", "idempotency_token"})
"""JSON keys whose values differ between runs by design (resource tags, idempotency tokens)."""

FIELDS = ("method", "host", "path", "query", "body")

_DEPLOYMENT = re.compile(r"/openai/deployments/[^/]+/")
_SLASHES = re.compile(r"/{2,}")

Key = tuple[str, str, str, tuple[tuple[str, str], ...], Any]


def normalize_path(path: str) -> str:
    """``//openai/deployments/my-gpt/chat`` -> ``/openai/deployments/<deployment>/chat``."""
    path = _SLASHES.sub("/", path or "/")
    return _DEPLOYMENT.sub("/openai/deployments/<deployment>/", path)


def _freeze(node: Any, ignored: frozenset[str]) -> Any:
    if isinstance(node, dict):
        return tuple(sorted((k, _freeze(v, ignored)) for k, v in node.items() if k not in ignored))
    if isinstance(node, list):
        return tuple(_freeze(v, ignored) for v in node)
    return node


def _body_bytes(request: Any) -> bytes:
    body = request.body_bytes if hasattr(request, "body_bytes") else request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body) if isinstance(body, (bytes, bytearray)) else str(body).encode("utf-8")


def parse_body(request: Any) -> Any:
    """The body as data: parsed JSON, sorted form pairs, or the raw bytes."""
    raw = _body_bytes(request)
    if not raw:
        return None
    head = raw[:1]
    if head in (b"{", b"[") or raw.lstrip()[:1] in (b"{", b"["):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    content_type = str(request.headers.get("content-type", "") or "").lower()
    if "x-www-form-urlencoded" in content_type:
        try:
            return {"form": sorted(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))}
        except UnicodeDecodeError:
            return raw
    return raw


def request_key(request: Any, ignored: frozenset[str] = DEFAULT_IGNORED_BODY_FIELDS) -> Key:
    """The matching key of a (scrubbed) vcrpy request."""
    parsed = request.parsed_uri
    query = tuple(sorted(parse_qsl(parsed.query, keep_blank_values=True)))
    return (
        str(request.method).upper(),
        (parsed.hostname or "").lower(),
        normalize_path(parsed.path),
        query,
        _freeze(parse_body(request), ignored),
    )


# -- explaining a miss ---------------------------------------------------------------
def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


WINDOW = 40
"""Characters shown on each side of the first difference of two long strings."""


def _window(text: str, start: int, end: int) -> str:
    shown = json.dumps(text[max(0, start):end], ensure_ascii=False)[1:-1]
    return f"{'…' if start > 0 else ''}{shown}{'…' if end < len(text) else ''}"


def difference(recorded: Any, sent: Any, limit: int = 120) -> str:
    """``recorded X != sent Y``; for long strings, a window around their first difference
    and its offset, so that two long prompts do not look equal."""
    if isinstance(recorded, bytes) and isinstance(sent, bytes):
        recorded, sent = recorded.decode("utf-8", "replace"), sent.decode("utf-8", "replace")
    if not (isinstance(recorded, str) and isinstance(sent, str)) or max(len(recorded), len(sent)) <= limit:
        return f"recorded {_short(recorded)} != sent {_short(sent)}"
    offset = next((i for i, (a, b) in enumerate(zip(recorded, sent, strict=False)) if a != b),
                  min(len(recorded), len(sent)))
    start, end = offset - WINDOW, offset + WINDOW
    return (
        f"first difference at character {offset} (recorded {len(recorded)} characters, sent {len(sent)}): "
        f'recorded "{_window(recorded, start, end)}" != sent "{_window(sent, start, end)}"'
    )


def json_diff(recorded: Any, sent: Any, path: str = "", limit: int = 12) -> list[str]:
    """Field-by-field differences between two JSON values, as readable lines."""
    lines: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(lines) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in list(a) + [k for k in b if k not in a]:
                sub = f"{where}.{key}" if where else str(key)
                if key not in b:
                    lines.append(f"{sub}: recorded {_short(a[key])}, not sent")
                elif key not in a:
                    lines.append(f"{sub}: sent {_short(b[key])}, not recorded")
                else:
                    walk(a[key], b[key], sub)
        elif isinstance(a, list) and isinstance(b, list):
            for index in range(max(len(a), len(b))):
                sub = f"{where}[{index}]"
                if index >= len(b):
                    lines.append(f"{sub}: recorded {_short(a[index])}, not sent")
                elif index >= len(a):
                    lines.append(f"{sub}: sent {_short(b[index])}, not recorded")
                else:
                    walk(a[index], b[index], sub)
        elif a != b:
            lines.append(f"{where or 'body'}: {difference(a, b)}")

    walk(recorded, sent, path)
    return lines


def compare(recorded: Any, sent: Any, ignored: frozenset[str]) -> dict[str, list[str]]:
    """Per field of :data:`FIELDS`, the differences between two scrubbed requests (empty
    when the field matches)."""
    a, b = request_key(recorded, ignored), request_key(sent, ignored)
    result: dict[str, list[str]] = {}
    for index, name in enumerate(FIELDS):
        if a[index] == b[index]:
            result[name] = []
        elif name == "body":
            ra, rb = parse_body(recorded), parse_body(sent)
            if isinstance(ra, (dict, list)) and isinstance(rb, (dict, list)):
                result[name] = json_diff(ra, rb) or ["differs (in ignored fields only?)"]
            else:
                result[name] = [difference(ra, rb)]
        elif name == "query":
            result[name] = [f"recorded {dict(a[3])} != sent {dict(b[3])}"]
        else:
            result[name] = [f"recorded {a[index]!r} != sent {b[index]!r}"]
    return result


def nearest(
    recorded: Iterable[tuple[int, Any]], sent: Any, ignored: frozenset[str]
) -> tuple[int, Any, dict[str, list[str]]] | None:
    """The recorded request closest to ``sent``: most matching fields, earliest first."""
    best: tuple[int, int, Any, dict[str, list[str]]] | None = None
    for index, request in recorded:
        diff = compare(request, sent, ignored)
        score = sum(1 for lines in diff.values() if not lines)
        if best is None or score > best[0]:
            best = (score, index, request, diff)
    return None if best is None else best[1:]
