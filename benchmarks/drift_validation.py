"""False-alarm rate and power of drift detection on seeded synthetic traces.

    python benchmarks/drift_validation.py                 # 500 repetitions per scenario
    python benchmarks/drift_validation.py --reps 100 --jobs 2 --alpha 0.05

Prints a Markdown table (the one in docs/monitoring.md). Without a shift, "flagged" is the
false-alarm rate (any feature drifted after Benjamini-Hochberg) and must stay at or below
alpha; with a shift it is the power. Each repetition draws a new suite (or traffic) and new
traces from fixed seeds, so a rerun gives the same numbers. Exit code 1 when a no-shift
scenario's false-alarm rate exceeds alpha.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from pytest_llmops.monitoring.drift import DriftSettings
from pytest_llmops.monitoring.validation import SCENARIOS, Outcome, Scenario, simulate, table


def _run(args: tuple[Scenario, int, float, int]) -> Outcome:
    scenario, reps, alpha, seed = args
    return simulate(scenario, reps, DriftSettings(alpha=alpha), seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=500, help="repetitions per scenario (default 500)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="run only scenarios whose name contains this")
    args = parser.parse_args(argv)

    scenarios = [s for s in SCENARIOS if args.only in s.name]
    # Split every scenario into chunks so both workers stay busy; chunk seeds differ.
    chunks = max(1, args.jobs * 2)
    work = []
    for scenario in scenarios:
        size = -(-args.reps // chunks)
        for index in range(chunks):
            reps = min(size, args.reps - index * size)
            if reps > 0:
                work.append((scenario, reps, args.alpha, args.seed * 1000 + index))
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        parts = list(pool.map(_run, work))
    outcomes = []
    for scenario in scenarios:
        mine = [p for p in parts if p.scenario is scenario or p.scenario == scenario]
        outcomes.append(
            Outcome(
                scenario,
                sum(p.repetitions for p in mine),
                sum(p.flagged for p in mine),
                sum(p.target_flagged for p in mine),
                sum(p.seconds for p in mine),
            )
        )
    print(table(outcomes, args.alpha))
    print(
        f"\n{sum(o.repetitions for o in outcomes)} comparisons in {time.perf_counter() - started:.0f} s "
        f"with {args.jobs} worker(s), python {sys.version.split()[0]}."
    )
    bad = [o for o in outcomes if o.scenario.target is None and o.rate > args.alpha]
    for outcome in bad:
        print(f"FALSE-ALARM RATE ABOVE ALPHA: {outcome.scenario.name} ({outcome.rate:.1%})", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
