"""Rate limits of the double's Azure OpenAI deployments, as the real service applies and reports
them: a sliding window per deployment, and the ``x-ratelimit-*`` headers of every answer.

A deployment's limits follow its capacity (thousands of tokens per minute): capacity 10 is
10,000 tokens and, at gpt-4o's 6 requests per 1,000 tokens, 60 requests per minute. Real
answers (``shared/realworld``) show other ratios too (gpt-4.1-mini: 1 per 1,000); the double's
is a knob. Header names and shapes follow recorded Azure answers: ``x-ratelimit-limit-*``,
``x-ratelimit-remaining-*``, ``x-ratelimit-reset-*`` (seconds, ``0`` while there is room) and
``x-ratelimit-renewalperiod-*`` (the window, in seconds).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

DEFAULT_CAPACITY = 1000
"""Capacity of a deployment nobody gave one (the double's ``gpt-4o``): 1M tokens per minute."""
REQUESTS_PER_1000_TOKENS = 6
"""gpt-4o's ratio of requests to tokens per minute; newer models grant 1 per 1,000."""


@dataclass(frozen=True)
class Limits:
    """One deployment's limits per window, and which of them the double enforces."""

    tokens: int
    requests: int
    enforce_requests: bool = True


class Window:
    """One deployment's sliding window: ``(admitted at, tokens charged)`` per request."""

    def __init__(self) -> None:
        self.admitted: deque[tuple[float, int]] = deque()

    def expire(self, now: float, length: float) -> None:
        while self.admitted and self.admitted[0][0] <= now - length:
            self.admitted.popleft()

    @property
    def used(self) -> int:
        return sum(tokens for _, tokens in self.admitted)

    def admit(self, now: float, charge: int, limits: Limits, length: float) -> int | None:
        """Charge a request, or return the seconds until it would fit (a 429's Retry-After)."""
        self.expire(now, length)
        if self._fits(self.used, len(self.admitted), charge, limits):
            self.admitted.append((now, charge))
            return None
        return self._seconds_until_room(now, charge, limits, length)

    @staticmethod
    def _fits(used: int, count: int, charge: int, limits: Limits) -> bool:
        return used + charge <= limits.tokens and (not limits.enforce_requests or count + 1 <= limits.requests)

    def _seconds_until_room(self, now: float, charge: int, limits: Limits, length: float) -> int:
        # Walk the window oldest first until enough has expired for this request to fit.
        used, count = self.used, len(self.admitted)
        fits_at = now + length
        for at, tokens in self.admitted:
            used, count = used - tokens, count - 1
            if self._fits(used, count, charge, limits):
                fits_at = at + length
                break
        return max(1, math.ceil(fits_at - now))

    def headers(self, now: float, limits: Limits, length: float, retry_after: int | None = None) -> dict[str, str]:
        """The rate-limit headers of an answer given now."""
        self.expire(now, length)
        used, count = self.used, len(self.admitted)
        remaining_tokens = max(0, limits.tokens - used)
        remaining_requests = max(0, limits.requests - count)
        oldest = self.admitted[0][0] if self.admitted else now
        until_oldest_expires = str(max(1, math.ceil(oldest + length - now)))
        reset_tokens = until_oldest_expires if remaining_tokens == 0 else "0"
        renewal = f"{length:g}"
        return {
            "x-ratelimit-limit-requests": str(limits.requests),
            "x-ratelimit-limit-tokens": str(limits.tokens),
            "x-ratelimit-remaining-requests": str(remaining_requests),
            "x-ratelimit-remaining-tokens": str(remaining_tokens),
            "x-ratelimit-renewalperiod-requests": renewal,
            "x-ratelimit-renewalperiod-tokens": renewal,
            "x-ratelimit-reset-requests": until_oldest_expires if remaining_requests == 0 else "0",
            "x-ratelimit-reset-tokens": reset_tokens if retry_after is None else str(retry_after),
        }


def limits_for(
    capacity: int,
    requests_per_1000_tokens: int,
    tokens_per_minute: int | None,
    requests_per_minute: int | None,
) -> Limits:
    """A deployment's limits: its capacity's, unless the double's overrides say otherwise
    (``tokens_per_minute`` alone enforces tokens only, as before the double knew capacities)."""
    tokens = tokens_per_minute or capacity * 1000
    derived = max(1, tokens * requests_per_1000_tokens // 1000)
    if requests_per_minute:
        return Limits(tokens, requests_per_minute)
    return Limits(tokens, derived, enforce_requests=tokens_per_minute is None)
