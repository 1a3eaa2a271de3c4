"""The rate limit of one deployment, shared through a file by every process of the run.

Before a request, a process reserves its estimated tokens and waits while the window holds
no room for them; after the response it reconciles the reservation with what the service
charged. The service's own view is the truth: its ``x-ratelimit-limit-*`` headers are the
limits (the ini options only cap them; a provisioned capacity only stands in until the first
answer), ``x-ratelimit-renewalperiod-*`` the window, ``x-ratelimit-remaining-*`` raise the
ledger by what others use, and a 429 holds every process until its ``Retry-After`` has passed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_llmops.traffic import ledger as ledger_mod
from pytest_llmops.traffic.headers import header_number, retry_after
from pytest_llmops.traffic.ledger import COUNT, FLIGHT, ID, TOKENS, Limits, Reservation
from pytest_llmops.traffic.options import Options
from pytest_llmops.traffic.shared_file import SharedFile

DEFAULT_WINDOW_S = 60.0
REQUESTS_PER_1000_TOKENS = 1
"""Requests per minute assumed for every 1,000 tokens per minute of a provisioned deployment's
capacity until the service's headers say: the lowest ratio Azure grants (newer models such
as gpt-4.1-mini grant 1, gpt-4o 6, some deployments 10). ``x-ratelimit-limit-requests``
replaces it with the first answer."""
POLL_S = 0.25
"""Longest sleep between two looks at the ledger (others' reconciliations may free room)."""
ADMISSION_MARGIN_S = 0.5
"""The service charges a request when it arrives: at most this long after our reservation,
and never after its response headers arrived."""
PROBE_POLL_S = 0.05


class Limiter:
    """The rate limit of one deployment, shared through a file by every process of the run."""

    _ids = itertools.count()
    keeps_ledger = True

    def __init__(
        self, path: Path, deployment: str, host: str, opts: Options, capacity: int | None = None
    ) -> None:
        self.path = path
        self.deployment = deployment
        self.host = host
        self.options = opts
        self.capacity = capacity
        self._file = SharedFile(path)
        self._prefix = f"{os.getpid()}-{id(self):x}-"

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The shared state, read and written back under the lock."""
        with self._file.locked() as (read, write):
            try:
                state = json.loads(read() or b"null") or ledger_mod.empty_state(self.deployment, self.host)
            except ValueError:  # a process died mid-write: start over, the service's headers correct it
                state = ledger_mod.empty_state(self.deployment, self.host)
            yield state
            write(json.dumps(state, separators=(",", ":")).encode())

    def limits(self, state: Mapping[str, Any]) -> Limits:
        """The limits in force: the service's (its ``x-ratelimit-limit-*`` headers, else, until
        the first answer, what the provisioned capacity suggests), capped by the ini options."""
        learned = state["learned"]
        tokens: list[tuple[int, str]] = []
        requests: list[tuple[int, str]] = []
        if self.options.tokens:
            tokens.append((self.options.tokens, "ini"))
        if self.options.requests:
            requests.append((self.options.requests, "ini"))
        if learned.get("tokens"):
            tokens.append((int(learned["tokens"]), "response headers"))
        elif self.capacity:
            tokens.append((self.capacity * 1000, "deployment capacity"))
        if learned.get("requests"):
            requests.append((int(learned["requests"]), "response headers"))
        elif self.capacity:
            requests.append((self.capacity * REQUESTS_PER_1000_TOKENS, "deployment capacity"))
        token_limit = min(tokens) if tokens else None
        request_limit = min(requests) if requests else None
        window = self.options.window or learned.get("window") or DEFAULT_WINDOW_S
        sources = sorted({limit[1] for limit in (token_limit, request_limit) if limit})
        return Limits(
            token_limit[0] if token_limit else None,
            request_limit[0] if request_limit else None,
            float(window),
            ", ".join(sources) or "none yet",
        )

    # -- before a request ---------------------------------------------------------------------------
    def try_acquire(self, tokens: int, waited: float) -> tuple[Reservation | None, float]:
        """Reserve ``tokens`` now, or say how long to wait before trying again."""
        with self._state() as state:
            now = time.time()
            limits = self.limits(state)
            window = limits.window
            ledger = [e for e in state["ledger"] if ledger_mod.expiry(e, window) > now]
            state["ledger"] = ledger
            wait = float(state["blocked_until"]) - now
            if wait > 0:
                return None, wait
            unknown = limits.tokens is None and limits.requests is None and not state["learned"]["answered"]
            if unknown and any(e[FLIGHT] for e in ledger):
                return None, PROBE_POLL_S  # nothing known yet: one request at a time
            wait = ledger_mod.room_in(ledger, limits, tokens, now)
            if wait > 0:
                return None, wait
            state["limits"] = limits.describe()
            reservation = Reservation(self._prefix + str(next(self._ids)), tokens, now)
            ledger.append([reservation.id, now, tokens, 1, 1])
            stats = state["stats"]
            stats["requests"] += 1
            if waited > 0:
                stats["held"] += 1
                stats["waited"] += waited
                ledger_mod.add_interval(state.setdefault("held_at", []), now - waited, now)
            return reservation, 0.0

    # -- after a response ---------------------------------------------------------------------------
    def settle(
        self,
        reservation: Reservation,
        status: int | None,
        headers: Mapping[str, str],
        charge: int | None = None,
        *,
        retrying: bool = False,
        answered_at: float | None = None,
    ) -> None:
        """Reconcile a reservation with its answer (``status`` None: no answer, an error);
        ``answered_at``: when its headers arrived, if that was before now."""
        with self._state() as state:
            now = time.time()
            window = self.limits(state).window
            ledger: list[list[Any]] = state["ledger"]
            entry = next((e for e in ledger if e[ID] == reservation.id), None)
            if entry is not None:
                ledger.remove(entry)
            if status is not None:
                self._learn(state, headers)
            if status == 429:  # a refused request is not charged
                state["blocked_until"] = max(float(state["blocked_until"]), now + retry_after(headers))
                state["stats"]["throttled"] += 1
                state["stats"]["retried"] += int(retrying)
            else:
                at = min(answered_at or now, reservation.at + ADMISSION_MARGIN_S)
                tokens = reservation.tokens if charge is None else charge
                ledger_mod.charge(ledger, at, tokens, 1, window)
            if status is not None:
                self._floor(state, headers, now, window)
                state["limits"] = self.limits(state).describe()

    def exhausted(self) -> None:
        with self._state() as state:
            state["stats"]["exhausted"] += 1

    def _learn(self, state: dict[str, Any], headers: Mapping[str, str]) -> None:
        learned = state["learned"]
        learned["answered"] = True
        for key in ("tokens", "requests"):
            value = header_number(headers, f"x-ratelimit-limit-{key}")
            if value:
                learned[key] = int(value)
        period = header_number(headers, "x-ratelimit-renewalperiod-tokens") or header_number(
            headers, "x-ratelimit-renewalperiod-requests"
        )
        if period:
            learned["window"] = period

    def _floor(self, state: dict[str, Any], headers: Mapping[str, str], now: float, window: float) -> None:
        """The service counts more than the ledger (other clients, a low estimate): add it."""
        ledger: list[list[Any]] = state["ledger"]
        learned = state["learned"]
        missing_tokens = missing_requests = 0
        limit = header_number(headers, "x-ratelimit-limit-tokens") or learned.get("tokens")
        remaining = header_number(headers, "x-ratelimit-remaining-tokens")
        if limit and remaining is not None:
            missing_tokens = max(0, int(limit - remaining) - sum(e[TOKENS] for e in ledger))
        limit = header_number(headers, "x-ratelimit-limit-requests") or learned.get("requests")
        remaining = header_number(headers, "x-ratelimit-remaining-requests")
        if limit and remaining is not None:
            missing_requests = max(0, int(limit - remaining) - sum(e[COUNT] for e in ledger))
        if missing_tokens or missing_requests:
            ledger_mod.charge(ledger, now, missing_tokens, missing_requests, window)

    # -- waiting ------------------------------------------------------------------------------------
    def wait(self, tokens: int) -> Reservation:
        """Block until ``tokens`` fit, and reserve them."""
        waited = 0.0
        while True:
            reservation, wait = self.try_acquire(tokens, waited)
            if reservation is not None:
                return reservation
            pause = min(wait, POLL_S)
            time.sleep(pause)
            waited += pause

    async def wait_async(self, tokens: int) -> Reservation:
        """:meth:`wait` for event loops."""
        import anyio

        waited = 0.0
        while True:
            reservation, wait = self.try_acquire(tokens, waited)
            if reservation is not None:
                return reservation
            pause = min(wait, POLL_S)
            await anyio.sleep(pause)
            waited += pause

    def close(self) -> None:
        self._file.close()

    def snapshot(self) -> dict[str, Any]:
        """The shared state as it is now (for tests and the summary)."""
        with self._state() as state:
            copied: dict[str, Any] = json.loads(json.dumps(state))
            return copied


class ReplayLimiter(Limiter):
    """Replay: no ledger, no waiting; only the 429 retries remain (the recording's 429s)."""

    keeps_ledger = False

    def __init__(self, deployment: str, host: str, opts: Options) -> None:
        self.deployment = deployment
        self.host = host
        self.options = opts

    def try_acquire(self, tokens: int, waited: float) -> tuple[Reservation | None, float]:
        return Reservation("replay", tokens, 0.0), 0.0

    def settle(self, *args: Any, **kwargs: Any) -> None:
        return None

    def exhausted(self) -> None:
        return None

    def close(self) -> None:
        return None

    def snapshot(self) -> dict[str, Any]:
        return ledger_mod.empty_state(self.deployment, self.host)
