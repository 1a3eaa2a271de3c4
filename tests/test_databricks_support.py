"""Shared pieces of the Databricks tests: the double as a workspace, clusters made on it,
going offline, reading session cassettes, and running pytest in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import databricks.sdk  # noqa: F401 - see below
import pytest

import pytest_llmops.cassettes.recorder  # noqa: F401 - see below
from tests.conftest import SECRET_DATABRICKS_TOKEN

# pytester's in-process runs drop the modules a run imported: imported here once, the SDK
# (1.2 s) and vcrpy are not imported again by every run.

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from tests.double import LabDouble

ML_RUNTIME = "16.4.x-cpu-ml-scala2.12"
DATABRICKS_VARIABLES = (
    "DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLUSTER_ID", "DATABRICKS_NODE_TYPE"
)

SEEN = """
import json
import pathlib

def test_cluster(databricks_cluster):
    pathlib.Path("seen.json").write_text(json.dumps(databricks_cluster.metadata()))
"""


@pytest.fixture
def workspace_double(lab_double: LabDouble, double_env: dict[str, str]) -> LabDouble:
    """The lab double as the Databricks workspace of live/record runs, transitions instant."""
    lab_double.databricks.transition_seconds = 0.0
    return lab_double


def client(double: LabDouble) -> WorkspaceClient:
    """A workspace client of the test itself (to arrange and inspect the double)."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=double.url, token=SECRET_DATABRICKS_TOKEN)


def make_cluster(
    double: LabDouble,
    *,
    terminated: bool = False,
    tags: dict[str, str] | None = None,
    name: str = "shared-ml",
    openai_env: bool = False,
) -> str:
    """A cluster someone else made (RUNNING, or TERMINATED), as a user would find it; with
    ``openai_env``, its owner gave it the double's Azure OpenAI endpoint and API version in
    ``spark_env_vars`` and the key through a secret scope, as a real cluster needs them."""
    workspace = client(double)
    spark_env_vars = None
    if openai_env:
        workspace.secrets.create_scope("lab-owner")
        workspace.secrets.put_secret("lab-owner", "openai-key", string_value=double.openai.api_key)
        spark_env_vars = {
            "AZURE_OPENAI_ENDPOINT": double.url,
            "AZURE_OPENAI_API_VERSION": "2024-05-01-preview",
            "AZURE_OPENAI_API_KEY": "{{secrets/lab-owner/openai-key}}",
        }
    cluster_id = workspace.clusters.create(
        cluster_name=name,
        spark_version=ML_RUNTIME,
        node_type_id="Standard_D4ds_v5",
        num_workers=0,
        custom_tags=tags or {},
        spark_env_vars=spark_env_vars,
    ).cluster_id
    double.databricks.advance_clock(double.databricks.transition_seconds)
    assert double.databricks.cluster_state(cluster_id) == "RUNNING"
    if terminated:
        workspace.clusters.delete(cluster_id)
        double.databricks.advance_clock(double.databricks.transition_seconds)
        assert double.databricks.cluster_state(cluster_id) == "TERMINATED"
    return str(cluster_id)


def go_offline(double: LabDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop the double and forget every Databricks variable: what CI replays with."""
    double.stop()
    for name in DATABRICKS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def session_cassette(root: Path, fixture: str) -> tuple[list[Any], dict[str, Any]]:
    """The interactions and metadata of a session fixture's cassette."""
    from pytest_llmops.cassettes import storage

    return storage.load(root / "cassettes" / "_session" / f"{fixture}.yaml")


def calls(double: LabDouble, verb: str) -> list[str]:
    """Cluster ids of the ``clusters/<verb>`` POSTs the double received."""
    return [r.json()["cluster_id"] for r in double.requests_to(rf"/clusters/{verb}$", "POST")]


def start_pytest(directory: Path, *args: str) -> subprocess.Popen[str]:
    """pytest in a subprocess that Ctrl-C reaches as KeyboardInterrupt (SIGINT restored to its
    default even where the parent ignores it, e.g. a background CI job)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
