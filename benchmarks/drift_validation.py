"""False-alarm rate and power of drift detection on seeded synthetic traces.

    python benchmarks/drift_validation.py                 # 500 repetitions per scenario
    python benchmarks/drift_validation.py --reps 100 --jobs 2 --alpha 0.05
    python benchmarks/drift_validation.py --scale 100000 --reps 100   # false alarms at scale

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
from pytest_llmops.monitoring.synthetic import Shift
from pytest_llmops.monitoring.validation import (
    SCENARIOS,
    Outcome,
    ScaleOutcome,
    Scenario,
    simulate,
    simulate_columns,
    table,
    wilson,
)

SCALE_SHIFTS = {"no shift": Shift(), "latency wobble +2 %": Shift(latency_scale=1.02)}


def _run_scale(args: tuple[str, int, int, float, int, int]) -> tuple[str, ScaleOutcome]:
    name, n, reps, alpha, seed, permutations = args
    settings = DriftSettings(alpha=alpha, permutations=permutations)
    return name, simulate_columns(SCALE_SHIFTS[name], n=n, repetitions=reps, seed=seed, settings=settings)


def scale_main(args: argparse.Namespace) -> int:
    """False alarms of traffic at ``--scale`` traces per side: no shift, and a 2 % latency wobble."""
    chunks = max(10, args.jobs * 2)  # small chunks: progress on stderr as they finish
    work = []
    for name in SCALE_SHIFTS:
        if args.only not in name:
            continue
        size = -(-args.reps // chunks)
        for index in range(chunks):
            reps = min(size, args.reps - index * size)
            if reps > 0:
                work.append((name, args.scale, reps, args.alpha, args.seed * 1000 + index, args.permutations))
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        parts = []
        for part in pool.map(_run_scale, work):
            parts.append(part)
            name, outcome = part
            print(
                f"{name}: {outcome.flagged} of {outcome.repetitions} flagged, {outcome.below_threshold} below",
                file=sys.stderr,
            )
    print(
        "| traffic, per side | current side | repetitions | DRIFT (any feature) | 95 % CI | changed below threshold | s per comparison |"
    )
    print("|---:|---|---:|---:|---|---:|---:|")
    bad = False
    for name in SCALE_SHIFTS:
        mine = [outcome for part_name, outcome in parts if part_name == name]
        if not mine:
            continue
        reps = sum(o.repetitions for o in mine)
        flagged = sum(o.flagged for o in mine)
        below = sum(o.below_threshold for o in mine)
        low, high = wilson(flagged, reps)
        seconds = sum(o.seconds for o in mine) / reps
        print(
            f"| {args.scale:,} | {name} | {reps} | {flagged / reps:.1%} | {low:.1%} - {high:.1%} | {below / reps:.1%} | {seconds:.1f} |"
        )
        bad = bad or flagged / reps > args.alpha
    print(
        f"\n{len(work)} chunks in {time.perf_counter() - started:.0f} s with {args.jobs} worker(s), "
        f"{args.permutations} permutations for the text tests, python {sys.version.split()[0]}."
    )
    return 1 if bad else 0


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
    parser.add_argument(
        "--scale", type=int, default=0, help="traces per side: measure false alarms of traffic at this scale"
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=999,
        help="permutations of the text tests with --scale (default 999)",
    )
    args = parser.parse_args(argv)
    if args.scale:
        return scale_main(args)

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
