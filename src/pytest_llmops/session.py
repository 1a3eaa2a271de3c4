"""The identity of a pytest invocation, shared by the xdist controller and its workers.

One id per ``pytest`` command: generated in the controller (or a run without xdist) and
handed to every worker through ``workerinput``. Cloud resources are tagged with it and
MLflow's parent run carries it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

session_id_key = pytest.StashKey[str]()
WORKERINPUT_KEY = "llmops_session_id"


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker."""
    return hasattr(config, "workerinput")


def worker_id(config: pytest.Config) -> str:
    """``gw0``, ``gw1``... under xdist, ``main`` otherwise."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    return str(workerinput.get("workerid", "main")) if workerinput else "main"


def worker_count(config: pytest.Config) -> int:
    """How many xdist workers run this session (1 without xdist)."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput:
        return int(workerinput.get("workercount", 1))
    return 1


def session_id(config: pytest.Config) -> str:
    """This invocation's id (12 hex characters)."""
    if session_id_key not in config.stash:
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        value = workerinput.get(WORKERINPUT_KEY) if workerinput else None
        config.stash[session_id_key] = str(value) if value else uuid.uuid4().hex[:12]
    return config.stash[session_id_key]


def share_with_worker(config: pytest.Config, workerinput: dict[str, Any]) -> None:
    """Hand the controller's session id to a worker (from ``pytest_configure_node``)."""
    workerinput[WORKERINPUT_KEY] = session_id(config)
