"""Shared helpers of the benchmarks: generate a suite, time pytest on it in a subprocess,
take medians over alternating repetitions."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"


def workdir(name: str) -> Path:
    """A fresh folder for one suite (kept out of git by .gitignore)."""
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / "pytest.ini").write_text("[pytest]\n")  # its own rootdir, away from the project's config
    return path


def run_pytest(
    folder: Path, args: Sequence[str], env: dict[str, str] | None = None, bytecode: bool = True
) -> float:
    """Wall time of one ``pytest`` run in a subprocess; fails loudly if a test failed.

    ``bytecode=True`` measures what most users get: bytecode caches on. (This machine sets
    PYTHONDONTWRITEBYTECODE, which makes every run compile the plugin's modules, and pytest
    rewrite them, again.) ``bytecode=False`` measures what CI images and Docker bases that
    set PYTHONDONTWRITEBYTECODE=1 get: the plugin's own ``__pycache__`` folders are removed
    first, so each run compiles (and pytest rewrites) every plugin module it imports."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "AZURE_", "MLFLOW_"))}
    full_env.update(env or {})
    full_env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if bytecode:
        full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        full_env["PYTHONDONTWRITEBYTECODE"] = "1"
        drop_plugin_bytecode()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder, env=full_env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in (0,):
        raise SystemExit(f"pytest failed in {folder} {args}:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return elapsed


def drop_plugin_bytecode() -> None:
    """Remove every ``__pycache__`` of the installed pytest_llmops package (none is stale)."""
    import importlib.util

    spec = importlib.util.find_spec("pytest_llmops")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for cache in Path(location).rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)


def alternate(runs: dict[str, Callable[[], float]], repetitions: int) -> dict[str, float]:
    """Median wall time of each run, the runs interleaved so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repetitions):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def per_test(small: float, large: float, n_small: int, n_large: int) -> float:
    """Cost of one test: the difference between two suite sizes cancels start-up."""
    return (large - small) / (n_large - n_small)


def machine() -> str:
    """One line describing this machine, for the results table."""
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="llmops-bench-"))


def run_block_session(
    root: Path, env_changes: dict[str, str | None], keep: bool
) -> dict[str, object] | None:
    """Run the block project in ``root`` (its conftest writes ``times.json`` to
    ``BENCH_OUT``) and return what it measured; None (with its output) if pytest failed.
    ``env_changes``: variables to set, or to remove with None. ``root`` is removed after,
    unless ``keep``."""
    import json

    try:
        out = root / "times.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "MLFLOW_", "AZURE_"))}
        env["BENCH_OUT"] = str(out)
        for name, value in env_changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)]
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-4000:], sep="\n")
            return None
        data: dict[str, object] = json.loads(out.read_text())
        return data
    finally:
        if keep:
            print(f"project kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

