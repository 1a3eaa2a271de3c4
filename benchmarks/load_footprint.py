"""What pytest imports from pytest-llmops at start-up (issue 17.2).

    python benchmarks/load_footprint.py

Runs ``python -X importtime -m pytest --collect-only -q`` on a one-test project (replay
mode, the default) and lists the pytest_llmops modules imported, their source lines, and
the heavy third-party packages (which must be none).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import workdir

HEAVY = ("vcr", "yaml", "openai", "httpx", "httpx2", "filelock", "azure", "databricks", "mlflow", "numpy",
         "scipy", "matplotlib", "pyspark", "pyarrow")


def imported(folder: Path, *args: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "AZURE_", "MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder, env=env, capture_output=True, text=True, check=True,
    )
    lines = result.stderr.splitlines()
    return {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}


def footprint() -> tuple[list[str], int, list[str]]:
    folder = workdir("load")
    (folder / "test_one.py").write_text("def test_one():\n    pass\n")
    names = imported(folder) | {"pytest_llmops.plugin"}  # the entry point itself is not listed
    without = imported(folder, "-p", "no:llmops")  # other plugins' imports (respx imports httpx)
    ours = sorted({name for name in names if name.startswith("pytest_llmops")})
    heavy = sorted({name.split(".")[0] for name in names - without if name.split(".")[0] in HEAVY})
    lines = 0
    for name in ours:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            lines += len(Path(spec.origin).read_text().splitlines())
    return ours, lines, heavy


def main() -> None:
    ours, lines, heavy = footprint()
    print(f"pytest_llmops modules imported at load: {len(ours)}, {lines} lines")
    for name in ours:
        print(f"  {name}")
    print(f"heavy third-party modules imported at load: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
