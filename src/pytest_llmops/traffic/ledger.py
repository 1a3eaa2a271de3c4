"""The shared state of one deployment's limiter: a sliding-window ledger of what was sent,
what the service said, and the totals the summary reports.

A ledger entry is ``[id, at, tokens, in flight (0/1), requests]``; answered requests share
time buckets, so the ledger stays about ``BUCKETS_PER_WINDOW`` entries long.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BUCKETS_PER_WINDOW = 200
IN_FLIGHT_GRACE_S = 1.0
"""An unanswered reservation outlives the window by this much (then it is certainly expired
on the service too)."""
ID, AT, TOKENS, FLIGHT, COUNT = range(5)


@dataclass
class Reservation:
    """A request's place in the ledger."""

    id: str
    tokens: int
    at: float


@dataclass(frozen=True)
class Limits:
    """What the limiter enforces now, and where it came from."""

    tokens: int | None
    requests: int | None
    window: float
    source: str

    def describe(self) -> str:
        parts = [f"{self.tokens} tokens" if self.tokens else ""]
        parts.append(f"{self.requests} requests" if self.requests else "")
        said = " and ".join(p for p in parts if p) or "no limit known"
        return f"{said} per {self.window:g} s ({self.source})"


def empty_state(deployment: str, host: str) -> dict[str, Any]:
    """The state of a limiter nothing has used yet."""
    return {
        "deployment": deployment,
        "host": host,
        "learned": {"tokens": None, "requests": None, "window": None, "answered": False},
        "ledger": [],
        "blocked_until": 0.0,
        "stats": {"requests": 0, "held": 0, "waited": 0.0, "throttled": 0, "retried": 0, "exhausted": 0},
    }


def add_interval(intervals: list[list[float]], start: float, end: float) -> None:
    """Merge ``[start, end]`` into sorted disjoint intervals (when some process waited)."""
    merged = [start, end]
    kept = []
    for interval in intervals:
        if interval[1] < merged[0] or interval[0] > merged[1]:
            kept.append(interval)
        else:
            merged = [min(merged[0], interval[0]), max(merged[1], interval[1])]
    kept.append(merged)
    intervals[:] = sorted(kept)


def held_seconds(state: Mapping[str, Any]) -> float:
    """Wall-clock seconds during which at least one request waited for the limit."""
    return float(sum(end - start for start, end in state.get("held_at", [])))


def expiry(entry: list[Any], window: float) -> float:
    """When a ledger entry leaves the window."""
    in_flight = entry[FLIGHT]
    return float(entry[AT] + window + (IN_FLIGHT_GRACE_S if in_flight else 0.0))


def charge(ledger: list[list[Any]], at: float, tokens: int, count: int, window: float) -> None:
    """Add an answered request (or what the service counts beyond ours) to its time
    bucket: the ledger stays ~``BUCKETS_PER_WINDOW`` entries long, each bucket expiring
    with its latest member (late by at most 1/``BUCKETS_PER_WINDOW`` of the window)."""
    bucket = f"b{int(at // (window / BUCKETS_PER_WINDOW))}"
    for entry in reversed(ledger):
        if entry[ID] == bucket:
            entry[AT] = max(entry[AT], at)
            entry[TOKENS] += tokens
            entry[COUNT] += count
            return
    ledger.append([bucket, at, tokens, 0, count])


def room_in(ledger: list[list[Any]], limits: Limits, tokens: int, now: float) -> float:
    """Seconds until the window has room for one more request of ``tokens`` (0: now)."""
    by_expiry = sorted(ledger, key=lambda e: expiry(e, limits.window))
    wait = 0.0
    if limits.tokens is not None:
        used = sum(e[TOKENS] for e in ledger)
        for entry in by_expiry:
            if used + tokens <= limits.tokens:
                break
            used -= entry[TOKENS]
            wait = max(wait, expiry(entry, limits.window) - now)
    if limits.requests is not None:
        count = sum(e[COUNT] for e in ledger)
        for entry in by_expiry:
            if count + 1 <= limits.requests:
                break
            count -= entry[COUNT]
            wait = max(wait, expiry(entry, limits.window) - now)
    return wait
