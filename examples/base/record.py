"""Re-record ``examples/base/cassettes`` against the lab double (loopback), attaching to its
Azure OpenAI deployment as a base-install user would (no provisioning):

    .venv/bin/python examples/base/record.py

then check them with ``pytest-llmops scan examples/base/cassettes``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from tests.double import LabDouble  # noqa: E402


def main() -> int:
    double = LabDouble().start()
    try:
        own = ("AZURE_", "DATABRICKS_", "LLMOPS_", "MLFLOW_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
        env.update(double.client_env())
        command = [sys.executable, "-m", "pytest", ".", "--llmops-record", "-p", "no:cacheprovider"]
        return subprocess.run(command, cwd=HERE, env=env).returncode
    finally:
        double.stop()


if __name__ == "__main__":
    sys.exit(main())
