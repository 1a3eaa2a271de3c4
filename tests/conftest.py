"""Fixtures of the plugin's own test suite: the lab double on loopback, the shared
real-world corpus, and helpers to run pytest on generated test files."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# The plugin keeps a migrated empty MLflow store in the user's cache (XDG_CACHE_HOME): the
# suite's pytest runs share one of their own, not the machine's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="llmops-test-cache-")

# In-process pytester runs drop the modules an inner run imported; re-importing yaml then
# pairs its C parser with new node classes ("could not determine a constructor for the tag
# None"), and numpy refuses to be loaded twice in one process. Importing these here keeps
# one copy for the whole session (mlflow too: a half-dropped mlflow cannot import itself
# again, "cannot import name 'MlflowClient' from 'mlflow'"; cryptography, whose Rust core
# cannot be loaded twice either: "curve must be an EllipticCurve instance", nor can it meet a
# second ipaddress module once the seal's policy imported one: "Unsupported GeneralName type").
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import ipaddress  # noqa: F401

import cryptography.hazmat.primitives.asymmetric.ec
import cryptography.x509  # noqa: F401
import mlflow  # noqa: F401
import numpy  # noqa: F401
import pytest
import scipy.stats  # noqa: F401
import vcr  # noqa: F401
import yaml  # noqa: F401

from pytest_llmops.tracking.bootstrap import import_mlflow

import_mlflow()  # and MLflow's SQL store with SQLAlchemy's C extensions, once
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)

if TYPE_CHECKING:
    from tests.double import LabDouble

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMOPS_TEST_SHARED_DIR") or REPO.parent / "shared")
"""``../shared`` beside the repository (``LLMOPS_TEST_SHARED_DIR`` moves it: the suite's own
check that cases skip by name where it is absent)."""

# Secrets used when recording against the double: every test that writes cassettes greps
# the bytes of what it wrote for these exact values.
SECRET_API_KEY = "5f0c3e2a9b7d4e1f8a6c0b2d4e6f8a1c"  # 32 hex, the shape of an Azure OpenAI key
SECRET_DATABRICKS_TOKEN = "dapi0123456789abcdef0123456789abcdef"


ROOT_STRAYS = ("mlflow.db", "mlruns")
"""MLflow's default store, in the working directory: where a trace nobody routed goes."""


def _root_strays() -> dict[str, list[tuple[str, int]]]:
    """Each stray in the repository root, as its files and their modification times."""
    found: dict[str, list[tuple[str, int]]] = {}
    for name in ROOT_STRAYS:
        path = REPO / name
        if path.exists():
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            found[name] = [(str(f.relative_to(REPO)), f.stat().st_mtime_ns) for f in files]
    return found


@pytest.fixture(scope="session", autouse=True)
def repository_root_stays_clean() -> Iterator[None]:
    """The suite writes only inside temporary folders: fail its last test (in each xdist
    worker) if MLflow's default store appeared or changed in the repository root."""
    before = _root_strays()
    yield
    changed = sorted(name for name, files in _root_strays().items() if before.get(name) != files)
    if changed:
        pytest.fail(
            f"the test suite wrote {' and '.join(changed)} in the repository root ({REPO}): an MLflow "
            "trace or run went to MLflow's default store in the working directory (openai autologging "
            "or a tracking URI left set after an in-process pytester run?)",
            pytrace=False,
        )


@pytest.fixture
def lab_double() -> Iterator[LabDouble]:
    """A fresh lab double on an ephemeral loopback port, stopped after the test (tests may
    stop it earlier to prove replay needs no server)."""
    from tests.double import LabDouble

    double = LabDouble().start()
    double.openai.api_key = SECRET_API_KEY
    double.databricks.tokens = {SECRET_DATABRICKS_TOKEN}
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def double_env(lab_double: LabDouble, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point live/record runs (in-process and subprocess) at the lab double."""
    env = lab_double.client_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No llmops, Azure, Databricks or MLflow variables: what CI and a new user have."""
    for name in list(os.environ):
        if name.startswith(("LLMOPS_", "AZURE_", "DATABRICKS_", "MLFLOW_", "OPENAI_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def shared_dir(request: pytest.FixtureRequest) -> Path:
    """``../shared`` beside the repository; tests that need it skip, each by its name, where
    it is absent."""
    if not (SHARED / "realworld").is_dir():
        pytest.skip(
            f"{request.node.name}: {SHARED / 'realworld'} is not present (it exists in the project's "
            "workspace and CI; a clone has no such folder)"
        )
    return SHARED


def all_bytes(root: Path) -> bytes:
    """The concatenated bytes of every file below ``root`` (to grep for secrets)."""
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())
