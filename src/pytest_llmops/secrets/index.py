"""Finding many literal strings in a text at once, for the known secrets' exact forms.

A session usually knows a handful of secret values (a dozen forms each): ``str.replace``
per form is fastest then. A session that learned hundreds (every token it redacted) would
pay that per form and per string; past :data:`SMALL` forms the text is scanned once
instead, each position looked up by its first :data:`PREFIX` characters.
"""

from __future__ import annotations

from collections.abc import Iterator

PREFIX = 6
"""Every form is at least this long (shorter values are not scrubbed)."""
SMALL = 400
"""Up to this many forms, one ``str.replace`` per form; above, one scan of the text."""

class FormIndex:
    """Literal forms, each with its replacement and a label (what it is). Forms are only
    added; readers may use the index while another thread adds (callers serialise adds)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, str]] = {}
        """form -> (replacement, label)"""
        self._by_prefix: dict[str, tuple[str, ...]] = {}
        self._ordered: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.values)

    def add(self, form: str, replacement: str, label: str) -> None:
        if len(form) < PREFIX or form in self.values:
            return
        self.values[form] = (replacement, label)
        key = form[:PREFIX]
        self._by_prefix[key] = tuple(sorted((*self._by_prefix.get(key, ()), form), key=len, reverse=True))
        if len(self.values) <= SMALL:
            self._ordered = tuple(sorted(self.values, key=len, reverse=True))

    def matches(self, text: str) -> Iterator[tuple[int, str]]:
        """``(start, form)`` of the forms in ``text``, leftmost-longest, not overlapping."""
        if len(self.values) <= SMALL:
            for form in self._ordered:
                start = text.find(form)
                while start != -1:
                    yield start, form
                    start = text.find(form, start + len(form))
            return
        get = self._by_prefix.get
        index, end = 0, len(text) - PREFIX
        while index <= end:
            for form in get(text[index : index + PREFIX], ()):
                if text.startswith(form, index):
                    yield index, form
                    index += len(form)
                    break
            else:
                index += 1

    def sub(self, text: str) -> str:
        """``text`` with each form found replaced."""
        values = self.values
        if len(values) <= SMALL:
            for form in self._ordered:
                if form in text:
                    text = text.replace(form, values[form][0])
            return text
        parts: list[str] = []
        last = 0
        for start, form in self.matches(text):
            parts += (text[last:start], values[form][0])
            last = start + len(form)
        return "".join(parts) + text[last:] if parts else text
