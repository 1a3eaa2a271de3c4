"""Pacing: live and record runs stay within the deployment's rate limit, xdist workers included.

One limiter per deployment (host and deployment name) for the whole invocation: a sliding
window ledger in a small JSON file under ``resources.state_dir(config)``, guarded by a file
lock (``flock``; ``filelock`` where there is none), that every process of the run (the xdist
controller and its workers) reads and updates. Before a request, a worker reserves its
estimated tokens (prompt characters / 4 plus ``max_tokens``, or a default completion budget)
and waits while the window holds no room for them; after the response it reconciles the
reservation with the usage the service reports. The service's own view wins where it is
stricter: ``x-ratelimit-limit-*`` and ``x-ratelimit-remaining-*`` headers lower the limits
and raise the ledger, and a 429 holds every worker until its ``Retry-After`` has passed,
then the request is sent again, up to ``llmops_max_429_retries`` times; after that the test
fails with :class:`RateLimitExhausted` (never a skip). Replay never waits: the limiter is
off, and the 429s a recording met are replayed and sent again at once, so a replay makes
the requests the recording made.

Limits, smallest wins:
- the ini options ``llmops_tokens_per_minute`` and ``llmops_requests_per_minute``;
- the deployment's capacity when the run provisioned it (capacity 10 = 10K tokens and 60
  requests per minute);
- the service's ``x-ratelimit-limit-tokens``/``-requests`` headers (until the first answer,
  requests go one at a time when nothing else is known).
The window is ``llmops_rate_limit_window`` seconds, else the ``x-ratelimit-renewalperiod-*``
header, else 60. Shortening it only makes sense against a double whose window is as short.

Usage and headers are read from the plugin's clients only (a user's own client is not paced).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_llmops.errors import LLMOpsError

ClientT = TypeVar("ClientT")
DEFAULT_WINDOW_S = 60.0
DEFAULT_COMPLETION_TOKENS = 256
"""Tokens reserved for an answer whose request sets no ``max_tokens`` (reconciled after)."""
DEFAULT_MAX_429_RETRIES = 6
REQUESTS_PER_1000_TOKENS = 6
"""Azure grants 6 requests per minute for every 1000 tokens per minute of capacity."""
POLL_S = 0.25
"""Longest sleep between two looks at the ledger (others' reconciliations may free room)."""
ADMISSION_MARGIN_S = 0.5
"""The service charges a request when it arrives: at most this long after our reservation,
and never after its response headers arrived."""
IN_FLIGHT_GRACE_S = 1.0
"""An unanswered reservation outlives the window by this much (then it is certainly expired
on the service too)."""
PROBE_POLL_S = 0.05
BUCKETS_PER_WINDOW = 200
# A ledger entry: [id, at, tokens, in flight (0/1), requests]; answered ones share time buckets.
_ID, _AT, _TOKENS, _FLIGHT, _COUNT = range(5)
_DEPLOYMENT_RE = re.compile(r"/deployments/([^/]+)/")


class RateLimitExhausted(LLMOpsError):
    """A paced request was still answered 429 after its retry budget."""


@dataclass(frozen=True)
class Options:
    """The pacing ini options, resolved once per process."""

    enabled: bool = True
    tokens: int | None = None
    requests: int | None = None
    window: float | None = None
    max_retries: int = DEFAULT_MAX_429_RETRIES
    completion_budget: int = DEFAULT_COMPLETION_TOKENS


def _ini_number(config: pytest.Config, name: str, kind: type[int] | type[float], example: str) -> Any:
    raw = str(config.getini(name) or "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < 0 or (kind is float and not math.isfinite(value)):
        noun = "whole number" if kind is int else "number"
        raise pytest.UsageError(f"{name} = {raw!r} is not a {noun} >= 0. Example: `{name} = {example}`.")
    return value


def options(config: pytest.Config) -> Options:
    """The pacing options of this session's ini file."""
    retries = _ini_number(config, "llmops_max_429_retries", int, "6")
    window = _ini_number(config, "llmops_rate_limit_window", float, "60")
    return Options(
        enabled=bool(config.getini("llmops_pacing")),
        tokens=_ini_number(config, "llmops_tokens_per_minute", int, "10000") or None,
        requests=_ini_number(config, "llmops_requests_per_minute", int, "60") or None,
        window=window or None,
        max_retries=DEFAULT_MAX_429_RETRIES if retries is None else retries,
    )


# -- estimates ------------------------------------------------------------------------------------------


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(part.get("text", "") if isinstance(part, dict) else part) for part in value)
    return 0


def estimate(body: Mapping[str, Any], completion_budget: int = DEFAULT_COMPLETION_TOKENS) -> int:
    """Tokens the service will charge for a request body, roughly: prompt characters / 4
    (plus per-message overhead and tools) and the requested maximum answer, per choice."""
    messages = body.get("messages")
    characters = 0
    overhead = 0
    if isinstance(messages, list):
        overhead = 3 + 4 * len(messages)
        for message in messages:
            if isinstance(message, dict):
                characters += _text_length(message.get("content")) + len(str(message.get("name") or ""))
                if message.get("tool_calls"):
                    characters += len(json.dumps(message["tool_calls"]))
    characters += _text_length(body.get("input")) + _text_length(body.get("prompt"))
    if body.get("tools"):
        characters += len(json.dumps(body["tools"]))
    generates = isinstance(messages, list) or "prompt" in body or "max_output_tokens" in body
    answer = _max_tokens(body) or (completion_budget if generates else 0)
    choices = _choices(body)
    return math.ceil(characters / 4) + overhead + answer * choices


def _choices(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def charged(body: Mapping[str, Any], usage: Mapping[str, Any]) -> int | None:
    """What the service charged, from the answer's usage: the prompt plus the requested
    maximum (Azure reserves it up front), else what was produced."""
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    if not isinstance(prompt, int):
        return None
    produced = usage.get("completion_tokens", usage.get("output_tokens")) or 0
    choices = _choices(body)
    limit = _max_tokens(body)
    return prompt + (limit * choices if limit else int(produced))


# -- the shared ledger ------------------------------------------------------------------------------------


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


def _empty_state(deployment: str, host: str) -> dict[str, Any]:
    return {
        "deployment": deployment,
        "host": host,
        "learned": {"tokens": None, "requests": None, "window": None, "answered": False},
        "ledger": [],
        "blocked_until": 0.0,
        "stats": {"requests": 0, "held": 0, "waited": 0.0, "throttled": 0, "retried": 0, "exhausted": 0},
    }


def _add_interval(intervals: list[list[float]], start: float, end: float) -> None:
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


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
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
    milliseconds = _header_number(headers, "retry-after-ms")
    if milliseconds is not None:
        return milliseconds / 1000
    seconds = _header_number(headers, "retry-after")
    return seconds if seconds is not None else 1.0


class SharedFile:
    """A small file that every process of the run reads and rewrites under an exclusive lock.

    On POSIX one descriptor per process and ``flock`` on it (~35 us a round, JSON included);
    elsewhere ``filelock`` beside it and whole-file rewrites.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[tuple[Callable[[], bytes], Callable[[bytes], None]]]:
        """``(read, write)`` for the duration of the block, other processes kept out."""
        with self._thread_lock:
            try:
                import fcntl
            except ImportError:  # Windows
                yield from self._with_filelock()
                return
            if self._fd is None or self._pid != os.getpid():
                self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
            fd = self._fd

            def read() -> bytes:
                return os.pread(fd, os.fstat(fd).st_size, 0)

            def write(data: bytes) -> None:
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))

            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield read, write
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _with_filelock(self) -> Iterator[tuple[Callable[[], bytes], Callable[[bytes], None]]]:
        from filelock import FileLock

        def read() -> bytes:
            try:
                return self.path.read_bytes()
            except FileNotFoundError:
                return b""

        def write(data: bytes) -> None:
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self.path)

        with FileLock(str(self.path.with_suffix(".lock"))):
            yield read, write

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


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
                state = json.loads(read() or b"null") or _empty_state(self.deployment, self.host)
            except ValueError:  # a process died mid-write: start over, the service's headers correct it
                state = _empty_state(self.deployment, self.host)
            yield state
            write(json.dumps(state, separators=(",", ":")).encode())

    def limits(self, state: Mapping[str, Any]) -> Limits:
        """The limits in force: the smallest of the ini options, capacity and headers."""
        learned = state["learned"]
        tokens: list[tuple[int, str]] = []
        requests: list[tuple[int, str]] = []
        if self.options.tokens:
            tokens.append((self.options.tokens, "ini"))
        if self.options.requests:
            requests.append((self.options.requests, "ini"))
        if self.capacity:
            tokens.append((self.capacity * 1000, "deployment capacity"))
            requests.append((self.capacity * REQUESTS_PER_1000_TOKENS, "deployment capacity"))
        if learned.get("tokens"):
            tokens.append((int(learned["tokens"]), "response headers"))
        if learned.get("requests"):
            requests.append((int(learned["requests"]), "response headers"))
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

    @staticmethod
    def _expiry(entry: list[Any], window: float) -> float:
        in_flight = entry[_FLIGHT]
        return float(entry[_AT] + window + (IN_FLIGHT_GRACE_S if in_flight else 0.0))

    @staticmethod
    def _charge(ledger: list[list[Any]], at: float, tokens: int, count: int, window: float) -> None:
        """Add an answered request (or what the service counts beyond ours) to its time
        bucket: the ledger stays ~``BUCKETS_PER_WINDOW`` entries long, each bucket expiring
        with its latest member (late by at most 1/``BUCKETS_PER_WINDOW`` of the window)."""
        bucket = f"b{int(at // (window / BUCKETS_PER_WINDOW))}"
        for entry in reversed(ledger):
            if entry[_ID] == bucket:
                entry[_AT] = max(entry[_AT], at)
                entry[_TOKENS] += tokens
                entry[_COUNT] += count
                return
        ledger.append([bucket, at, tokens, 0, count])

    # -- before a request ---------------------------------------------------------------------------
    def try_acquire(self, tokens: int, waited: float) -> tuple[Reservation | None, float]:
        """Reserve ``tokens`` now, or say how long to wait before trying again."""
        with self._state() as state:
            now = time.time()
            limits = self.limits(state)
            window = limits.window
            ledger = [e for e in state["ledger"] if self._expiry(e, window) > now]
            state["ledger"] = ledger
            wait = float(state["blocked_until"]) - now
            if wait > 0:
                return None, wait
            unknown = limits.tokens is None and limits.requests is None and not state["learned"]["answered"]
            if unknown and any(e[_FLIGHT] for e in ledger):
                return None, PROBE_POLL_S  # nothing known yet: one request at a time
            wait = self._room_in(ledger, limits, tokens, now)
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
                _add_interval(state.setdefault("held_at", []), now - waited, now)
            return reservation, 0.0

    def _room_in(self, ledger: list[list[Any]], limits: Limits, tokens: int, now: float) -> float:
        """Seconds until the window has room for one more request of ``tokens`` (0: now)."""
        by_expiry = sorted(ledger, key=lambda e: self._expiry(e, limits.window))
        wait = 0.0
        if limits.tokens is not None:
            used = sum(e[_TOKENS] for e in ledger)
            for entry in by_expiry:
                if used + tokens <= limits.tokens:
                    break
                used -= entry[_TOKENS]
                wait = max(wait, self._expiry(entry, limits.window) - now)
        if limits.requests is not None:
            count = sum(e[_COUNT] for e in ledger)
            for entry in by_expiry:
                if count + 1 <= limits.requests:
                    break
                count -= entry[_COUNT]
                wait = max(wait, self._expiry(entry, limits.window) - now)
        return wait

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
            entry = next((e for e in ledger if e[_ID] == reservation.id), None)
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
                self._charge(ledger, at, reservation.tokens if charge is None else charge, 1, window)
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
            value = _header_number(headers, f"x-ratelimit-limit-{key}")
            if value:
                learned[key] = int(value)
        period = _header_number(headers, "x-ratelimit-renewalperiod-tokens")
        if period:
            learned["window"] = period

    def _floor(self, state: dict[str, Any], headers: Mapping[str, str], now: float, window: float) -> None:
        """The service counts more than the ledger (other clients, a low estimate): add it."""
        ledger: list[list[Any]] = state["ledger"]
        learned = state["learned"]
        missing_tokens = missing_requests = 0
        limit = _header_number(headers, "x-ratelimit-limit-tokens") or learned.get("tokens")
        remaining = _header_number(headers, "x-ratelimit-remaining-tokens")
        if limit and remaining is not None:
            missing_tokens = max(0, int(limit - remaining) - sum(e[_TOKENS] for e in ledger))
        limit = _header_number(headers, "x-ratelimit-limit-requests") or learned.get("requests")
        remaining = _header_number(headers, "x-ratelimit-remaining-requests")
        if limit and remaining is not None:
            missing_requests = max(0, int(limit - remaining) - sum(e[_COUNT] for e in ledger))
        if missing_tokens or missing_requests:
            self._charge(ledger, now, missing_tokens, missing_requests, window)

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
        return _empty_state(self.deployment, self.host)


# -- the process's limiters ----------------------------------------------------------------------------


def _host(scheme: str, host: str, port: int | None) -> str:
    return f"{host}:{port or (443 if scheme == 'https' else 80)}"


class Pacer:
    """This process's limiters, one per deployment, all backed by files in ``directory``."""

    def __init__(self, directory: Path | None, opts: Options) -> None:
        self.directory = directory
        """None in replay: nothing is shared and nothing waits."""
        self.options = opts
        self.capacities: dict[tuple[str, str], int] = {}
        self._limiters: dict[tuple[str, str], Limiter] = {}
        self._lock = threading.Lock()

    def limiter(self, host: str, deployment: str) -> Limiter:
        """The limiter of ``deployment`` at ``host`` (``name:port``)."""
        key = (host, deployment)
        with self._lock:
            found = self._limiters.get(key)
            if found is None:
                if self.directory is None:
                    found = ReplayLimiter(deployment, host, self.options)
                else:
                    digest = hashlib.sha1(f"{host}/{deployment}".encode()).hexdigest()[:12]
                    path = self.directory / f"pacing-{digest}.json"
                    found = Limiter(path, deployment, host, self.options, self.capacities.get(key))
                self._limiters[key] = found
            return found

    def close(self) -> None:
        """Close the limiters' files (end of session)."""
        with self._lock:
            for found in self._limiters.values():
                found.close()

    def note_deployment(self, deployment: Any) -> None:
        """Remember the capacity of a deployment this run provisioned (capacity 10 = 10K TPM)."""
        capacity = getattr(deployment, "capacity", None)
        if capacity is None and getattr(deployment, "provisioned", False):
            from pytest_llmops.azure.provision import CAPACITY

            capacity = CAPACITY
        if not capacity:
            return
        from urllib.parse import urlsplit

        parts = urlsplit(deployment.endpoint)
        key = (_host(parts.scheme, parts.hostname or "", parts.port), deployment.deployment)
        with self._lock:
            self.capacities[key] = int(capacity)
            if key in self._limiters:
                self._limiters[key].capacity = int(capacity)


pacer_key = pytest.StashKey["Pacer | None"]()


def pacer(config: pytest.Config) -> Pacer | None:
    """This process's pacer (one that never waits in replay); None with ``llmops_pacing = false``."""
    if pacer_key not in config.stash:
        from pytest_llmops import resources
        from pytest_llmops import settings as settings_mod

        opts = options(config)
        live = settings_mod.get(config).network
        made = Pacer(resources.state_dir(config) if live else None, opts) if opts.enabled else None
        if made is not None:
            config.add_cleanup(made.close)
        config.stash[pacer_key] = made
    return config.stash[pacer_key]


# -- the transport -------------------------------------------------------------------------------------


@dataclass
class _Plan:
    limiter: Limiter
    tokens: int
    body: dict[str, Any]


class PacedTransport:
    """Wraps an ``httpx2`` transport (sync or async): each request to a deployment waits for
    room in its limiter, is reconciled after, and is sent again after a 429's Retry-After."""

    def __init__(self, inner: Any, the_pacer: Pacer) -> None:
        self.inner = inner
        self.pacer = the_pacer

    def _plan(self, request: Any) -> _Plan | None:
        url = request.url
        body: dict[str, Any] = {}
        if request.method == "POST":
            try:
                parsed = json.loads(request.content or b"{}")
            except (ValueError, UnicodeDecodeError, RuntimeError):
                parsed = {}  # not JSON, or a streamed upload: paced by its count only
            body = parsed if isinstance(parsed, dict) else {}
        found = _DEPLOYMENT_RE.search(url.path)
        deployment = found.group(1) if found else (str(body.get("model") or "") if body else "")
        if not deployment:
            return None  # not a deployment's inference call: nothing to pace
        limiter = self.pacer.limiter(_host(url.scheme, url.host, url.port), deployment)
        return _Plan(limiter, estimate(body, self.pacer.options.completion_budget), body)

    def handle_request(self, request: Any) -> Any:
        plan = self._plan(request)
        if plan is None:
            return self.inner.handle_request(request)
        retries = self.pacer.options.max_retries
        for attempt in itertools.count():
            reservation = plan.limiter.wait(plan.tokens)
            try:
                response = self.inner.handle_request(request)
            except BaseException:
                plan.limiter.settle(reservation, None, {})
                raise
            if response.status_code != 429:
                return self._settled(plan, reservation, response)
            response.read()
            response.close()
            plan.limiter.settle(reservation, 429, response.headers, retrying=attempt < retries)
            if attempt >= retries:
                raise self._exhausted(plan, attempt, response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def handle_async_request(self, request: Any) -> Any:
        plan = self._plan(request)
        if plan is None:
            return await self.inner.handle_async_request(request)
        retries = self.pacer.options.max_retries
        for attempt in itertools.count():
            reservation = await plan.limiter.wait_async(plan.tokens)
            try:
                response = await self.inner.handle_async_request(request)
            except BaseException:
                plan.limiter.settle(reservation, None, {})
                raise
            if response.status_code != 429:
                return self._settled(plan, reservation, response)
            await response.aread()
            await response.aclose()
            plan.limiter.settle(reservation, 429, response.headers, retrying=attempt < retries)
            if attempt >= retries:
                raise self._exhausted(plan, attempt, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _settled(self, plan: _Plan, reservation: Reservation, response: Any) -> Any:
        """Settle now, or, for a JSON answer, once its body (and usage) has been read."""
        status, headers = response.status_code, response.headers
        if not plan.limiter.keeps_ledger:
            return response
        content_type = headers.get("content-type", "")
        if not (200 <= status < 300 and "json" in content_type):
            plan.limiter.settle(reservation, status, headers)
            return response
        answered_at = time.time()

        def done(raw: bytes | None, encoding: str = headers.get("content-encoding", "")) -> None:
            usage = _usage(raw, encoding) if raw is not None else None
            charge = charged(plan.body, usage) if usage else None
            plan.limiter.settle(reservation, status, headers, charge, answered_at=answered_at)

        if response.is_stream_consumed:  # read already (vcrpy's recorded answers are), and decoded
            done(response.content, "")
        else:
            response.stream = _sniffer_class()(response.stream, done)
        return response

    def _exhausted(self, plan: _Plan, attempt: int, response: Any) -> RateLimitExhausted:
        plan.limiter.exhausted()
        state = plan.limiter.snapshot()
        try:
            said = json.loads(response.content)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            said = response.text[:300]
        return RateLimitExhausted(
            f"{plan.limiter.deployment} at {plan.limiter.host} answered 429 Too Many Requests to "
            f"{attempt + 1} attempts of one request, each sent again after its Retry-After (the run "
            f"waited {held_seconds(state):.1f} s for the limit so far; limits: "
            f"{state.get('limits', 'unknown')}).\n"
            f"The service said: {said}\n"
            "Something else shares this deployment's quota, or the limits are higher than the deployment's. "
            "Lower llmops_tokens_per_minute / llmops_requests_per_minute, raise llmops_max_429_retries, "
            "or run with fewer xdist workers."
        )

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __enter__(self) -> PacedTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)

    async def __aenter__(self) -> PacedTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.inner.__aexit__(*args)


def _usage(raw: bytes, encoding: str) -> dict[str, Any] | None:
    """The ``usage`` object of a JSON answer (raw bytes, maybe compressed)."""
    import zlib

    try:
        if encoding.strip() in ("gzip", "deflate"):
            raw = zlib.decompress(raw, 47)  # 32 + 15: gzip or zlib header, detected
        elif encoding.strip():
            return None
        usage = json.loads(raw).get("usage")
    except (ValueError, zlib.error, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


@functools.cache
def _sniffer_class() -> type:
    """An ``httpx2`` byte stream that passes chunks through and hands the whole body (or
    None, if closed early) to ``done`` once."""
    import httpx2

    class UsageSniffer(httpx2.SyncByteStream, httpx2.AsyncByteStream):
        def __init__(self, stream: Any, done: Callable[[bytes | None], None]) -> None:
            self._stream = stream
            self._done: Callable[[bytes | None], None] | None = done
            self._parts: list[bytes] = []

        def _finish(self, complete: bool) -> None:
            done, self._done = self._done, None
            if done is not None:
                done(b"".join(self._parts) if complete else None)

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._stream:
                self._parts.append(chunk)
                yield chunk
            self._finish(True)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._stream:
                self._parts.append(chunk)
                yield chunk
            self._finish(True)

        def close(self) -> None:
            self._finish(False)
            self._stream.close()

        async def aclose(self) -> None:
            self._finish(False)
            await self._stream.aclose()

    return UsageSniffer


def instrument(client: ClientT, config: pytest.Config, deployment: Any = None) -> ClientT:
    """Give one of the plugin's openai clients fault injection (every mode) and pacing
    (live and record; in replay only the recorded 429s' retries), at its transports."""
    from pytest_llmops import faults

    http: Any = getattr(client, "_client")  # noqa: B009 - private to openai, not to mypy
    the_pacer = pacer(config)
    if the_pacer is not None and deployment is not None:
        the_pacer.note_deployment(deployment)
    faults_hub = faults.hub(config)

    def wrap(transport: Any) -> Any:
        inner = PacedTransport(transport, the_pacer) if the_pacer is not None else transport
        return faults.FaultTransport(inner, faults_hub)

    http._transport = wrap(http._transport)
    http._mounts = {pattern: (wrap(t) if t is not None else None) for pattern, t in http._mounts.items()}
    return client


# -- the terminal summary ----------------------------------------------------------------------------

summary_key = pytest.StashKey[list[str]]()


def collect_summary(config: pytest.Config, run_dir: Path) -> None:
    """Read every limiter's totals (controller, at the end, before the run folder goes)."""
    lines = []
    for path in sorted(run_dir.glob("pacing-*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        lines.append(summary_line(state))
    if lines:
        config.stash[summary_key] = lines


def summary_line(state: Mapping[str, Any]) -> str:
    """One deployment's pacing, for the terminal."""
    stats = state["stats"]
    line = (
        f"{state['deployment']} at {state['host']}: {stats['requests']} requests; "
        f"waited {held_seconds(state):.1f} s for the rate limit ({stats['held']} requests held, "
        f"{stats['waited']:.1f} s summed over them); "
        f"{stats['throttled']} answered 429 ({stats['retried']} sent again)"
    )
    if stats["exhausted"]:
        line += f"; {stats['exhausted']} still 429 after llmops_max_429_retries (failed)"
    return f"{line}; limits: {state.get('limits', 'none known')}"


def write_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The pacing section of the terminal summary."""
    lines = config.stash.get(summary_key, None)
    if not lines:
        return
    terminalreporter.write_sep("-", "llmops: rate limit")
    for line in lines:
        terminalreporter.write_line(line)
