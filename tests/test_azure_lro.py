"""Long-running operations in every form Azure Resource Manager runs them, through the
double, azure-mgmt's pollers and the provisioning fixtures.

Real ARM (PITFALLS "The real services"): a Databricks workspace create answers 201 with
``Azure-AsyncOperation`` whose reads answer **202** ``{"status": "Accepted"}`` until 200
``Succeeded``; its delete answers 202 with ``Location`` only; Cognitive Services can create
an account with 201 ``Succeeded`` and no LRO headers; an operation can fail asynchronously
(``Failed`` with ``InsufficientQuota``), and a create can answer ``provisioningState:
Failed`` without LRO headers, whose error code must not be lost.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests

from pytest_llmops.azure import arm
from pytest_llmops.azure.provision import deployment_body
from tests import test_azure_support as support
from tests.double.arm_lro import STYLES
from tests.test_azure_double import HEADERS, WORKSPACES, Token, put
from tests.test_azure_support import CONFTEST, RESOURCE_GROUP, SUBSCRIPTION, account_puts, unset, verbs

arm_double = support.arm_double
azure_env = support.azure_env

WORKSPACE_BODY = {
    "location": "eastus2",
    "sku": {"name": "premium"},
    "properties": {"managedResourceGroupId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/ws-managed"},
}


def operation_of(url: str) -> str:
    """The resource id inside an operation URL's base64 token."""
    token = url.split("?")[0].rsplit("/", 1)[1]
    return base64.b64decode(token).decode().split(";")[0]


def test_workspace_create_polls_answer_202_accepted_until_succeeded(arm_double):
    arm_double.arm.polls = 2
    created = put(arm_double, f"{WORKSPACES}/ws", WORKSPACE_BODY, api_version="2026-01-01")
    assert created.status_code == 201 and created.json()["properties"]["provisioningState"] == "Accepted"
    assert "Location" not in created.headers
    status_url = created.headers["Azure-AsyncOperation"]
    assert "/workspaces/ws/operationStatus/" in status_url
    assert operation_of(status_url) == f"{WORKSPACES}/ws"  # subscription id included, base64
    answers = [requests.get(status_url, headers=HEADERS, timeout=10) for _ in range(3)]
    assert [(a.status_code, a.json()["status"]) for a in answers] == [
        (202, "Accepted"),
        (202, "Accepted"),
        (200, "Succeeded"),
    ]
    assert answers[0].headers["Retry-After"] == "1"


def test_workspace_delete_answers_202_with_location_only(arm_double):
    arm_double.arm.polls = 1
    put(arm_double, f"{WORKSPACES}/ws", WORKSPACE_BODY, api_version="2026-01-01")
    deleted = requests.delete(
        f"{arm_double.url}{WORKSPACES}/ws?api-version=2026-01-01", headers=HEADERS, timeout=10
    )
    assert deleted.status_code == 202 and not deleted.content
    assert "Azure-AsyncOperation" not in deleted.headers
    location = deleted.headers["Location"]
    assert "/workspaces/ws/operationResults/" in location and deleted.headers["Retry-After"] == "1"
    assert requests.get(location, headers=HEADERS, timeout=10).status_code == 202
    assert requests.get(location, headers=HEADERS, timeout=10).status_code == 204
    assert arm_double.arm.leaks() == []


@pytest.mark.parametrize("style", STYLES)
def test_the_mgmt_pollers_complete_every_style(arm_double, style):
    """azure-mgmt's own pollers drive every operation of the lab to its end in ``style``
    (each operation answers in progress once: 202 ``Accepted`` in ``azure-async-202``)."""
    arm_double.arm.polls = 1
    for operation in list(arm_double.arm.lro_styles):
        arm_double.arm.lro_styles[operation] = style
    cognitive = arm.cognitive_client(Token(), SUBSCRIPTION, arm_double.url)
    databricks = arm.databricks_client(Token(), SUBSCRIPTION, arm_double.url)
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties, Sku

    account = Account(
        location="eastus2",
        kind="OpenAI",
        sku=Sku(name="S0"),
        properties=AccountProperties(custom_sub_domain_name="lro"),
    )
    made = arm.wait(cognitive.accounts.begin_create(RESOURCE_GROUP, "lro", account))
    assert made.properties.provisioning_state == "Succeeded"
    body = json.dumps(deployment_body("2024-11-20")).encode()
    deployed = arm.wait(cognitive.deployments.begin_create_or_update(RESOURCE_GROUP, "lro", "gpt-4o", body))
    assert deployed.properties.provisioning_state == "Succeeded"
    workspace = arm.wait(databricks.workspaces.begin_create_or_update(RESOURCE_GROUP, "ws", WORKSPACE_BODY))
    assert workspace.properties.provisioning_state == "Succeeded" and workspace.properties.workspace_url
    arm.wait(cognitive.deployments.begin_delete(RESOURCE_GROUP, "lro", "gpt-4o"))
    arm.wait(cognitive.accounts.begin_delete(RESOURCE_GROUP, "lro"))
    arm.wait(cognitive.deleted_accounts.begin_purge("eastus2", RESOURCE_GROUP, "lro"))
    arm.wait(databricks.workspaces.begin_delete(RESOURCE_GROUP, "ws"))
    assert arm_double.arm.leaks() == [] and arm_double.handler_errors == []


BOTH = """
def test_both(azure_openai_deployment, azure_databricks_workspace):
    assert azure_openai_deployment.region == azure_databricks_workspace.region != "eastus2"
"""


@pytest.mark.parametrize("style", STYLES)
def test_provisioning_fallback_and_teardown_through_each_style(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch, style
):
    """Every operation of a run (creates, a region's fallback, deletes, purges) in ``style``;
    the recording then replays offline."""
    for operation in list(arm_double.arm.lro_styles):
        arm_double.arm.lro_styles[operation] = style
    monkeypatch.setenv("AZURE_LOCATION", "eastus2")
    arm_double.arm.fail_quota("eastus2", at="deployment")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=BOTH)
    pytester.runpytest("--llmops-record", "--llmops-provision").assert_outcomes(passed=1)
    first, second = account_puts(arm_double)
    assert first.endswith("-eastus2") and verbs(arm_double, first) == ["created", "deleted", "purged"]
    assert verbs(arm_double, second) == ["created", "deleted", "purged"]
    [workspace] = [name for _, kind, name in arm_double.arm.audit()["events"] if kind == "workspace"][:1]
    assert verbs(arm_double, workspace) == ["created", "deleted"]
    assert arm_double.arm.leaks() == [] and arm_double.handler_errors == []

    arm_double.stop()
    unset(monkeypatch, azure_env)
    replayed = pytester.runpytest()
    replayed.assert_outcomes(passed=1)
    assert "replaying the recorded removal of Azure Databricks workspace" in replayed.stdout.str()


@pytest.mark.parametrize("how", ["sync", "async", "state"])
def test_a_refused_deployment_moves_on_however_azure_tells_it(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch, how
):
    """InsufficientQuota as a 400 at the PUT, as an operation that ends Failed, or as a 201
    whose provisioningState is Failed (no LRO headers): each time the code is read, the
    account removed and purged, and the next region tried."""
    monkeypatch.setenv("AZURE_LOCATION", "eastus2")
    arm_double.arm.fail_quota("eastus2", at="deployment", how=how)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_lab="def test_region(azure_openai_deployment):\n    assert azure_openai_deployment.region != 'eastus2'\n"
    )
    result = pytester.runpytest("--llmops-live", "--llmops-provision")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*quota error in eastus2 (InsufficientQuota: This operation require 10 new*; trying *"]
    )
    first = account_puts(arm_double)[0]
    assert first.endswith("-eastus2") and verbs(arm_double, first) == ["created", "deleted", "purged"]
    expected = ["refused"] if how == "sync" else ["created", "failed", "deleted"]
    assert verbs(arm_double, f"{first}/gpt-4o") == expected
    assert arm_double.arm.leaks() == []


@pytest.mark.parametrize("how", ["sync", "async", "state"])
def test_a_failed_workspace_names_azures_error_and_leaves_nothing(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch, how
):
    monkeypatch.setenv("AZURE_LOCATION", "swedencentral")
    arm_double.arm.fail_quota("swedencentral", at="workspace", how=how)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab="def test_ws(azure_databricks_workspace):\n    pass\n")
    result = pytester.runpytest("--llmops-live", "--llmops-provision")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ProvisioningError: Azure could not create Azure Databricks workspace llmops-* in swedencentral: "
            "InsufficientQuota: Operation could not be completed as it results in exceeding approved*",
            "*It was removed again.*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert arm_double.arm.leaks() == []
