"""Pacing: live and record runs stay within the deployment's rate limit, across xdist
workers, over real HTTP against the lab double's tokens-per-minute limit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from pytest_llmops.traffic.estimate import charged, estimate
from pytest_llmops.traffic.ledger import Limits, held_seconds
from pytest_llmops.traffic.limiter import PROBE_POLL_S, Limiter
from pytest_llmops.traffic.options import Options
from pytest_llmops.traffic.paced_transport import PacedTransport
from pytest_llmops.traffic.pacer import Pacer
from tests import sleeps
from tests.double import LabDouble
from tests.double.routing import Response

WINDOW_S = 3.0
"""The double's and the limiter's window in these tests: the logic of a minute, in 3 s."""
MAX_TOKENS = 500
PROMPT_TOKENS = 10  # the double counts "Question number 12?" as 4 tokens, +3 per message, +3
CHARGE = PROMPT_TOKENS + MAX_TOKENS  # what the double charges per call (Azure charges max_tokens up front)

SIXTY = f"""
import pytest

@pytest.mark.parametrize("n", range(60))
def test_ask(azure_openai_client, azure_openai_deployment, n):
    reply = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, max_tokens={MAX_TOKENS},
        messages=[{{"role": "user", "content": f"Question number {{n}}?"}}])
    assert reply.choices[0].message.content
"""

ONE_CALL = """
def test_ask(azure_openai_client, azure_openai_deployment):
    reply = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": "Hello there"}])
    assert reply.choices[0].message.content
"""


class Arrivals:
    """When each chat request reached the double, and what it answered."""

    def __init__(self, double: LabDouble, monkeypatch: pytest.MonkeyPatch) -> None:
        self.times: list[float] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        handle = double.handle

        def timed(method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
            arrived = time.monotonic()
            response = handle(method, target, headers, body)
            if "chat/completions" in target:
                with self._lock:
                    self.times.append(arrived)
                    self.statuses.append(response.status)
            return response

        monkeypatch.setattr(double, "handle", timed)

    @property
    def span(self) -> float:
        return max(self.times) - min(self.times)


@pytest.fixture
def arrivals(lab_double: LabDouble, monkeypatch: pytest.MonkeyPatch) -> Arrivals:
    """Arrival times and statuses of the double's chat requests."""
    return Arrivals(lab_double, monkeypatch)


def ini(pytester: pytest.Pytester, **options: object) -> None:
    lines = "\n".join(f"{name} = {value}" for name, value in options.items())
    pytester.makeini(f"[pytest]\n{lines}\n")


def theoretical_minimum(calls: int, charge: int, tokens_per_window: int, window: float) -> float:
    """The double admits a call when the last ``window`` seconds charged at most
    ``tokens_per_window - charge``: batches of ``tokens_per_window // charge`` calls, one
    window apart; the last batch starts this long after the first call."""
    per_window = tokens_per_window // charge
    return ((calls - 1) // per_window) * window


def test_sixty_calls_on_two_workers_stay_within_10k_tokens_per_minute(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], arrivals: Arrivals
) -> None:
    lab_double.openai.tokens_per_minute = 10_000
    lab_double.openai.rate_limit_window = WINDOW_S
    ini(pytester, llmops_rate_limit_window=WINDOW_S)  # the limits themselves come from the headers
    pytester.makepyfile(test_sixty=SIXTY)

    result = pytester.runpytest_subprocess("-n", "2", "--llmops-live", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=60)
    assert arrivals.statuses == [200] * 60  # not one 429: every call was admitted first time
    minimum = theoretical_minimum(60, CHARGE, 10_000, WINDOW_S)  # 19 calls per window: 3 windows
    print(f"paced span {arrivals.span:.2f} s, theoretical minimum {minimum:.2f} s")
    assert minimum <= arrivals.span <= minimum + 1.5
    result.stdout.fnmatch_lines(
        [
            "*llmops: rate limit*",
            f"gpt-4o at 127.0.0.1:{lab_double.port}: 60 requests; waited * s for the rate limit "
            "(* requests held, * s summed over them); 0 answered 429 (0 sent again); "
            "limits: 10000 tokens and 60 requests per 3 s (response headers)",
        ]
    )
    assert lab_double.handler_errors == []


def test_ini_limits_below_the_deployments_are_kept(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], arrivals: Arrivals
) -> None:
    ini(pytester, llmops_tokens_per_minute=1600, llmops_rate_limit_window=1)
    pytester.makepyfile(test_eight=SIXTY.replace("range(60)", "range(8)"))

    result = pytester.runpytest("--llmops-live")

    result.assert_outcomes(passed=8)
    # 3 calls of 510 tokens fit in 1600: batches of 3, 3 and 2, one window apart.
    assert arrivals.span >= theoretical_minimum(8, CHARGE, 1600, 1.0) - 0.05
    result.stdout.fnmatch_lines(
        ["*8 requests;*; limits: 1600 tokens and 6000 requests per 1 s (ini, response headers)"]
    )


def test_usage_from_other_clients_counts_through_the_remaining_headers(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], arrivals: Arrivals
) -> None:
    lab_double.openai.tokens_per_minute = 2000
    lab_double.openai.rate_limit_window = 1.0
    ini(pytester, llmops_rate_limit_window=1)
    pytester.makepyfile(
        test_shared=SIXTY.replace("range(60)", "range(4)")
        + """
import json
import os
import urllib.request

def setup_module():
    # Someone else (not an httpx client: the limiter does not see it) uses 1400 of the 2000
    # tokens just before the suite starts.
    url = os.environ["AZURE_OPENAI_ENDPOINT"] + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-05-01-preview"
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1390}).encode()
    sent = urllib.request.Request(url, data=body, method="POST", headers={
        "api-key": os.environ["AZURE_OPENAI_API_KEY"], "content-type": "application/json"})
    urllib.request.urlopen(sent).read()
"""
    )

    result = pytester.runpytest("--llmops-live")

    result.assert_outcomes(passed=4)
    assert 429 not in arrivals.statuses  # the first answer said 1400 were used: the second call waited
    result.stdout.fnmatch_lines(["*4 requests;*; 0 answered 429 (0 sent again);*"])


def test_a_429_is_retried_after_its_retry_after_and_counted(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str]
) -> None:
    lab_double.openai.fail_next(429, count=2, retry_after=0.2)
    pytester.makepyfile(test_one=ONE_CALL)

    started = time.monotonic()
    result = pytester.runpytest("--llmops-live")

    result.assert_outcomes(passed=1)
    assert time.monotonic() - started >= 0.4  # retry-after-ms honoured twice
    sent = lab_double.requests_to("chat/completions")
    assert [r.headers["x-stainless-retry-count"] for r in sent] == ["0", "0", "0"]  # the SDK saw no 429
    result.stdout.fnmatch_lines(["*: 3 requests; waited 0.* s for the rate limit*; 2 answered 429 (2 sent again);*"])


def test_429s_beyond_the_budget_fail_the_test_clearly(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str]
) -> None:
    lab_double.openai.fail_next(429, count=5, retry_after=0.05)
    ini(pytester, llmops_max_429_retries=2)
    pytester.makepyfile(test_one=ONE_CALL)

    result = pytester.runpytest("--llmops-live", "-rA")

    result.assert_outcomes(failed=1)
    assert lab_double.openai.pending_faults == 2  # 3 attempts: the first and 2 retries
    result.stdout.fnmatch_lines(
        [
            f"RateLimitExhausted: gpt-4o at 127.0.0.1:{lab_double.port} answered 429 Too Many Requests to 3 "
            "attempts of one request*",
            "The service said: Your requests to gpt-4o*Please retry after 1 seconds*",
            "*raise llmops_max_429_retries*",
            "*3 answered 429 (2 sent again); 1 still 429 after llmops_max_429_retries (failed)*",
        ]
    )
    result.stdout.no_fnmatch_line("*SKIP*")


def test_async_client_is_paced_too(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], arrivals: Arrivals
) -> None:
    lab_double.openai.tokens_per_minute = 1100
    lab_double.openai.rate_limit_window = 1.0
    ini(pytester, llmops_rate_limit_window=1)
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n")
    pytester.makepyfile(
        test_gather=f"""
import asyncio
import pytest

@pytest.mark.anyio
async def test_six_at_once(azure_openai_async_client, azure_openai_deployment):
    async def ask(n):
        return await azure_openai_async_client.chat.completions.create(
            model=azure_openai_deployment.deployment, max_tokens={MAX_TOKENS},
            messages=[{{"role": "user", "content": f"Question number {{n}}?"}}])
    replies = await asyncio.gather(*(ask(n) for n in range(6)))
    assert all(r.choices[0].message.content for r in replies)
"""
    )

    result = pytester.runpytest("--llmops-live")

    result.assert_outcomes(passed=1)
    assert arrivals.statuses == [200] * 6
    assert arrivals.span >= theoretical_minimum(6, CHARGE, 1100, 1.0) - 0.05  # 2 per window


def test_replay_never_waits(pytester: pytest.Pytester, lab_double: LabDouble, double_env, monkeypatch):
    pytester.makepyfile(test_eight=SIXTY.replace("range(60)", "range(8)"))
    pytester.runpytest("--llmops-record").assert_outcomes(passed=8)
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    ini(pytester, llmops_tokens_per_minute=100, llmops_rate_limit_window=60)

    pytester.makeconftest(sleeps.CONFTEST)
    result = pytester.runpytest()

    result.assert_outcomes(passed=8)
    assert sleeps.slept(pytester.path, "openai", "pytest_llmops.") == []  # nothing waited
    result.stdout.no_fnmatch_line("*llmops: rate limit*")


def test_429s_met_while_recording_replay_without_waiting(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], monkeypatch
) -> None:
    lab_double.openai.fail_next(429, count=3, retry_after=0.5)  # one more than the SDK's own retries
    pytester.makepyfile(test_one=ONE_CALL)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=1)
    text = (pytester.path / "cassettes" / "test_one" / "test_ask.yaml").read_text()
    assert text.count("code: 429") == 3 and text.count("code: 200") == 1  # the cassette is what happened
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)

    pytester.makeconftest(sleeps.CONFTEST)
    pytester.runpytest().assert_outcomes(passed=1)  # the same 4 requests, the 429s retried at once

    assert sleeps.slept(pytester.path, "openai", "pytest_llmops.") == []  # nothing waited
    ini(pytester, llmops_pacing="false")
    pytester.runpytest().assert_outcomes(failed=1)  # the SDK alone gives up after 2 retries


def test_pacing_can_be_switched_off(pytester: pytest.Pytester, lab_double: LabDouble, double_env):
    lab_double.openai.fail_next(429, count=1, retry_after=0.05)
    ini(pytester, llmops_pacing="false")
    pytester.makepyfile(test_one=ONE_CALL)

    result = pytester.runpytest("--llmops-live")

    result.assert_outcomes(passed=1)  # the SDK's own retry
    sent = lab_double.requests_to("chat/completions")
    assert [r.headers["x-stainless-retry-count"] for r in sent] == ["0", "1"]
    result.stdout.no_fnmatch_line("*llmops: rate limit*")


def test_a_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester, lab_double, double_env):
    ini(pytester, llmops_tokens_per_minute="10K")
    pytester.makepyfile(test_one=ONE_CALL)

    result = pytester.runpytest("--llmops-live")

    # Checked once at start-up (issue 14.7): a usage error, not a setup error in each test.
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*llmops_tokens_per_minute = '10K' is not a whole number >= 0*"])


# -- the limiter itself: two processes' views of one file -----------------------------------------------


def limiter(tmp_path: Path, **options: object) -> Limiter:
    return Limiter(tmp_path / "pacing-x.json", "gpt-4o", "example:443", Options(**options))  # type: ignore[arg-type]


def test_two_limiters_on_one_file_share_the_window(tmp_path: Path) -> None:
    worker_a = limiter(tmp_path, tokens=10_000, window=60.0)
    worker_b = limiter(tmp_path, tokens=10_000, window=60.0)

    first, _ = worker_a.try_acquire(6000, 0.0)
    second, wait = worker_b.try_acquire(6000, 0.0)

    assert first is not None and second is None
    assert 60.0 < wait <= 61.0  # in flight: the window plus a grace second
    worker_a.settle(first, 200, {}, charge=3000)  # the answer used less than reserved
    third, _ = worker_b.try_acquire(6000, 0.0)
    assert third is not None
    assert worker_a.snapshot()["stats"]["requests"] == 2


def test_the_wait_reported_is_wall_time_not_the_sum_over_workers(tmp_path: Path) -> None:
    worker_a, worker_b = limiter(tmp_path, tokens=1000), limiter(tmp_path, tokens=1000)
    worker_a.try_acquire(1, 10.0)  # these two waited 10 s each, at the same time
    worker_b.try_acquire(1, 10.0)

    state = worker_a.snapshot()

    assert 10.0 <= held_seconds(state) < 10.5 and state["stats"]["waited"] == 20.0


def test_a_429_holds_every_worker_until_retry_after(tmp_path: Path) -> None:
    worker_a, worker_b = limiter(tmp_path), limiter(tmp_path)
    reservation, _ = worker_a.try_acquire(100, 0.0)
    assert reservation is not None

    worker_a.settle(reservation, 429, {"retry-after": "2", "retry-after-ms": "1500"}, retrying=True)

    blocked, wait = worker_b.try_acquire(100, 0.0)
    assert blocked is None and 1.4 < wait <= 1.5
    stats = worker_b.snapshot()["stats"]
    assert (stats["throttled"], stats["retried"]) == (1, 1)
    assert worker_b.snapshot()["ledger"] == []  # a refused request costs nothing


def test_limits_are_learned_from_headers_and_the_smallest_wins(tmp_path: Path) -> None:
    worker = limiter(tmp_path, requests=30)
    reservation, _ = worker.try_acquire(100, 0.0)
    assert reservation is not None
    headers = {
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-renewalperiod-tokens": "60",
    }

    worker.settle(reservation, 200, headers, charge=100)

    state = worker.snapshot()
    assert worker.limits(state) == Limits(10_000, 30, 60.0, "ini, response headers")
    assert sum(entry[2] for entry in state["ledger"]) == 1000  # the service counts 900 more than we sent
    assert sum(entry[4] for entry in state["ledger"]) == 1  # and no other request


def test_unknown_limits_send_one_request_at_a_time_until_the_first_answer(tmp_path: Path) -> None:
    worker = limiter(tmp_path)
    probe, _ = worker.try_acquire(100, 0.0)
    assert probe is not None
    held, wait = worker.try_acquire(100, 0.0)
    assert held is None and wait == PROBE_POLL_S
    worker.settle(probe, 200, {})  # no rate-limit headers at all: nothing to pace
    assert worker.try_acquire(100, 0.0)[0] is not None


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}, 100 + 7 + 50),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 40}]}]}, 10 + 7 + 256),
        ({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 10, "n": 3}, 1 + 7 + 30),
        ({"input": "x" * 800, "model": "text-embedding-3-small"}, 200),
    ],
)
def test_estimates(body: dict[str, object], tokens: int) -> None:
    assert estimate(body) == tokens


def test_charge_is_the_prompt_plus_the_requested_maximum() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}
    assert charged({"max_tokens": 500}, usage) == 512
    assert charged({}, usage) == 42



# -- the transport: reconciliation with the usage of the answer ---------------------------------------


class _Unread(httpx2.SyncByteStream):
    """A body still on the wire (as from a real connection), unlike vcrpy's read answers."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[:10]
        yield self.data[10:]


@pytest.mark.parametrize("already_read", [True, False])
def test_the_answers_usage_replaces_the_estimate(tmp_path: Path, already_read: bool) -> None:
    answer = json.dumps({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 7}}).encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "application/json", "x-ratelimit-limit-tokens": "10000"}
        if already_read:
            return httpx2.Response(200, headers=headers, content=answer)
        return httpx2.Response(200, headers=headers, stream=_Unread(answer))

    the_pacer = Pacer(tmp_path, Options())
    client = httpx2.Client(transport=PacedTransport(httpx2.MockTransport(handler), the_pacer))
    body = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 100}

    client.post("http://h/openai/deployments/gpt-4o/chat/completions", json=body).read()

    ledger = the_pacer.limiter("h:80", "gpt-4o").snapshot()["ledger"]
    assert [(entry[2], entry[3], entry[4]) for entry in ledger] == [(140, 0, 1)]  # 40 + max_tokens, answered
