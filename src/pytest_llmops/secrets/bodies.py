"""Scrubbing structured content: JSON (at any depth, also JSON inside JSON strings), form
bodies, multipart/form-data bodies and binary bodies.

Two passes, in this order, wherever something is scrubbed: :func:`redact_tree` (and its
form and multipart siblings) replaces the values of secret-named fields by ``<redacted>``
and identities by their placeholders, and makes each value it replaced known
(:class:`~pytest_llmops.secrets.known.KnownSecrets`); :func:`clean_tree` then replaces
every known value in every string that is left, so that a value redacted in one field is
gone from every other place too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from pytest_llmops.secrets import identities
from pytest_llmops.secrets.known import REDACTED, KnownSecrets

Scrub = Callable[[str], str]
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
_PART_NAME = re.compile(rb"""\bname\s*=\s*(?:"([^"]*)"|([^;\s]+))""", re.IGNORECASE)


def _nested(text: str) -> Any:
    """The JSON value a string holds (MLflow stores span inputs and outputs as JSON text),
    else None."""
    head = text.lstrip()[:1]
    if head not in ("{", "[", '"'):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def redact_tree(
    node: Any,
    keys: Collection[str],
    known: KnownSecrets,
    *,
    scopes: Mapping[str, Collection[str]] | None = None,
    nested: bool = False,
) -> tuple[Any, bool]:
    """``node`` with secret-named fields (``keys``, lower case) redacted and identities
    replaced; whether anything changed. ``scopes`` names fields whose children follow other
    rules (``{"extra_headers": header names}``); with ``nested``, strings holding JSON are
    scrubbed inside."""
    if isinstance(node, dict):
        changed = False
        result: dict[Any, Any] = {}
        for key, value in node.items():
            name = key.lower() if isinstance(key, str) else ""
            if name in keys and _scalar(value) and value != REDACTED:
                known.learn(str(value))
                result[key], changed = REDACTED, True
            elif identities.is_identity_field(name) and isinstance(value, str) and value:
                result[key] = _identity(value, known)
                changed = changed or result[key] != value
            elif name in identities.IDENTITY_LISTS and isinstance(value, list):
                result[key], sub = _identity_list(value, known)
                changed = changed or sub
            else:
                child_keys = scopes.get(name, keys) if scopes else keys
                result[key], sub = redact_tree(value, child_keys, known, scopes=scopes, nested=nested)
                changed = changed or sub
        return (result, True) if changed else (node, False)
    if isinstance(node, list):
        items = [redact_tree(item, keys, known, scopes=scopes, nested=nested) for item in node]
        return ([item for item, _ in items], True) if any(sub for _, sub in items) else (node, False)
    if nested and isinstance(node, str):
        inner = _nested(node)
        if isinstance(inner, (dict, list)):
            cleaned, changed = redact_tree(inner, keys, known, scopes=scopes, nested=nested)
            if changed:
                return _dump(cleaned), True
    return node, False


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _identity(value: str, known: KnownSecrets) -> str:
    if not value or not identities.is_identity(value) or identities.is_placeholder(value):
        return value
    placeholder = identities.placeholder(value)
    known.add_identity(value, placeholder)
    return placeholder


def _identity_list(items: list[Any], known: KnownSecrets) -> tuple[list[Any], bool]:
    changed = False
    result = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            replaced = _identity(item["value"], known)
            if replaced != item["value"]:
                item, changed = {**item, "value": replaced}, True
        result.append(item)
    return result, changed


def clean_tree(node: Any, scrub: Scrub, *, nested: bool = False) -> tuple[Any, bool]:
    """``node`` with ``scrub`` applied to every string (keys included); whether anything
    changed. With ``nested``, strings holding JSON are cleaned inside and dumped again."""
    if isinstance(node, str):
        if nested:
            inner = _nested(node)
            if inner is not None:
                cleaned, changed = clean_tree(inner, scrub, nested=True)
                return (_dump(cleaned), True) if changed else (node, False)
        cleaned_text = scrub(node)
        return cleaned_text, cleaned_text != node
    if isinstance(node, dict):
        pairs = [(clean_tree(k, scrub), clean_tree(v, scrub, nested=nested)) for k, v in node.items()]
        if any(kc or vc for (_, kc), (_, vc) in pairs):
            return {k: v for (k, _), (v, _) in pairs}, True
        return node, False
    if isinstance(node, list):
        items = [clean_tree(item, scrub, nested=nested) for item in node]
        return ([item for item, _ in items], True) if any(sub for _, sub in items) else (node, False)
    return node, False


def scrub_json_text(text: str, keys: Collection[str], known: KnownSecrets, scrub: Scrub) -> str | None:
    """A JSON body scrubbed (re-serialised compactly when anything changed), or None when
    ``text`` is not JSON."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    data, redacted = redact_tree(data, keys, known)
    data, cleaned = clean_tree(data, scrub)
    return json.dumps(data, separators=(",", ":")) if redacted or cleaned else text


def redact_pairs(
    pairs: list[tuple[str, str]], keys: Collection[str], known: KnownSecrets
) -> list[tuple[str, str]] | None:
    """Query or form pairs with secret-named values redacted (None when none is)."""
    if not any(key.lower() in keys and value != REDACTED for key, value in pairs):
        return None
    result = []
    for key, value in pairs:
        if key.lower() in keys and value != REDACTED:
            known.learn(value)
            value = REDACTED
        result.append((key, value))
    return result


def redact_form(text: str, keys: Collection[str], known: KnownSecrets) -> str:
    """An ``application/x-www-form-urlencoded`` body with secret-named fields redacted."""
    pairs = redact_pairs(parse_qsl(text, keep_blank_values=True), keys, known)
    return text if pairs is None else urlencode(pairs)


def redact_multipart(body: bytes, content_type: str, keys: Collection[str], known: KnownSecrets) -> bytes:
    """A ``multipart/form-data`` body with the content of secret-named parts redacted."""
    found = _BOUNDARY.search(content_type)
    if not found:
        return body
    delimiter = b"--" + (found.group(1) or found.group(2)).encode("latin-1")
    parts = body.split(delimiter)
    changed = False
    for index in range(1, len(parts)):
        part = parts[index]
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            head, separator, content = part.partition(b"\n\n")
        name = _PART_NAME.search(head) if separator else None
        if name is None:
            continue
        field = (name.group(1) if name.group(1) is not None else name.group(2)).decode("utf-8", "replace")
        if field.lower() not in keys:
            continue
        ending = b"\r\n" if content.endswith(b"\r\n") else b"\n" if content.endswith(b"\n") else b""
        value = content[: len(content) - len(ending)]
        if value and value != REDACTED.encode():
            known.learn(value)
            parts[index] = head + separator + REDACTED.encode() + ending
            changed = True
    return delimiter.join(parts) if changed else body
