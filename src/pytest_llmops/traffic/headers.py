"""What the service's rate-limit headers say."""

from __future__ import annotations

import math
from collections.abc import Mapping


def header_number(headers: Mapping[str, str], name: str) -> float | None:
    """A header's value as a finite number >= 0, else None."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def retry_after(headers: Mapping[str, str]) -> float:
    """Seconds a 429 asks to wait: ``retry-after-ms``, else ``retry-after``, else 1."""
    milliseconds = header_number(headers, "retry-after-ms")
    if milliseconds is not None:
        return milliseconds / 1000
    seconds = header_number(headers, "retry-after")
    return seconds if seconds is not None else 1.0
