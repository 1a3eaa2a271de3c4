"""Pacing of live runs within a deployment's rate limit (issue 9).

    python benchmarks/bench_pacing.py [--window 60] [--calls 60] [--workers 2] [--skip-run]

B1  cost of the limiter per request when nothing is limited: one reservation and one
    settlement on the shared file (filelock + JSON), and the plugin's transport stack
    (fault injection + pacing) around an in-memory transport, against that transport bare,
    in live mode (ledger) and in replay (no ledger).
B2  ``--calls`` chat completions (max_tokens 500: 510 tokens each on the double) in
    ``pytest -n --workers --llmops-live`` against the lab double limited to 10,000 tokens per
    ``--window`` seconds (60: the real minute). Reports the span from the first to the last
    request the double received against the theoretical minimum (the double admits
    10000 // 510 = 19 calls per window: the last batch starts (calls - 1) // 19 windows after
    the first call), the 429s the double answered, and the whole run's wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import machine, workdir

MAX_TOKENS = 500
CHARGE = 510  # "Question number N?": 4 tokens, +3 per message, +3 to prime, + max_tokens
TOKENS_PER_WINDOW = 10_000


def limiter_overhead(repetitions: int = 5, requests: int = 2000) -> dict[str, float]:
    """Microseconds per request of the limiter and of the transport stack."""
    import tempfile

    import httpx2

    from pytest_llmops.traffic.faults.hub import FaultHub
    from pytest_llmops.traffic.faults.transports import FaultTransport
    from pytest_llmops.traffic.limiter import Limiter
    from pytest_llmops.traffic.options import Options
    from pytest_llmops.traffic.paced_transport import PacedTransport
    from pytest_llmops.traffic.pacer import Pacer

    results: dict[str, list[float]] = {"ledger": [], "bare": [], "live stack": [], "replay stack": []}
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"Question number 1?"}],"max_tokens":500}'
    answer = b'{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}'

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=answer)

    def run(client: httpx2.Client) -> float:
        started = time.perf_counter()
        for _ in range(requests):
            client.post("http://127.0.0.1:9/openai/deployments/gpt-4o/chat/completions", content=body).read()
        return (time.perf_counter() - started) / requests * 1e6

    for _ in range(repetitions):
        with tempfile.TemporaryDirectory() as folder:
            opts = Options()
            limiter = Limiter(Path(folder) / "pacing-bench.json", "gpt-4o", "h:443", opts)
            started = time.perf_counter()
            for _ in range(requests):
                reservation, _ = limiter.try_acquire(510, 0.0)
                assert reservation is not None
                limiter.settle(reservation, 200, {}, charge=510)
            results["ledger"].append((time.perf_counter() - started) / requests * 1e6)

            hub = FaultHub()
            results["bare"].append(run(httpx2.Client(transport=httpx2.MockTransport(handler))))
            for name, directory in (("live stack", Path(folder)), ("replay stack", None)):
                paced = PacedTransport(httpx2.MockTransport(handler), Pacer(directory, opts))
                results[name].append(run(httpx2.Client(transport=FaultTransport(paced, hub))))
    return {name: statistics.median(values) for name, values in results.items()}


SUITE = """
import pytest

@pytest.mark.parametrize("n", range({calls}))
def test_ask(azure_openai_client, azure_openai_deployment, n):
    reply = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, max_tokens={max_tokens},
        messages=[{{"role": "user", "content": f"Question number {{n}}?"}}])
    assert reply.choices[0].message.content
"""


def paced_run(calls: int, window: float, workers: int) -> dict[str, object]:
    """Run the suite against the double and time what the double saw."""
    from tests.double import LabDouble

    folder = workdir(f"pacing-{os.getpid()}")  # concurrent runs must not remove each other's state
    (folder / "pytest.ini").write_text(f"[pytest]\nllmops_rate_limit_window = {window:g}\n")
    (folder / "test_paced.py").write_text(textwrap.dedent(SUITE.format(calls=calls, max_tokens=MAX_TOKENS)))
    double = LabDouble().start()
    double.openai.tokens_per_minute = TOKENS_PER_WINDOW
    double.openai.rate_limit_window = window
    arrivals: list[tuple[float, int]] = []
    lock = threading.Lock()
    handle = double.handle

    def timed(method: str, target: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        arrived = time.monotonic()
        response = handle(method, target, headers, body)
        if "chat/completions" in target:
            with lock:
                arrivals.append((arrived, response.status))
        return response

    double.handle = timed  # type: ignore[method-assign]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "AZURE_", "MLFLOW_"))}
    env.update(double.client_env())
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    try:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers), "--llmops-live"],
            cwd=folder, env=env, capture_output=True, text=True,
        )
        wall = time.monotonic() - started
    finally:
        double.stop()
        shutil.rmtree(folder, ignore_errors=True)
    times = sorted(t for t, _ in arrivals)
    per_window = TOKENS_PER_WINDOW // CHARGE
    summary = [line for line in result.stdout.splitlines() if "answered 429" in line]
    return {
        "exit code": result.returncode,
        "outcome": result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-500:],
        "requests": len(arrivals),
        "429s": sum(1 for _, status in arrivals if status == 429),
        "span": times[-1] - times[0] if times else float("nan"),
        "minimum": ((calls - 1) // per_window) * window,
        "first request after start": times[0] - started if times else float("nan"),
        "wall": wall,
        "summary": summary[0] if summary else f"(no summary line)\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=60.0, help="the double's and the limiter's window (s)")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-run", action="store_true", help="only B1")
    args = parser.parse_args()

    print(machine())
    costs = limiter_overhead()
    print("\nB1 per request, not limited (median of 5 x 2,000):")
    print(f"  limiter reservation + settlement (flock + JSON)   : {costs['ledger']:.0f} us")
    print(f"  httpx2 client on an in-memory transport, bare:       {costs['bare']:.0f} us")
    print(f"  the plugin's stack around it, live (ledger):          {costs['live stack']:.0f} us "
          f"(+{costs['live stack'] - costs['bare']:.0f} us)")
    print(f"  the plugin's stack around it, replay (no ledger):     {costs['replay stack']:.0f} us "
          f"(+{costs['replay stack'] - costs['bare']:.0f} us)")
    if args.skip_run:
        return
    print(f"\nB2 {args.calls} calls, -n {args.workers}, double at {TOKENS_PER_WINDOW} tokens per {args.window:g} s:")
    run = paced_run(args.calls, args.window, args.workers)
    print(f"  outcome: {run['outcome']} (exit code {run['exit code']})")
    print(f"  requests the double received: {run['requests']}, answered 429: {run['429s']}")
    span, minimum = float(run["span"]), float(run["minimum"])  # type: ignore[arg-type]
    print(f"  span first -> last request: {span:.2f} s; theoretical minimum {minimum:.2f} s "
          f"(+{span - minimum:.2f} s, {100 * (span - minimum) / minimum:.1f} %)")
    print(f"  first request {run['first request after start']:.2f} s after start (pytest, xdist, imports)")
    print(f"  wall time of the run: {run['wall']:.2f} s")
    print(f"  summary: {run['summary']}")


if __name__ == "__main__":
    main()
