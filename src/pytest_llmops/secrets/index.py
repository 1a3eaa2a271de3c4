"""Finding many literal strings in a text at once, for the known secrets' exact forms.

A session usually knows a handful of secret values (a dozen forms each): ``str.find`` per
form is fastest then. A session that learned hundreds (every token it redacted) would pay
that per form and per string. Past :data:`SMALL` forms, the long ones (at least
:data:`LONG` characters) are found in one pass over the text that looks at every
:data:`STRIDE`-th position only: each long form is indexed by its :data:`WINDOW`-character
windows at offsets ``0..STRIDE-1``, so wherever it starts, one of the positions looked at
falls on one of its windows. Shorter forms are few and still found one by one.
"""

from __future__ import annotations

from collections.abc import Iterator

SMALL = 400
"""Up to this many forms, each is looked for with ``str.find``."""
WINDOW = 6
LONG = 12
STRIDE = LONG - WINDOW + 1


class FormIndex:
    """Literal forms, each with its replacement and a label (what it is). Forms are only
    added; readers may use the index while another thread adds (callers serialise adds)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, str]] = {}
        """form -> (replacement, label)"""
        self._windows: dict[str, tuple[tuple[str, int], ...]] = {}
        self._short: tuple[str, ...] = ()
        self._ordered: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.values)

    def add(self, form: str, replacement: str, label: str) -> None:
        if not form or form in self.values:
            return
        self.values[form] = (replacement, label)
        if len(form) >= LONG:
            for offset in range(STRIDE):
                window = form[offset : offset + WINDOW]
                self._windows[window] = (*self._windows.get(window, ()), (form, offset))
        else:
            self._short = tuple(sorted((*self._short, form), key=len, reverse=True))
        if len(self.values) <= SMALL:
            self._ordered = tuple(sorted(self.values, key=len, reverse=True))

    def matches(self, text: str) -> Iterator[tuple[int, str]]:
        """``(start, form)`` of the forms in ``text``, leftmost-longest, not overlapping."""
        if len(self.values) <= SMALL:
            yield from _each(text, self._ordered)
            return
        found: list[tuple[int, int, str]] = []
        get = self._windows.get
        for position in range(0, len(text) - WINDOW + 1, STRIDE):
            for form, offset in get(text[position : position + WINDOW], ()):
                start = position - offset
                if start >= 0 and text.startswith(form, start):
                    found.append((start, -len(form), form))
        found.extend((start, -len(form), form) for start, form in _each(text, self._short))
        end = 0
        for start, _, form in sorted(found):
            if start >= end:
                yield start, form
                end = start + len(form)

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


def _each(text: str, forms: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    for form in forms:
        start = text.find(form)
        while start != -1:
            yield start, form
            start = text.find(form, start + len(form))
