"""Scrubbing what the plugin writes besides cassettes: MLflow traces, run params and tags,
the session report and drift artifacts.

:class:`RecordScrubber` applies the session's rules to them, with the same known values as
the cassettes (:class:`~pytest_llmops.secrets.known.KnownSecrets`): a trace's spans hold the
call's inputs (``extra_headers``, ``extra_query``, ``extra_body`` and the messages) and
outputs as JSON text, its info a ``request_preview``/``response_preview`` and its metadata
the inputs again. Header, query and JSON field names are redacted as in cassettes, then
every known value is replaced in every string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from pytest_llmops.secrets import bodies, identities
from pytest_llmops.secrets.known import KnownSecrets
from pytest_llmops.secrets.rules import Names

if TYPE_CHECKING:
    from mlflow.entities import Trace


class RecordScrubber:
    """Scrubs traces, params, tags and report text before they are written."""

    def __init__(self, known: KnownSecrets, names: Names | None = None) -> None:
        self.known = known
        self.names = names if names is not None else Names()
        self._names: frozenset[str] = frozenset()
        self._names_pattern = re.compile(r"(?!)")

    def _rules(self) -> tuple[frozenset[str], dict[str, Collection[str]]]:
        """Field names redacted anywhere, and the names of the call's headers and query
        (read each time: ``pytest_llmops_configure`` may add names while tests run)."""
        names = self.names
        keys = frozenset(names.json) | frozenset(names.credential_headers)
        headers = keys | frozenset(names.headers)
        query = keys | frozenset(names.query)
        scopes: dict[str, Collection[str]] = {
            "extra_headers": headers,
            "default_headers": headers,
            "headers": headers,
            "extra_query": query,
            "default_query": query,
            "params": query,
        }
        return keys, scopes

    def text(self, text: str) -> str:
        """Free text (a report, a tag value) with every known value replaced."""
        return self.known.scrub(text)

    def mapping(self, values: Mapping[str, str]) -> dict[str, str]:
        """Params or tags: values under secret names redacted, known values replaced."""
        keys, _ = self._rules()
        data, _ = bodies.redact_tree(dict(values), keys, self.known)
        return {str(k): self.known.scrub(str(v)) for k, v in data.items()}

    def tree(self, data: Any) -> Any:
        """A JSON-like value scrubbed at any depth (JSON text inside strings included)."""
        return self._tree(data)[0]

    def _tree(self, data: Any) -> tuple[Any, bool]:
        keys, scopes = self._rules()
        data, redacted = bodies.redact_tree(data, keys, self.known, scopes=scopes, nested=True)
        data, cleaned = bodies.clean_tree(data, self.known.scrub, nested=True)
        return data, redacted or cleaned

    def trace(self, trace: Trace) -> Trace:
        """A finished trace, scrubbed (the same object when there was nothing to scrub)."""
        from mlflow.entities import Trace

        data = trace.to_dict()
        if not self._may_hold_secrets(json.dumps(data)):
            return trace  # most traces: one look at their text instead of two walks
        data, changed = self._tree(data)
        return Trace.from_dict(data) if changed else trace

    def _may_hold_secrets(self, text: str) -> bool:
        """Whether ``text`` (a trace as JSON) holds a known value or a field the rules redact."""
        keys, scopes = self._rules()
        # Names redacted anywhere, and the fields whose children follow other rules.
        names = frozenset(keys).union(scopes, identities.IDENTITY_FIELDS, identities.IDENTITY_LISTS)
        if self._names != names:
            quoted = "|".join(re.escape(name.lower()) for name in sorted(names, key=len, reverse=True))
            self._names_pattern = re.compile(rf'"(?:{quoted})\\*"\s*:')
            self._names = names
        return bool(self._names_pattern.search(text.lower())) or self.known.scrub(text) != text
