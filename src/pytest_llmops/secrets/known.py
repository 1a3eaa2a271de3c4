"""The secret values of a session, and their replacement wherever they appear.

One :class:`KnownSecrets` per pytest session (see :func:`pytest_llmops.secrets.of`): the
values of the secret environment variables, the values the user adds, and every value the
cassette scrubbing redacted by its name (a header, a query or form parameter, a JSON
field): a value redacted in one place is replaced in every other place it appears, in
cassettes, in the MLflow store and in reports. Subscription and tenant ids and user
identities are replaced the same way, each by its own placeholder.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import unquote

from pytest_llmops.secrets import encodings
from pytest_llmops.secrets.index import FormIndex

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
REDACTED = "<redacted>"

SECRET_ENV_VARS = (
    "AZURE_OPENAI_API_KEY",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_PASSWORD",
    "ARM_CLIENT_SECRET",
    "OPENAI_API_KEY",
)
"""Environment variables whose values are scrubbed wherever they appear."""

ID_ENV_VARS = ("AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID", "ARM_SUBSCRIPTION_ID", "ARM_TENANT_ID")
"""Identifiers replaced by the zero GUID."""

MIN_SECRET = 6
"""Shorter values are not scrubbed as text (they would match unrelated text)."""
MIN_LEARNED = 8
"""Shortest value redacted by name that is then replaced everywhere else too."""

Kind = Literal["secret", "id", "identity"]


@dataclass(frozen=True)
class _Entry:
    value: str
    kind: Kind
    replacement: str
    exact: tuple[str, ...]
    cores: tuple[tuple[str, str], ...]  # (base64 core of the value, core of its placeholder)
    probe: str


@dataclass(frozen=True)
class Hit:
    """Where a known value was found in a text (never the value)."""

    start: int
    kind: Kind


class KnownSecrets:
    """Values to replace wherever they appear, in any of their encodings.

    Thread-safe: values may be added from any thread while others scrub.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: tuple[_Entry, ...] = ()
        self._values: dict[str, _Entry] = {}
        self._text = FormIndex()  # exact forms and base64 cores -> replacement
        self._bytes = FormIndex()  # the same as UTF-8 bytes (read as latin-1) -> same-length filler
        self._entry_of_form: dict[str, _Entry] = {}  # exact form -> its value's entry
        self._special = False  # a value holds "/", '"' or a backslash (JSON may escape them)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> KnownSecrets:
        """The secret variables and the ids of an environment."""
        known = cls()
        for name in SECRET_ENV_VARS:
            known.add(environ.get(name), name)
        for name in ID_ENV_VARS:
            known.add_id(environ.get(name))
        return known

    # -- adding values ---------------------------------------------------------------
    def add(self, value: str | None, name: str = "secret") -> None:
        """Replace ``value`` by ``<name>`` wherever it appears (raw, URL-encoded, JSON-escaped,
        inside base64 text)."""
        if value and len(value.strip()) >= MIN_SECRET:
            self._add(value.strip(), "secret", f"<{name}>")

    def learn(self, value: object) -> None:
        """A value redacted by its name somewhere: replace it everywhere else too."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            value = value.strip()
            if len(value) >= MIN_LEARNED and value != REDACTED and not value.startswith("<"):
                self._add(value, "secret", REDACTED)

    def add_id(self, value: str | None) -> None:
        """A subscription or tenant id: replaced by the zero GUID (also inside base64 tokens)."""
        if value and len(value.strip()) >= 8 and value.strip() != ZERO_GUID:
            self._add(value.strip(), "id", ZERO_GUID)

    def add_identity(self, value: str, placeholder: str) -> None:
        """A user's e-mail or object id: replaced by its stable placeholder everywhere."""
        if len(value) >= MIN_SECRET and value != placeholder:
            self._add(value, "identity", placeholder)

    def _add(self, value: str, kind: Kind, replacement: str) -> None:
        if value in self._values:
            return
        raw = value.encode("utf-8")
        filler = encodings.placeholder_bytes(replacement, len(raw))
        cores = tuple(
            (core.decode("ascii"), encodings.replacement_core(filler, offset, urlsafe).decode("ascii"))
            for core, offset, urlsafe in encodings.base64_cores(raw)
        )
        exact = tuple(form for form in encodings.exact_forms(value) if len(form) >= MIN_SECRET)
        entry = _Entry(value, kind, replacement, exact, cores, encodings.probe(value))
        with self._lock:
            if value in self._values:
                return
            for form in exact:
                self._text.add(form, replacement, kind)
                self._entry_of_form.setdefault(form, entry)
            for core, core_replacement in cores:
                self._text.add(core, core_replacement, kind)
            for form in (*exact, *(core for core, _ in cores)):
                encoded = form.encode("utf-8")
                filler_form = encodings.placeholder_bytes(replacement, len(encoded))
                self._bytes.add(encoded.decode("latin-1"), filler_form.decode("latin-1"), kind)
            self._values[value] = entry
            self._special = self._special or any(c in value for c in '/"\\')
            # Longest first (a value inside another is replaced after it): insert in order.
            at = bisect.bisect_left(self._entries, -len(value), key=lambda e: -len(e.value))
            self._entries = (*self._entries[:at], entry, *self._entries[at:])

    # -- reading ---------------------------------------------------------------------
    def values(self, kind: Kind | None = None) -> list[str]:
        """The exact values known (of one kind)."""
        return [e.value for e in self._entries if kind is None or e.kind == kind]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def merge(self, other: KnownSecrets) -> None:
        """Add every value ``other`` knows (with its replacement)."""
        for entry in other._entries:
            self._add(entry.value, entry.kind, entry.replacement)

    # -- scrubbing -------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` with every known value, in any of its forms, replaced."""
        entries = self._entries
        if not entries or not text:
            return text
        text = self._text.sub(text)
        for entry in self._escaped(text):
            text = encodings.escaped_pattern(entry.value).sub(entry.replacement, text)
        for _entry, core, replacement in self._wrapped(text):
            text = encodings.wrapped_pattern(core).sub(replacement, text)
        return text

    def scrub_bytes(self, data: bytes) -> bytes:
        """A binary body with every known value replaced by a placeholder of the same length
        (its raw UTF-8 bytes and their URL-encoded, JSON-escaped and base64 forms)."""
        if not self._entries or not data:
            return data
        return self._bytes.sub(data.decode("latin-1")).encode("latin-1")

    def find(self, text: str) -> Iterator[Hit]:
        """Where known values appear in ``text``, in any form (for the scanner)."""
        entries = self._entries
        if not entries or not text:
            return
        values = self._text.values
        for start, form in self._text.matches(text):
            yield Hit(start, cast(Kind, values[form][1]))
        for entry in self._escaped(text):
            for match in encodings.escaped_pattern(entry.value).finditer(text):
                yield Hit(match.start(), entry.kind)
        for entry, core, _ in self._wrapped(text):
            for match in encodings.wrapped_pattern(core).finditer(text):
                yield Hit(match.start(), entry.kind)

    def _escaped(self, text: str) -> list[_Entry]:
        """The entries that may be in ``text`` with escapes (JSON ``\\u``, percent-encoding,
        in any mix): found by their raw forms in the text with its escapes undone."""
        plain = self._special and _PLAIN_ESCAPE.search(text) is not None
        if not plain and not _ESCAPE.search(text):
            return []
        unescaped = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
        if plain:  # a value with "/", '"' or "\\" may be written with "\\/" ...
            unescaped = _PLAIN_ESCAPE.sub(lambda m: m.group(1), unescaped)
        unescaped = unquote(unescaped)
        entries = {self._entry_of_form[form].value: self._entry_of_form[form]
                   for _, form in self._text.matches(unescaped) if form in self._entry_of_form}
        return sorted(entries.values(), key=lambda entry: -len(entry.value))

    def _wrapped(self, text: str) -> list[tuple[_Entry, str, str]]:
        """The base64 cores that may be in ``text`` broken over lines: looked for only in the
        wrapped blocks of the text, with their line breaks taken out."""
        if "\n" not in text and "\r" not in text and "\\n" not in text:
            return []  # wrapping breaks lines
        blocks = [_LINE_BREAK.sub("", block.group()) for block in _WRAPPED_BLOCK.finditer(text)]
        if not blocks:
            return []
        joined = "\n".join(blocks)
        found = {form for _, form in self._text.matches(joined)}
        return [
            (entry, core, replacement)
            for entry in self._entries
            for core, replacement in entry.cores
            if core in found
        ]


_ESCAPE = re.compile(r"\\+u[0-9a-fA-F]{4}|%[0-9a-fA-F]{2}")
_JSON_ESCAPE = re.compile(r"\\+u([0-9a-fA-F]{4})")
_PLAIN_ESCAPE = re.compile(r"\\+([/\"\\\\])")
_WRAPPED_BLOCK = re.compile(
    r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/=_-]{8,}+(?:(?:\s|\\[nr])++[A-Za-z0-9+/=_-]++)+"
)
"""Base64-looking text broken by line breaks (whitespace or ``\\n`` escapes). Each run of
base64 characters is tried once, from its start, without backtracking into it: linear in
the text (a report with an embedded image is one run of hundreds of kilobytes)."""
_LINE_BREAK = re.compile(r"(?:\s|\\[nr])+")
