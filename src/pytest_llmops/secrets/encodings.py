"""The forms a secret value takes in traffic and files, and patterns that find each of them.

A value is written raw, URL-encoded (``quote``, ``quote_plus``, any hex case), JSON-escaped
(``\\u00fc``, ``\\u002B``, ``\\/``, any mix with raw characters), or inside base64 text
(standard or URL-safe alphabet, at any of the three byte alignments, wrapped at any column).
Exact forms are found with ``str.replace`` (fast); the mixed escapes and the wrapped base64
with regular expressions, run only when a cheap probe says they may match.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from urllib.parse import quote, quote_plus

MIN_CORE = 8
"""Shortest base64 core worth replacing (shorter ones would match unrelated text)."""

_WRAP = r"(?:\s|\\[nr])*"
"""What may separate two base64 characters of a wrapped block: whitespace, or the ``\\n``
escape of a newline inside a quoted string."""


def exact_forms(value: str) -> list[str]:
    """The value raw, URL-encoded and JSON-escaped, without duplicates (longest first)."""
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return sorted(forms, key=len, reverse=True)


def base64_cores(raw: bytes) -> list[tuple[bytes, int, bool]]:
    """``(core, offset, urlsafe)`` for every base64 rendering of ``raw``: at byte offset 0, 1
    and 2 of the text it is part of, in the standard and the URL-safe alphabet. The core is
    the run of characters that depend on ``raw`` alone (its neighbours change the edges)."""
    found: list[tuple[bytes, int, bool]] = []
    for urlsafe in (False, True):
        for offset in range(3):
            core = _core(raw, offset, urlsafe)
            if len(core) >= MIN_CORE and all(core != seen for seen, _, _ in found):
                found.append((core, offset, urlsafe))
    return found


def _core(raw: bytes, offset: int, urlsafe: bool) -> bytes:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(b"\0" * offset + raw)
    return encoded[(4 * offset + 2) // 3 : ((offset + len(raw)) * 4) // 3]


def placeholder_bytes(label: str, length: int) -> bytes:
    """``label`` cut or padded with ``x`` to exactly ``length`` bytes: a replacement that keeps
    lengths (binary formats with length prefixes, base64 tokens) intact."""
    data = label.encode("utf-8")[:length]
    return data + b"x" * (length - len(data))


def replacement_core(placeholder: bytes, offset: int, urlsafe: bool) -> bytes:
    """The base64 core of ``placeholder`` at the alignment of a secret's core it replaces."""
    return _core(placeholder, offset, urlsafe)


def probe(value: str) -> str:
    """The longest run of letters and digits in ``value``: every escaped form of the value
    still contains it literally (escapers leave ASCII letters and digits alone)."""
    runs = re.findall(r"[A-Za-z0-9]+", value)
    return max(runs, key=len) if runs else ""


def _hex(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in text)


def _char(c: str) -> str:
    """Every way one character may be written: raw, JSON escape, percent-encoding (ASCII
    letters and digits are written as themselves by every encoder)."""
    if c.isascii() and c.isalnum():
        return c
    options = [re.escape(c)]
    units = c.encode("utf-16-be")
    escape = "".join(r"\\+u" + _hex(units[i : i + 2].hex()) for i in range(0, len(units), 2))
    options.append(escape)
    options.append("".join("%" + _hex(f"{b:02x}") for b in c.encode("utf-8")))
    if c == " ":
        options.append(r"\+")
    elif c in "/\"\\":
        options.append(r"\\+" + re.escape(c))
    return "(?:" + "|".join(options) + ")"


@functools.lru_cache(maxsize=4096)
def escaped_pattern(value: str) -> re.Pattern[str]:
    """Finds ``value`` written with any mix of raw characters, JSON ``\\uXXXX`` escapes (any
    hex case) and percent-encoding."""
    return re.compile("".join(_char(c) for c in value))


@functools.lru_cache(maxsize=4096)
def wrapped_pattern(core: str) -> re.Pattern[str]:
    """Finds a base64 core broken over lines (whitespace or ``\\n`` between any two characters)."""
    return re.compile(_WRAP.join(re.escape(c) for c in core))
