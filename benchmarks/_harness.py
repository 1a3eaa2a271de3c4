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
    folder: Path, args: Sequence[str], env: dict[str, str] | None = None, bytecode: str = "cached"
) -> float:
    """Wall time of one ``pytest`` run in a subprocess; fails loudly if a test failed.

    ``bytecode``: ``"cached"`` measures what most users get, bytecode caches on (this
    machine sets PYTHONDONTWRITEBYTECODE, which makes every run compile the plugin's modules,
    and pytest rewrite them, again). ``"none"`` measures what a CI image or Docker base that
    sets PYTHONDONTWRITEBYTECODE=1 gets: pytest can never keep the modules it rewrites (every
    plugin's, as installed from entry points), so none is cached, for any plugin; the regular
    ``.pyc`` files pip wrote at install stay. ``"ours"`` is the artificial worst case for this
    plugin: only pytest_llmops's caches are gone, the other plugins' rewritten modules are
    cached (as they are on a machine where pytest once ran without the variable)."""
    full_env = _pytest_env(env, bytecode)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder, env=full_env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in (0,):
        raise SystemExit(f"pytest failed in {folder} {args}:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return elapsed


def count_instructions(folder: Path, args: Sequence[str], bytecode: str = "cached") -> int:
    """Instructions one ``pytest`` run executes in user space, counted by valgrind (cachegrind,
    no cache simulation; string hashing seeded): the same for every run of the same code, so
    a ratio of two counts is free of the noise a shared machine adds to wall times."""
    full_env = _pytest_env(None, bytecode)
    full_env["PYTHONHASHSEED"] = "0"
    result = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder, env=full_env, capture_output=True, text=True,
    )
    for line in result.stderr.splitlines():
        if "I refs:" in line or "I   refs:" in line:
            return int(line.rsplit(":", 1)[1].strip().replace(",", ""))
    raise SystemExit(f"valgrind gave no instruction count for {args}:\n{result.stderr[-2000:]}")


def _pytest_env(env: dict[str, str] | None, bytecode: str) -> dict[str, str]:
    """The environment of a measured run; removes the caches ``bytecode`` says are missing."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "AZURE_", "MLFLOW_"))}
    full_env.update(env or {})
    full_env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if bytecode == "cached":
        full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        full_env["PYTHONDONTWRITEBYTECODE"] = "1"
        drop_plugin_bytecode(every_plugin=bytecode == "none")
    return full_env


def drop_plugin_bytecode(every_plugin: bool = False) -> None:
    """Remove every ``__pycache__`` of the installed pytest_llmops package; with
    ``every_plugin``, also every module pytest rewrote and cached for any other plugin
    (``__pycache__/*-pytest-*.pyc`` in site-packages: caches, rewritten again when needed)."""
    import importlib.util
    import sysconfig

    spec = importlib.util.find_spec("pytest_llmops")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for cache in Path(location).rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
    if every_plugin:
        for rewritten in Path(sysconfig.get_paths()["purelib"]).glob("**/__pycache__/*-pytest-*.pyc"):
            rewritten.unlink(missing_ok=True)


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

