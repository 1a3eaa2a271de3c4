"""``azure_databricks_workspace``: attached by ``DATABRICKS_HOST``, or provisioned beside the
Azure OpenAI resource (same resource group and region) and removed after the run."""

from __future__ import annotations

import pytest

from pytest_llmops.secrets.scan import scan_paths
from tests import test_azure_support as support
from tests.test_azure_support import (
    CONFTEST,
    RESOURCE_GROUP,
    unset,
    verbs,
)

arm_double = support.arm_double
azure_env = support.azure_env

BOTH = """
import os

def test_same_region(azure_openai_deployment, azure_databricks_workspace):
    workspace = azure_databricks_workspace
    assert workspace.provisioned and workspace.sku == "premium"
    assert workspace.region == azure_openai_deployment.region
    assert workspace.resource_group == os.environ.get("EXPECTED_GROUP", workspace.resource_group)
    assert workspace.resource_id.endswith("/providers/Microsoft.Databricks/workspaces/" + workspace.name)
    expected = os.environ.get("EXPECTED_URL", "https://adb-0000000000000000.0.azuredatabricks.net")
    assert workspace.url == expected
    kwargs = workspace.client_kwargs()  # for databricks.sdk.WorkspaceClient
    assert kwargs == {"host": expected, "azure_workspace_resource_id": workspace.resource_id}
"""


def test_provisioned_beside_the_openai_resource_and_replayed(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch
):
    monkeypatch.setenv("EXPECTED_URL", arm_double.url)  # the workspace URL points back at the double
    monkeypatch.setenv("EXPECTED_GROUP", RESOURCE_GROUP)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=BOTH)
    result = pytester.runpytest("--llmops-record", "--llmops-provision")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*creating Azure Databricks workspace llmops-*", "*removing Azure Databricks*"]
    )

    [put] = arm_double.requests_to(r"/workspaces/[^/]+$", "PUT")
    body = put.json()
    assert body["sku"] == {"name": "premium"} and body["tags"]["CreatedBy"] == "pytest-llmops"
    assert body["properties"]["managedResourceGroupId"].endswith("-managed")
    name = put.path.split("?")[0].rsplit("/", 1)[1]
    assert verbs(arm_double, name) == ["created", "deleted"]
    assert arm_double.arm.leaks() == []
    assert scan_paths([pytester.path / "cassettes"]) == []

    arm_double.stop()
    unset(monkeypatch, azure_env)
    monkeypatch.delenv("EXPECTED_URL")
    replayed = pytester.runpytest()
    replayed.assert_outcomes(passed=1)
    # Replay says what it replays; nothing there takes minutes (issue 14.9).
    replayed.stdout.fnmatch_lines(
        [
            "*replaying the recorded creation of Azure Databricks workspace llmops-* (premium)",
            "*replaying the recorded removal of Azure Databricks workspace llmops-*",
        ]
    )
    assert "this takes minutes" not in replayed.stdout.str()


def test_attached_by_databricks_host(pytester: pytest.Pytester, arm_double, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "adb-1234567890123456.7.azuredatabricks.net")
    pytester.makepyfile(
        test_ws="""
def test_attached(azure_databricks_workspace):
    assert not azure_databricks_workspace.provisioned
    assert azure_databricks_workspace.url == "https://adb-1234567890123456.7.azuredatabricks.net"
"""
    )
    pytester.runpytest("--llmops-live").assert_outcomes(passed=1)
    assert not arm_double.requests_to(r"^/subscriptions/")


def test_databricks_host_wins_over_provisioning(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch
):
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1234567890123456.7.azuredatabricks.net")
    pytester.makepyfile(
        test_ws="""
def test_reused(azure_databricks_workspace):
    assert not azure_databricks_workspace.provisioned
    assert azure_databricks_workspace.client_kwargs() == {"host": "https://adb-1234567890123456.7.azuredatabricks.net"}
"""
    )
    pytester.runpytest("--llmops-live", "--llmops-provision").assert_outcomes(passed=1)
    assert not arm_double.requests_to(r"/workspaces/")
