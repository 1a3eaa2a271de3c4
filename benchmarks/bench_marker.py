"""What ``@pytest.mark.llmops`` costs: once per session (fixed) and per marked test.

Whole pytest sessions, each a fresh copy of a project whose K tests each replay one chat
completion from their own cassette (so a fresh tracking store, as in CI or a new clone),
all marked or none, for K in 1, 20 and 200; with and without xdist (``-n 2``, real
workers), with and without bytecode caches (``PYTHONDONTWRITEBYTECODE=1``: pytest then
rewrites the plugin's modules at every run), with and without the migrated store template
in the user's cache (see ``CONFIGS``). Every session is timed whole (wall clock,
and CPU of pytest and everything it started: xdist workers, the trace helper), so nothing
a session pays is left out: the mlflow import, the store's creation, the helper's start,
the interpreter's exit.

    marked(K) - unmarked(K) = fixed + K x per_test
    per_test = (difference at 200 - difference at 20) / 180
    fixed    = difference at 20 - 20 x per_test

Medians over ``--repetitions`` (default 3) alternating repetitions. ``--baseline REV``
measures the code of git revision REV in the same run, interleaved, and gives the ratios
(this code / REV).

    python benchmarks/bench_marker.py --baseline 223a0f5       # about 20 min on 2 cores
    python benchmarks/bench_marker.py --only plain xdist --sizes 1 20 --repetitions 5
    python benchmarks/bench_marker.py --blocks [--repetitions 5] [--inline-traces] [--naive]

``--blocks`` measures the steady per-test cost inside one session instead (see
``_marker_blocks.py``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _marker_blocks
from _harness import machine
from _marker_project import build_plain

REPO = Path(__file__).resolve().parent.parent
CONFIGS: dict[str, tuple[list[str], bool, bool]] = {
    "plain": ([], True, True),
    "plain-new": ([], True, False),
    "plain-nocache": ([], False, True),
    "xdist": (["-n", "2"], True, True),
    "xdist-new": (["-n", "2"], True, False),
    "xdist-nocache": (["-n", "2"], False, True),
}
"""name: (pytest arguments, bytecode caches on, the store template cached).

``-nocache``: ``PYTHONDONTWRITEBYTECODE=1`` (pytest then rewrites the plugin's modules at
every run). ``-new``: as on a machine where the plugin never ran (CI on a new VM): no
template of a migrated store in the user's cache, so the new store is migrated."""


@dataclass
class Code:
    """A version of the plugin: this checkout, or a git revision exported to a folder."""

    name: str
    src: Path

    def env(self) -> dict[str, str]:
        return {} if self.src == REPO / "src" else {"PYTHONPATH": str(self.src)}

    def forget_rewritten_modules(self) -> None:
        """Remove pytest's cache of the plugin's rewritten modules (``*-pytest-*.pyc``): what
        a process with ``PYTHONDONTWRITEBYTECODE=1`` never has."""
        for pyc in self.src.rglob("__pycache__/*-pytest-*.pyc"):
            pyc.unlink(missing_ok=True)


def export(revision: str, into: Path) -> Code:
    """The plugin's source at ``revision``, in ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return Code(revision, into / "src")


def run(
    code: Code, project: Path, work: Path, args: list[str], cache: bool, template: bool = True
) -> tuple[float, float]:
    """Wall and CPU seconds of one pytest session on a fresh copy of ``project``."""
    root = work / "session"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(project, root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "MLFLOW_", "AZURE_", "PYTHON"))}
    env.update(code.env())
    env["LLMOPS_CACHE_DIR"] = str(work / "template-cache")
    if not template:
        env["LLMOPS_CACHE_DIR"] = str(root / ".no-template-cache")  # empty, gone with the copy
    if not cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        code.forget_rewritten_modules()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"pytest failed ({code.name}, {args}):\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(
    codes: list[Code], configs: list[str], sizes: list[int], repetitions: int, work: Path
) -> dict[tuple[str, str, int, bool], list[tuple[float, float]]]:
    """Every session, interleaved (code, marked or not, inside each config and size)."""
    projects = {}
    for size in sizes:
        for marked in (False, True):
            projects[size, marked] = work / f"project-{size}-{'marked' if marked else 'unmarked'}"
            build_plain(projects[size, marked], size, marked)
    for code in codes:  # warm-up: bytecode caches written, first-use costs of the OS paid
        run(code, projects[sizes[0], True], work, [], True)
    times: dict[tuple[str, str, int, bool], list[tuple[float, float]]] = {}
    for repetition in range(repetitions):
        for config in configs:
            args, cache, template = CONFIGS[config]
            for size in sizes:
                for code in codes:
                    for marked in (False, True):
                        wall_cpu = run(code, projects[size, marked], work, args, cache, template)
                        times.setdefault((code.name, config, size, marked), []).append(wall_cpu)
            print(f"  repetition {repetition + 1}/{repetitions}: {config} done", file=sys.stderr)
    return times


def costs(
    times: dict[tuple[str, str, int, bool], list[tuple[float, float]]], code: str, config: str, sizes: list[int]
) -> dict[str, tuple[float, float]]:
    """Differences marked - unmarked per size, and the fixed and per-test costs (wall, CPU)."""
    out: dict[str, tuple[float, float]] = {}
    for size in sizes:
        marked, unmarked = times[code, config, size, True], times[code, config, size, False]
        out[f"diff {size}"] = tuple(  # type: ignore[assignment]
            statistics.median(m[i] for m in marked) - statistics.median(u[i] for u in unmarked) for i in (0, 1)
        )
    if len(sizes) >= 2:
        small, large = sorted(sizes)[-2:]
        per_test = tuple((out[f"diff {large}"][i] - out[f"diff {small}"][i]) / (large - small) for i in (0, 1))
        out["per test"] = per_test  # type: ignore[assignment]
        out["fixed"] = tuple(out[f"diff {small}"][i] - small * per_test[i] for i in (0, 1))  # type: ignore[assignment]
    return out


def report(times: dict[tuple[str, str, int, bool], list[tuple[float, float]]], codes: list[Code],
           configs: list[str], sizes: list[int]) -> None:
    print(f"\n{machine()}")
    print("marked - unmarked session, median; seconds (per test: milliseconds); wall / CPU of pytest and its children")
    for config in configs:
        args, cache, template = CONFIGS[config]
        print(
            f"\n== {config}: pytest {' '.join(args) or '(no xdist)'}, bytecode caches {'on' if cache else 'off'}, "
            f"{'store template cached' if template else 'no store template (a new machine)'}"
        )
        table = {code.name: costs(times, code.name, config, sizes) for code in codes}
        keys = list(next(iter(table.values())))
        print(f"{'':<14}" + "".join(f"{key:>20}" for key in keys))
        for name, values in table.items():
            cells = [_cell(key, values[key]) for key in keys]
            print(f"{name:<14}" + "".join(f"{cell:>20}" for cell in cells))
        if len(codes) == 2:
            after, before = table[codes[1].name], table[codes[0].name]
            ratios = [f"x{after[k][0] / before[k][0]:.2f} / x{after[k][1] / before[k][1]:.2f}" for k in keys]
            print(f"{'ratio':<14}" + "".join(f"{cell:>20}" for cell in ratios))


def _cell(key: str, value: tuple[float, float]) -> str:
    scale, unit = (1000, "ms") if key == "per test" else (1, "s")
    return f"{value[0] * scale:.2f} / {value[1] * scale:.2f} {unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV", help="also measure git revision REV, interleaved")
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), help="these configurations only")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 20, 200], help="tests per session")
    parser.add_argument("--blocks", action="store_true", help="the in-session block method (_marker_blocks.py)")
    parser.add_argument("--tests", type=int, default=200, help="--blocks: tests per block")
    parser.add_argument("--inline-traces", action="store_true", help="--blocks: LLMOPS_TRACE_PROCESS=0")
    parser.add_argument("--naive", action="store_true", help="--blocks: also plain MLflow use, to compare")
    parser.add_argument("--keep", action="store_true", help="--blocks: keep the generated projects")
    args = parser.parse_args()
    if args.blocks:
        return _marker_blocks.main(args)
    with tempfile.TemporaryDirectory(prefix="llmops-bench-") as folder:
        work = Path(folder)
        codes = [Code("this checkout", REPO / "src")]
        if args.baseline:
            (work / "baseline").mkdir()
            codes.insert(0, export(args.baseline, work / "baseline"))
        configs = args.only or list(CONFIGS)
        times = measure(codes, configs, sorted(args.sizes), args.repetitions, work)
        report(times, codes, configs, sorted(args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
