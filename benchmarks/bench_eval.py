"""What ``llmops_eval.score`` with a ``@scorer`` function costs per test: the same marked test
with and without it, in one session.

Generates a throw-away project whose marked tests each replay one chat completion from
their own cassette, in 2 x R alternating blocks of N tests (plain, scored, plain, scored...)
of one pytest session. A scored test then runs ``llmops_eval.score(short)`` on the answer's
autologged trace: the trace is written to the store at once (``score`` needs it there),
the scorer runs as ``mlflow.genai.evaluate`` runs it, and its feedback is logged with
``mlflow.log_feedback``. Every test is timed (setup, call, teardown) from a conftest hook,
and each block until the tracking writer has flushed what it was handed, so the plain
blocks' deferred trace writes count too. The median over the pairs is reported (the first
pair also pays one-time costs, importing mlflow.genai among them: shown, left out when R >= 3).

    python benchmarks/bench_eval.py                       # 100 tests per block, 3 pairs
    python benchmarks/bench_eval.py --tests 50 --repetitions 5 --keep
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

# The marker benchmark's replayed chat completion per test, and its timing conftest (every
# test timed, CPU too; the last test of a marked block also waits for the writer's flush).
from _harness import run_block_session
from _marker_blocks import CONFTEST
from _marker_project import cassette

TESTS = """
import pytest
from mlflow.genai.scorers import scorer

N = {n}


@scorer
def short(outputs) -> bool:
    return len(str(outputs)) < 2000


def ask(client, i):
    messages = [{{"role": "user", "content": f"Question {{i}}"}}]
    return client.chat.completions.create(model="gpt-4o", messages=messages)
"""

PLAIN = """
@pytest.mark.llmops
@pytest.mark.parametrize("block", [{block!r}])
@pytest.mark.parametrize("i", range(N))
def test_{name}(azure_openai_client, block, i):
    ask(azure_openai_client, i)
"""

SCORED = """
@pytest.mark.llmops
@pytest.mark.parametrize("block", [{block!r}])
@pytest.mark.parametrize("i", range(N))
def test_{name}(azure_openai_client, llmops_eval, block, i):
    ask(azure_openai_client, i)
    (score,) = llmops_eval.score(short)
    assert score.passed
"""


def build(root: Path, n: int, repetitions: int) -> list[str]:
    """Write the project; returns the block names in run order."""
    blocks = [f"{kind}-{r}" for r in range(repetitions) for kind in ("plain", "scored")]
    (root / "conftest.py").write_text(CONFTEST)
    parts = [TESTS.format(n=n)]
    for block in blocks:
        template = SCORED if block.startswith("scored") else PLAIN
        parts.append(template.format(block=block, name=block.replace("-", "_")))
    (root / "test_bench.py").write_text("".join(parts))
    folder = root / "cassettes" / "test_bench"
    folder.mkdir(parents=True)
    for block in blocks:
        for i in range(n):
            (folder / f"test_{block.replace('-', '_')}-{i}-{block}.yaml").write_text(cassette(i))
    return blocks


def run_session(n: int, repetitions: int, keep: bool) -> tuple[dict[str, Any], list[str]] | None:
    root = Path(tempfile.mkdtemp(prefix="llmops-bench-eval-"))
    blocks = build(root, n, repetitions)
    # measure what users get: bytecode caches on
    data = run_block_session(root, {"PYTHONDONTWRITEBYTECODE": None}, keep)
    return None if data is None else (data, blocks)


def report(data: dict[str, Any], blocks: list[str], n: int) -> None:
    times, cpu = data["times"], data["cpu"]
    print(f"\n== {n} marked tests per block, each replaying one chat completion; ms per test")
    print(f"{'block':<10} {'median':>8} {'mean':>8} {'total s':>8} {'cpu mean':>9}")
    for block in blocks:
        values = [t * 1000 for t in times[block]]
        print(
            f"{block:<10} {statistics.median(values):>8.2f} {statistics.mean(values):>8.2f} "
            f"{sum(values) / 1000:>8.2f} {statistics.mean(cpu[block]) * 1000:>9.2f}"
        )
    pairs: list[tuple[float, float, float, float, float]] = []
    for r in range(len(blocks) // 2):
        plain, scored = f"plain-{r}", f"scored-{r}"
        pairs.append((
            (sum(times[scored]) - sum(times[plain])) * 1000 / n,
            (statistics.median(times[scored]) - statistics.median(times[plain])) * 1000,
            (sum(cpu[scored]) - sum(cpu[plain])) * 1000 / n,
            sum(times[scored]) / sum(times[plain]),
            sum(cpu[scored]) / sum(cpu[plain]),
        ))
    print("\npair   score() cost/test: wall (block totals)   median test   cpu   ratio wall   ratio cpu")
    for r, (total, median, cpu_diff, ratio, cpu_ratio) in enumerate(pairs):
        print(f"{r:<6} {total:>36.2f} {median:>13.2f} {cpu_diff:>5.2f} {ratio:>12.2f} {cpu_ratio:>11.2f}")
    steady = pairs[1:] if len(pairs) >= 3 else pairs
    wall, median, cpu_ms, ratio, cpu_ratio = (statistics.median(p[i] for p in steady) for i in range(5))
    print(
        f"llmops_eval.score with a @scorer, per test, median over pairs"
        f"{' after the first' if len(pairs) >= 3 else ''}: {wall:.2f} ms wall (block totals), "
        f"{median:.2f} ms (median test), {cpu_ms:.2f} ms cpu; scored/plain x{ratio:.2f} wall, x{cpu_ratio:.2f} cpu"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=100, help="tests per block (default 100)")
    parser.add_argument("--repetitions", type=int, default=3, help="pairs of blocks (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the generated project, print its path")
    args = parser.parse_args()
    outcome = run_session(args.tests, args.repetitions, args.keep)
    if outcome is None:
        return 1
    report(*outcome, args.tests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
