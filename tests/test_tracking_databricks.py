"""MLflow on Databricks (``--llmops-tracking-uri databricks``): experiments go under the
current user's workspace folder, and the workspace stays reachable in replay.

MLflow's Databricks store cannot run here (no workspace; the lab double serves no MLflow
API and MLflow is never faked), so these tests check the two decisions the plugin makes;
the store itself is MLflow's.
"""

from __future__ import annotations

import pytest

from pytest_llmops.seal.policy import tracking_hosts as _explicit_hosts
from pytest_llmops.tracking.uri import experiment_path, is_databricks


def test_databricks_uris_are_recognised():
    assert is_databricks("databricks")
    assert is_databricks("databricks://my-profile")
    assert not is_databricks("sqlite:////tmp/mlflow.db")
    assert not is_databricks("http://127.0.0.1:5000")


def test_experiments_go_under_the_current_users_folder():
    users = []

    def current_user(uri: str) -> str:
        users.append(uri)
        return "lab-user@example.com"

    assert experiment_path("databricks", "llmops-lab", current_user) == "/Users/lab-user@example.com/llmops-lab"
    assert experiment_path("databricks://dev", "/Shared/llmops", current_user) == "/Shared/llmops"
    assert experiment_path("sqlite:////tmp/x.db", "llmops-lab", current_user) == "llmops-lab"
    assert users == ["databricks"]


def test_the_workspace_is_reachable_in_replay(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1234567890123456.7.azuredatabricks.net")
    assert _explicit_hosts("databricks") == ["adb-1234567890123456.7.azuredatabricks.net"]
    assert _explicit_hosts("http://127.0.0.1:5000") == ["127.0.0.1"]
    assert _explicit_hosts(None) == []
    assert _explicit_hosts("sqlite:////tmp/x.db") == []
