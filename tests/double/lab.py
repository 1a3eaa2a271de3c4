"""Run the lab (``examples/``) in live or record mode against the lab double, then check
that nothing leaked.

    python -m tests.double.lab --mode live
    python -m tests.double.lab --mode record                      # re-records cassettes/
    python -m tests.double.lab --mode record --cassette-dir /tmp/c  # somewhere else

Everything is provisioned (``--llmops-provision``), as a user with an Azure subscription
would run it: the Azure OpenAI account and gpt-4o deployment, the Databricks workspace and
the cluster, all through the double's Azure Resource Manager and Databricks APIs on
loopback. Extra arguments go to pytest. Exit status: pytest's, or 3 when the double still
holds a resource after the session (a leak).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .credential import CA_BUNDLE_VARIABLE
from .server import LabDouble

REPO = Path(__file__).resolve().parents[2]
SUBSCRIPTION = "5b1c4e7a-2d3f-4a6b-9c8d-7e6f5a4b3c2d"
TENANT = "8d7c6b5a-4e3f-4d2c-9b1a-0f9e8d7c6b5a"
CLIENT_ID = "0c8f5e2a-6d4b-4f1e-9a3c-7b5d2e8f1a4c"  # a service principal's application id


def lab_env(double: LabDouble) -> dict[str, str]:
    """The variables a user would export for the real services, pointing at the double."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "DATABRICKS_", "LLMOPS_", "MLFLOW_"))
    }
    env.update(
        {
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
            "AZURE_RESOURCE_GROUP": "llmops-lab",
            "AZURE_RESOURCE_MANAGER_ENDPOINT": double.url,
            # azure-identity's ClientSecretCredential, against the double's https listener.
            "AZURE_AUTHORITY_HOST": double.login_url,
            CA_BUNDLE_VARIABLE: double.ca_bundle,
            "AZURE_TENANT_ID": TENANT,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "AZURE_CLIENT_SECRET": double.arm.client_secret,
            "AZURE_OPENAI_API_VERSION": "2024-05-01-preview",
            "LLMOPS_AZURE_CREDENTIAL": "tests.double.credential:lab_credential",
            "DATABRICKS_TOKEN": sorted(double.databricks.tokens)[0],
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
    )
    return env


def leaks(double: LabDouble) -> list[str]:
    """What the double still holds that the session created."""
    found = list(double.arm.leaks())
    found += [f"cluster {c['cluster_id']} ({c['state']})" for c in double.databricks.live_clusters()]
    found += [f"execution context {c.get('id')}" for c in double.databricks.live_contexts()]
    found += [f"secret scope {name}" for name in double.databricks.secrets.scopes()]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.double.lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mode", choices=["live", "record"], required=True)
    parser.add_argument("--cassette-dir", default=None, help="record into this folder (default: cassettes/)")
    args, pytest_args = parser.parse_known_args(argv)

    double = LabDouble().start()
    double.databricks.transition_seconds = 0.3
    try:
        command = [
            sys.executable,
            "-m",
            "pytest",
            "examples",
            f"--llmops-{args.mode}",
            "--llmops-provision",
            "-p",
            "no:cacheprovider",
            *pytest_args,
        ]
        if args.cassette_dir:
            command += ["-o", f"llmops_cassette_dir={Path(args.cassette_dir).resolve()}"]
        print(f"lab double on {double.url}; running: {' '.join(command)}", flush=True)
        status = subprocess.run(command, cwd=REPO, env=lab_env(double)).returncode
        left = leaks(double)
        if double.handler_errors:
            print("the double crashed while answering:\n" + "\n".join(double.handler_errors), file=sys.stderr)
            status = status or 4
        if left:
            print("LEAK: the session left these behind:\n  " + "\n  ".join(left), file=sys.stderr)
            return status or 3
        print(
            "nothing leaked: every cluster, context, secret scope, deployment, account and workspace was removed"
        )
        return status
    finally:
        double.stop()


if __name__ == "__main__":
    sys.exit(main())
