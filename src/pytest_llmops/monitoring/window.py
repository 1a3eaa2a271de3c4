"""Time windows for ``--since`` / ``--until``: an ISO date or time (UTC unless it says
otherwise), or a duration before now (``90m``, ``24h``, ``7d``, ``2w``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class TimeWindow:
    """Traces started at or after ``since_ms`` and before ``until_ms`` (milliseconds since the
    epoch; None: unbounded)."""

    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if self.since_ms is not None and self.until_ms is not None and self.since_ms >= self.until_ms:
            raise ValueError("--since must be before --until")

    @property
    def bounded(self) -> bool:
        return self.since_ms is not None or self.until_ms is not None

    def mlflow_filter(self) -> str:
        """The window as an MLflow trace search filter (``timestamp_ms >= ... AND ...``)."""
        parts = []
        if self.since_ms is not None:
            parts.append(f"timestamp_ms >= {self.since_ms}")
        if self.until_ms is not None:
            parts.append(f"timestamp_ms < {self.until_ms}")
        return " AND ".join(parts)

    def contains(self, timestamp_ms: float) -> bool:
        return (self.since_ms is None or timestamp_ms >= self.since_ms) and (
            self.until_ms is None or timestamp_ms < self.until_ms
        )


def parse_time(text: str, *, now: float | None = None) -> int:
    """Milliseconds since the epoch of an ISO date/time or of a duration before ``now``."""
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
        return int(((time.time() if now is None else now) - seconds) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use an ISO date or time (2026-12-01, 2026-12-01T08:00:00+01:00) "
            "or a duration before now (90m, 24h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def window(since: str | None, until: str | None) -> TimeWindow | None:
    """The window of ``--since``/``--until`` (None when neither is given)."""
    if since is None and until is None:
        return None
    return TimeWindow(
        parse_time(since) if since is not None else None, parse_time(until) if until is not None else None
    )
