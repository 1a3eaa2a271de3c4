"""The in-session block method of ``bench_marker.py --blocks``: the steady cost of a marked
test once everything has started.

A throw-away project whose tests each replay one chat completion from their own cassette,
in 2 x R alternating blocks of N tests (unmarked, marked, unmarked, marked, ...) of one
pytest session, each test timed (setup, call and teardown) from a conftest hook. A marked
block is timed until the tracking writer has flushed what it was handed. The first pair
also pays the one-time costs (importing mlflow, creating the store) and is left out when
R >= 3. Without xdist, a session of 2 x R x N >= 200 tracked tests writes its traces
through the helper process, on the second core: its CPU time is not in the tests'
process's (``bench_marker.py`` without ``--blocks`` counts it).

``--naive``: "marked" blocks use MLflow the obvious way instead of the plugin: around each
test ``mlflow.openai.autolog()``, ``mlflow.start_run(nested=True)``, one ``log_param``, one
``log_metric``, ``end_run`` and autolog off again, with MLflow's own synchronous trace export.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from _harness import run_block_session
from _marker_project import TESTS, cassette

CONFTEST = '''
import json, os, time
import pytest

TIMES = {}
CPU = {}
FLUSH = {}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        return (yield)
    finally:
        block = item.callspec.params["block"]
        last = nextitem is None or nextitem.callspec.params["block"] != block
        if last and item.get_closest_marker("llmops"):
            from pytest_llmops.tracking import hooks

            flush_start = time.perf_counter()
            hooks.get(item.config).flush()
            FLUSH[block] = time.perf_counter() - flush_start
        TIMES.setdefault(block, []).append(time.perf_counter() - start)
        CPU.setdefault(block, []).append(time.process_time() - cpu_start)


def pytest_sessionfinish(session):
    with open(os.environ["BENCH_OUT"], "w") as out:
        json.dump({"times": TIMES, "cpu": CPU, "flush": FLUSH}, out)
'''

NAIVE_CONFTEST = '''

@pytest.fixture
def naive_run(request):
    """What a project writes without the plugin: a run around each test, autolog on for it."""
    import mlflow

    if not getattr(naive_run, "ready", False):
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
        mlflow.set_tracking_uri(f"sqlite:///{request.config.rootpath}/naive.db")
        mlflow.set_experiment("naive")
        naive_run.ready = True
    mlflow.openai.autolog()
    with mlflow.start_run(run_name=request.node.nodeid, nested=True):
        mlflow.log_param("i", request.node.callspec.params["i"])
        yield
        mlflow.log_metric("done", 1)
    mlflow.openai.autolog(disable=True)
'''

BLOCK = """
{mark}@pytest.mark.parametrize("block", [{block!r}])
@pytest.mark.parametrize("i", range(N))
def test_{name}(azure_openai_client, block, i{extra}):
    ask(azure_openai_client, i)
"""


def build(root: Path, n: int, repetitions: int, naive: bool) -> list[str]:
    """Write the project; returns the block names in run order."""
    blocks = [f"{kind}-{r}" for r in range(repetitions) for kind in ("unmarked", "marked")]
    (root / "conftest.py").write_text(CONFTEST + (NAIVE_CONFTEST if naive else ""))
    # One test function per block, in block order, so that pytest runs the blocks in turn.
    parts = [TESTS.format(n=n)]
    for block in blocks:
        marked = block.startswith("marked")
        parts.append(BLOCK.format(
            mark="@pytest.mark.llmops_cassette\n" if naive or not marked else "@pytest.mark.llmops\n",
            block=block,
            name=block.replace("-", "_"),
            extra=", naive_run" if naive and marked else "",
        ))
    (root / "test_bench.py").write_text("".join(parts))
    folder = root / "cassettes" / "test_bench"
    folder.mkdir(parents=True, exist_ok=True)
    text = {i: cassette(i) for i in range(n)}
    for block in blocks:
        name = block.replace("-", "_")
        for i in range(n):
            (folder / f"test_{name}-{i}-{block}.yaml").write_text(text[i])
    return blocks


def run_session(
    n: int, repetitions: int, naive: bool, keep: bool, inline_traces: bool = False
) -> tuple[dict[str, Any], list[str]] | None:
    root = Path(tempfile.mkdtemp(prefix="llmops-bench-"))
    blocks = build(root, n, repetitions, naive)
    data = run_block_session(root, {"LLMOPS_TRACE_PROCESS": "0"} if inline_traces else {}, keep)
    return None if data is None else (data, blocks)


def report(title: str, data: dict[str, Any], blocks: list[str], n: int) -> None:
    times, cpu, flush = data["times"], data["cpu"], data["flush"]
    print(f"\n== {title}: {n} tests per block, each replaying one chat completion; ms per test")
    print(f"{'block':<12} {'median':>8} {'mean':>8} {'total s':>8} {'cpu mean':>9} {'flush ms':>9}")
    for block in blocks:
        values = [t * 1000 for t in times[block]]
        print(
            f"{block:<12} {statistics.median(values):>8.2f} {statistics.mean(values):>8.2f} "
            f"{sum(values) / 1000:>8.2f} {statistics.mean(cpu[block]) * 1000:>9.2f} "
            f"{flush.get(block, 0) * 1000:>9.1f}"
        )
    pairs = []
    for r in range(len(blocks) // 2):
        unmarked, marked = f"unmarked-{r}", f"marked-{r}"
        pairs.append((
            # flush included: it is timed inside the last test
            (sum(times[marked]) - sum(times[unmarked])) * 1000 / n,
            (statistics.median(times[marked]) - statistics.median(times[unmarked])) * 1000,
            (sum(cpu[marked]) - sum(cpu[unmarked])) * 1000 / n,
            sum(times[marked]) / sum(times[unmarked]),
        ))
    print("\npair   overhead/test: wall (block totals)   median test   cpu (block totals)   ratio")
    for r, (total_diff, median_diff, cpu_diff, ratio) in enumerate(pairs):
        print(f"{r:<6} {total_diff:>34.2f} {median_diff:>13.2f} {cpu_diff:>20.2f} {ratio:>7.2f}")
    steady = pairs[1:] if len(pairs) >= 3 else pairs
    print(
        f"overhead per marked test, median over pairs{' after the first' if len(pairs) >= 3 else ''}: "
        f"{statistics.median(p[0] for p in steady):.2f} ms wall (block totals), "
        f"{statistics.median(p[1] for p in steady):.2f} ms (median test), "
        f"{statistics.median(p[2] for p in steady):.2f} ms cpu (block totals), "
        f"x{statistics.median(p[3] for p in steady):.2f}"
    )


def main(args: Any) -> int:
    """``bench_marker.py --blocks``: one session (and one more with ``--naive``)."""
    sessions = [("pytest-llmops", False)] + ([("naive MLflow", True)] if args.naive else [])
    for title, naive in sessions:
        outcome = run_session(args.tests, args.repetitions, naive, args.keep, args.inline_traces)
        if outcome is None:
            return 1
        report(title, *outcome, args.tests)
    return 0
