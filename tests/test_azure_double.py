"""The lab double's Azure Resource Manager, checked with the real azure-mgmt clients and
against the official examples of azure-rest-api-specs; and the ARM helpers it relies on."""

from __future__ import annotations

import base64
import json
import random
import time

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from pytest_llmops.azure import arm
from pytest_llmops.azure.provision import LAB_REGIONS, check_region, deployment_body, region_order
from tests import test_azure_support as support
from tests.double.arm_api import DEFAULT_ARM_TOKEN
from tests.test_azure_support import (
    CLIENT_SECRET,
    RESOURCE_GROUP,
    SUBSCRIPTION,
)

arm_double = support.arm_double

PROVIDERS = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers"
ACCOUNTS = f"{PROVIDERS}/Microsoft.CognitiveServices/accounts"
WORKSPACES = f"{PROVIDERS}/Microsoft.Databricks/workspaces"
HEADERS = {"Authorization": f"Bearer {DEFAULT_ARM_TOKEN}"}


class Token:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(DEFAULT_ARM_TOKEN, int(time.time()) + 3600)


def put(double, path: str, body: dict, api_version: str = "2025-09-01") -> requests.Response:
    return requests.put(
        f"{double.url}{path}?api-version={api_version}", json=body, headers=HEADERS, timeout=10
    )


def example(shared_dir, name: str) -> dict:
    folder = "databricks" if name.startswith("Workspace") else "cognitiveservices"
    return json.loads(
        (shared_dir / "realworld" / f"azure-rest-api-specs-{folder}" / f"{name}.json").read_text()
    )


def keys_of(node: object, prefix: str = "") -> set[str]:
    """Every key path of a JSON document (``properties.endpoint``...)."""
    if not isinstance(node, dict):
        return set()
    found = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        found.add(path)
        found |= keys_of(value, f"{path}.")
    return found


def test_mgmt_clients_drive_the_whole_account_lifecycle_over_loopback_http(arm_double):
    client = arm.cognitive_client(Token(), SUBSCRIPTION, arm_double.url)
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties, Sku

    account = Account(
        location="swedencentral",
        kind="OpenAI",
        sku=Sku(name="S0"),
        tags={"a": "b"},
        properties=AccountProperties(custom_sub_domain_name="lab-sub"),
    )
    created = arm.wait(client.accounts.begin_create(RESOURCE_GROUP, "lab", account))
    assert created.properties.provisioning_state == "Succeeded"
    assert created.properties.endpoint == f"{arm_double.url}/"  # points back at the double
    poller = client.deployments.begin_create_or_update(
        RESOURCE_GROUP, "lab", "gpt-4o", json.dumps(deployment_body("2024-11-20")).encode()
    )
    assert arm.wait(poller).properties.provisioning_state == "Succeeded"
    assert "gpt-4o" in arm_double.openai.deployments  # the chat API now serves it
    assert client.accounts.list_keys(RESOURCE_GROUP, "lab").key1 == arm_double.openai.api_key
    arm.wait(client.deployments.begin_delete(RESOURCE_GROUP, "lab", "gpt-4o"))
    assert "gpt-4o" not in arm_double.openai.deployments
    arm.wait(client.accounts.begin_delete(RESOURCE_GROUP, "lab"))
    assert arm_double.arm.leaks() == ["soft-deleted account lab"]
    assert [a.name for a in client.deleted_accounts.list()] == ["lab"]
    arm.wait(client.deleted_accounts.begin_purge("swedencentral", RESOURCE_GROUP, "lab"))
    assert arm_double.arm.leaks() == []
    assert arm_double.handler_errors == []


def test_operations_answer_in_each_services_own_style(arm_double):
    arm_double.arm.polls = 1
    body = {
        "location": "eastus2",
        "kind": "OpenAI",
        "sku": {"name": "S0"},
        "properties": {"customSubDomainName": "lab-ops"},
    }
    # Cognitive Services can create an account at once: 201 Succeeded, no LRO headers.
    created = put(arm_double, f"{ACCOUNTS}/lab-ops", body)
    assert created.status_code == 201 and created.json()["properties"]["provisioningState"] == "Succeeded"
    assert not {"Azure-AsyncOperation", "Location"} & set(created.headers)
    # A deployment goes through Azure-AsyncOperation: InProgress, then Succeeded.
    deployed = put(arm_double, f"{ACCOUNTS}/lab-ops/deployments/gpt-4o", deployment_body("2024-11-20"))
    assert deployed.status_code == 201 and deployed.json()["properties"]["provisioningState"] == "Accepted"
    status_url = deployed.headers["Azure-AsyncOperation"]
    assert deployed.headers["Retry-After"] == "1"
    first = requests.get(status_url, headers=HEADERS, timeout=10).json()
    second = requests.get(status_url, headers=HEADERS, timeout=10).json()
    assert (first["status"], second["status"]) == ("InProgress", "Succeeded")
    # Operation ids are base64 tokens of the resource id, subscription included, as ARM's are.
    token = status_url.split("/operationStatuses/")[1].split("?")[0]
    resource_id, _, operation = base64.b64decode(token).decode().partition(";")
    assert resource_id == f"{ACCOUNTS}/lab-ops/deployments/gpt-4o" and len(operation) == 36

    deleted = requests.delete(
        f"{arm_double.url}{ACCOUNTS}/lab-ops?api-version=2025-09-01", headers=HEADERS, timeout=10
    )
    assert deleted.status_code == 202
    assert {"Azure-AsyncOperation", "Location", "Retry-After"} <= set(deleted.headers)
    assert requests.get(deleted.headers["Location"], headers=HEADERS, timeout=10).status_code == 202
    assert requests.get(deleted.headers["Location"], headers=HEADERS, timeout=10).status_code == 204
    again = put(arm_double, f"{ACCOUNTS}/lab-ops", body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "FlagMustBeSetForRestore"


def test_arm_refuses_requests_without_a_valid_token(arm_double):
    client = arm.cognitive_client(Token(), SUBSCRIPTION, arm_double.url)
    arm_double.arm.accepted_tokens.clear()
    with pytest.raises(ClientAuthenticationError):
        client.accounts.get(RESOURCE_GROUP, "missing")
    assert requests.get(f"{arm_double.url}{ACCOUNTS}?api-version=1", timeout=10).status_code == 401


def test_token_endpoint_issues_tokens_every_api_of_the_double_accepts(arm_double):
    form = {
        "grant_type": "client_credentials",
        "client_id": "c",
        "client_secret": CLIENT_SECRET,
        "scope": "s",
    }
    reply = requests.post(f"{arm_double.url}/tenant/oauth2/v2.0/token", data=form, timeout=10)
    token = reply.json()["access_token"]
    assert token.startswith("eyJ") and token.count(".") == 2
    assert token in arm_double.openai.bearer_tokens and token in arm_double.databricks.tokens
    wrong = requests.post(
        f"{arm_double.url}/tenant/oauth2/v2.0/token", data={**form, "client_secret": "x"}, timeout=10
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_region_checks_read_models_and_usages(arm_double):
    client = arm.cognitive_client(Token(), SUBSCRIPTION, arm_double.url)
    assert check_region(client, "eastus2") == ("2024-11-20", "")
    arm_double.arm.fail_quota("eastus2", at="usage")
    version, why = check_region(client, "eastus2")
    assert version is None and "450 of 450K tokens per minute used (OpenAI.Standard.gpt-4o), 10K needed" in why
    arm_double.arm.unavailable_models["northcentralus"] = {"gpt-4o"}
    assert check_region(client, "northcentralus") == (
        None,
        "gpt-4o (Standard) is not offered in northcentralus",
    )


def test_deployment_needs_quota_and_a_known_model(arm_double):
    client = arm.cognitive_client(Token(), SUBSCRIPTION, arm_double.url)
    arm_double.arm.seed_account(
        "full", subscription=SUBSCRIPTION, resource_group=RESOURCE_GROUP, location="eastus2", tags={}
    )
    arm_double.arm.quota_limit = 15  # the seeded deployment already uses 10
    with pytest.raises(HttpResponseError) as error:
        client.deployments.begin_create_or_update(
            RESOURCE_GROUP, "full", "second", json.dumps(deployment_body("2024-11-20")).encode()
        )
    assert arm.is_quota_error(error.value)
    with pytest.raises(HttpResponseError) as error:
        client.deployments.begin_create_or_update(
            RESOURCE_GROUP, "full", "third", json.dumps(deployment_body("1999-01-01")).encode()
        )
    assert arm.error_code(error.value) == "DeploymentModelNotSupported" and not arm.is_quota_error(
        error.value
    )


@pytest.mark.parametrize(
    ("name", "status"),
    [("CreateAccount", "201"), ("PutDeployment", "201"), ("GetDeployment", "200"), ("ListKeys", "200")],
)
def test_cognitive_services_shapes_follow_the_official_examples(arm_double, shared_dir, name, status):
    official = example(shared_dir, name)["responses"][status]["body"]
    put(
        arm_double,
        f"{ACCOUNTS}/shape",
        {
            "location": "eastus2",
            "kind": "OpenAI",
            "sku": {"name": "S0"},
            "properties": {"customSubDomainName": "shape"},
        },
    )
    arm_double.arm.seed_account(
        "shape2", subscription=SUBSCRIPTION, resource_group=RESOURCE_GROUP, location="eastus2", tags={}
    )
    if name == "CreateAccount":
        ours = put(
            arm_double,
            f"{ACCOUNTS}/created",
            {
                "location": "eastus2",
                "kind": "OpenAI",
                "sku": {"name": "S0"},
                "properties": {"customSubDomainName": "created"},
            },
        ).json()
        official.pop("identity")  # the example asked for a managed identity; the lab does not
        for unused in ("encryption", "userOwnedStorage"):
            official["properties"].pop(unused)
    elif name == "PutDeployment":
        ours = put(arm_double, f"{ACCOUNTS}/shape2/deployments/d", deployment_body("2024-11-20")).json()
    elif name == "GetDeployment":
        url = f"{arm_double.url}{ACCOUNTS}/shape2/deployments/gpt-4o?api-version=2025-09-01"
        ours = requests.get(url, headers=HEADERS, timeout=10).json()
    else:
        url = f"{arm_double.url}{ACCOUNTS}/shape2/listKeys?api-version=2025-09-01"
        ours = requests.post(url, headers=HEADERS, timeout=10).json()
    assert keys_of(official) <= keys_of(ours)


def test_databricks_workspace_shapes_follow_the_official_examples(arm_double, shared_dir):
    arm_double.arm.polls = 1
    arm_double.arm.lro_styles["workspace.delete"] = "azure-async"  # the example's form (see test_azure_lro)
    create = example(shared_dir, "WorkspaceCreate")
    body = create["parameters"]["parameters"]
    reply = put(arm_double, f"{WORKSPACES}/ws", body, api_version="2026-01-01")
    assert reply.status_code == 201
    ignored = {
        "accessConnector",
        "defaultCatalog",
        "defaultStorageFirewall",
        "updatedBy",
    }  # options the lab leaves off
    official_created = create["responses"]["201"]["body"]
    for key in ignored:
        official_created["properties"].pop(key, None)
    assert keys_of(official_created) - {"tags.environment"} <= keys_of(reply.json())
    assert reply.json()["properties"]["provisioningState"] == "Accepted"

    for _ in range(2):
        requests.get(reply.headers["Azure-AsyncOperation"], headers=HEADERS, timeout=10)
    got = requests.get(
        f"{arm_double.url}{WORKSPACES}/ws?api-version=2026-01-01", headers=HEADERS, timeout=10
    ).json()
    official_got = example(shared_dir, "WorkspaceGet")["responses"]["200"]["body"]
    official_got["properties"].pop("updatedBy")
    assert keys_of(official_got) <= keys_of(got)
    assert got["properties"]["workspaceUrl"] == arm_double.url.split("://")[1]  # points back at the double

    deleted = requests.delete(
        f"{arm_double.url}{WORKSPACES}/ws?api-version=2026-01-01", headers=HEADERS, timeout=10
    )
    official_headers = example(shared_dir, "WorkspaceDelete")["responses"]["202"]["headers"]
    assert deleted.status_code == 202 and set(official_headers) <= set(deleted.headers)
    assert "/operationStatus/" in deleted.headers["Azure-AsyncOperation"]


def test_region_order_puts_azure_location_first_then_the_lab_regions_at_random():
    assert region_order("SwedenCentral", random.Random(1))[0] == "swedencentral"
    assert sorted(region_order("swedencentral")) == sorted(LAB_REGIONS)
    assert region_order("westeurope")[0] == "westeurope" and len(region_order("westeurope")) == 5
    orders = {tuple(region_order(None, random.Random(seed))) for seed in range(20)}
    assert len({order[0] for order in orders}) > 1  # the first pick varies


def test_arm_endpoint_scope_and_loopback_rules(monkeypatch):
    monkeypatch.delenv(arm.ARM_ENDPOINT_VARIABLE, raising=False)
    assert arm.arm_endpoint() == "https://management.azure.com"
    monkeypatch.setenv(arm.ARM_ENDPOINT_VARIABLE, "https://management.chinacloudapi.cn/")
    assert arm.arm_endpoint() == "https://management.chinacloudapi.cn"
    assert (
        arm.credential_scope("https://management.chinacloudapi.cn")
        == "https://management.chinacloudapi.cn/.default"
    )
    assert arm.credential_scope("http://127.0.0.1:8080") == "https://management.azure.com/.default"
    assert arm.is_loopback_url("http://localhost/x") and arm.is_loopback_url("http://[::1]:80/")
    assert not arm.is_loopback_url("http://management.azure.com.evil.example/")
    assert not arm.is_loopback_url("http://10.0.0.1/")


def test_bearer_tokens_still_refused_over_http_to_other_hosts():
    client = arm.cognitive_client(Token(), SUBSCRIPTION, "http://192.0.2.1")  # TEST-NET: never contacted
    with pytest.raises(Exception, match="non-TLS"):
        client.accounts.get(RESOURCE_GROUP, "any", retry_total=0)
