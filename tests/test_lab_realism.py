"""Recordings that read like Azure's and Databricks' own traffic (issue 13, items 5 and 6).

Users learn from the shipped cassettes, so a recording made against the lab double must
look like one made against the real services: no ``Server: LabDouble``, no loopback host in
``Azure-AsyncOperation``/``Location`` headers or in bodies (an account's ``endpoint``, a
workspace's ``workspaceUrl``), token requests as azure-identity really makes them, and the
identities real answers carry (for the scrubbing that handles them).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from pytest_llmops.cassettes.sanitize import Sanitizer
from pytest_llmops.secrets.scan import scan_paths
from tests import test_azure_support as support
from tests.conftest import REPO, all_bytes
from tests.test_azure_support import RESOURCE_GROUP, SUBSCRIPTION, TENANT, unset

arm_double = support.arm_double
azure_env = support.azure_env

LOOPBACK = re.compile(rb"localhost|127\.0\.0\.1|\[::1\]|LabDouble")
ZERO = "00000000-0000-0000-0000-000000000000"


def test_double_urls_in_headers_and_bodies_get_each_services_placeholder():
    sanitizer = Sanitizer.from_environ(
        {
            "AZURE_RESOURCE_MANAGER_ENDPOINT": "http://127.0.0.1:4321",
            "AZURE_AUTHORITY_HOST": "https://127.0.0.1:4322",
        }
    )
    local = "http://127.0.0.1:4321"
    body = {
        "properties": {
            "endpoint": f"{local}/",
            "endpoints": {"OpenAI Language Model Instance API": f"{local}/"},
            "workspaceUrl": "127.0.0.1:4321",
        },
        "oidc_endpoint": f"{local}/oidc",
        "token_endpoint": "https://127.0.0.1:4322/tenant/oauth2/v2.0/token",
        "issuer": "https://127.0.0.1:4322/tenant/v2.0",
        "not_ours": "http://127.0.0.1:43210/x",
    }
    response = {
        "status": {"code": 201, "message": "Created"},
        "headers": {
            "Azure-AsyncOperation": [
                f"{local}/subscriptions/s/providers/Microsoft.Databricks/workspaces/w/"
                "operationStatus/dG9rZW4=?api-version=2026-01-01"
            ],
            "Location": [
                f"{local}/subscriptions/s/providers/Microsoft.CognitiveServices/locations/eastus2/"
                "operationResults/dG9rZW4=?api-version=2025-09-01"
            ],
            "content-type": ["application/json"],
        },
        "body": {"string": json.dumps(body).encode()},
    }
    scrubbed = sanitizer.response(response)
    headers = scrubbed["headers"]
    assert headers["Azure-AsyncOperation"][0].startswith(
        "https://management.azure.com/subscriptions/s/providers/Microsoft.Databricks/workspaces/w/operationStatus/"
    )
    assert headers["Location"][0].startswith("https://management.azure.com/subscriptions/s/")
    text = json.loads(scrubbed["body"]["string"])
    assert text["properties"] == {
        "endpoint": "https://resource.openai.azure.com/",
        "endpoints": {"OpenAI Language Model Instance API": "https://resource.openai.azure.com/"},
        "workspaceUrl": "adb-0000000000000000.0.azuredatabricks.net",
    }
    assert text["oidc_endpoint"] == "https://adb-0000000000000000.0.azuredatabricks.net/oidc"
    assert text["token_endpoint"] == "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"
    assert text["issuer"] == "https://login.microsoftonline.com/tenant/v2.0"
    assert text["not_ours"] == "http://127.0.0.1:43210/x"  # another port: not this session's double


LAB = """
def test_lab(azure_openai_deployment, azure_databricks_workspace):
    assert azure_openai_deployment.provisioned and azure_databricks_workspace.provisioned
"""


@pytest.fixture
def identity_env(arm_double, azure_env, monkeypatch):
    """azure-identity's ClientSecretCredential against the double's https Entra ID, as the lab runs it."""
    from tests.double.credential import CA_BUNDLE_VARIABLE

    monkeypatch.setenv("AZURE_AUTHORITY_HOST", arm_double.login_url)
    monkeypatch.setenv(CA_BUNDLE_VARIABLE, arm_double.ca_bundle)
    monkeypatch.setenv("LLMOPS_AZURE_CREDENTIAL", "tests.double.credential:lab_credential")
    return {
        **azure_env,
        "AZURE_AUTHORITY_HOST": arm_double.login_url,
        CA_BUNDLE_VARIABLE: arm_double.ca_bundle,
        "LLMOPS_AZURE_CREDENTIAL": "tests.double.credential:lab_credential",
    }


def direct_token_requests(double) -> list:
    """What azure-identity sends when asked for a token directly (no plugin, no cassette)."""
    from tests.double.credential import lab_credential

    before = len(double.requests)
    lab_credential().get_token("https://management.azure.com/.default")
    return double.requests[before:]


def test_a_recording_reads_like_azures_traffic(
    pytester: pytest.Pytester, arm_double, identity_env, monkeypatch
):
    arm_double.arm.polls = 1
    pytester.makepyfile(test_lab=LAB)
    pytester.runpytest("--llmops-record", "--llmops-provision").assert_outcomes(passed=1)
    cassettes = pytester.path / "cassettes"
    written = all_bytes(cassettes)
    assert not LOOPBACK.findall(written), set(LOOPBACK.findall(written))
    assert f":{arm_double.port}".encode() not in written and f":{arm_double.tls_port}".encode() not in written
    assert scan_paths([cassettes]) == []

    session = yaml.safe_load((cassettes / "_session" / "azure_openai_deployment.yaml").read_text())
    interactions = session["interactions"]
    for interaction in interactions:
        headers = interaction["response"]["headers"]
        assert "Server" not in headers and "server" not in headers
        for name in ("Azure-AsyncOperation", "Location"):
            for value in headers.get(name, []):
                assert value.startswith("https://management.azure.com/subscriptions/"), value
    bodies = [json.loads(i["response"]["body"]["string"] or "null") for i in interactions]
    endpoints = {
        b["properties"]["endpoint"]
        for b in bodies
        if isinstance(b, dict) and "endpoint" in b.get("properties", {})
    }
    assert endpoints == {"https://resource.openai.azure.com/"}
    workspace = yaml.safe_load((cassettes / "_session" / "azure_databricks_workspace.yaml").read_text())
    urls = {
        json.loads(i["response"]["body"]["string"])["properties"].get("workspaceUrl")
        for i in workspace["interactions"]
        if i["response"]["body"]["string"].startswith('{"name"')
    }
    assert urls == {None, "adb-0000000000000000.0.azuredatabricks.net"}  # none until it succeeded

    # The token requests are azure-identity's own: tenant discovery, then MSAL's form and headers.
    discovery, token = interactions[0]["request"], interactions[1]["request"]
    assert (discovery["method"], discovery["uri"]) == (
        "GET",
        f"https://login.microsoftonline.com/{ZERO}/v2.0/.well-known/openid-configuration",
    )
    assert (token["method"], token["uri"]) == (
        "POST",
        f"https://login.microsoftonline.com/{ZERO}/oauth2/v2.0/token",
    )
    direct = direct_token_requests(arm_double)
    assert [(r.method, r.path.replace(TENANT, ZERO)) for r in direct] == [
        ("GET", f"/{ZERO}/v2.0/.well-known/openid-configuration"),
        ("POST", f"/{ZERO}/oauth2/v2.0/token"),
    ]
    form = dict(pair.split("=", 1) for pair in token["body"].split("&"))
    direct_form = dict(pair.split("=", 1) for pair in direct[1].body.decode().split("&"))
    assert (
        form.keys()
        == direct_form.keys()
        == {"client_id", "grant_type", "client_info", "client_secret", "scope"}
    )
    assert form["grant_type"] == "client_credentials" and form["client_secret"] == "%3Credacted%3E"
    recorded_headers = {name.lower() for name in token["headers"]}
    assert {"x-client-sku", "x-client-ver", "x-ms-lib-capability", "client-request-id"} <= recorded_headers
    assert recorded_headers - {"host"} == set(direct[1].headers) - {"host"}
    assert token["headers"]["User-Agent"][0].startswith("azsdk-python-identity/")

    arm_double.stop()
    unset(monkeypatch, identity_env)
    pytester.runpytest().assert_outcomes(passed=1)


SHIPPED = REPO / "cassettes"


def shipped(path: str) -> dict:
    return yaml.safe_load((SHIPPED / path).read_text())


def test_the_shipped_cassettes_read_like_azures_traffic():
    written = all_bytes(SHIPPED)
    assert not LOOPBACK.findall(written), set(LOOPBACK.findall(written))
    openai = shipped("_session/azure_openai_deployment.yaml")["interactions"]
    assert all("Server" not in i["response"]["headers"] for i in openai)
    polled = [
        v
        for i in openai
        for n in ("Azure-AsyncOperation", "Location")
        for v in i["response"]["headers"].get(n, [])
    ]
    assert polled and all(v.startswith("https://management.azure.com/subscriptions/") for v in polled)
    assert openai[0]["request"]["uri"].endswith("/v2.0/.well-known/openid-configuration")
    assert "client_info=1" in openai[1]["request"]["body"]
    assert openai[1]["request"]["headers"]["x-client-sku"] == ["MSAL.Python"]
    cluster = shipped("_session/databricks_cluster.yaml")
    scope = cluster["metadata"]["environment"]["scope"]
    [create] = [
        i["request"] for i in cluster["interactions"] if i["request"]["uri"].endswith("/clusters/create")
    ]
    assert json.loads(create["body"])["spark_env_vars"]["AZURE_OPENAI_API_KEY"] == (
        f"{{{{secrets/{scope}/AZURE_OPENAI_API_KEY}}}}"
    )
    [put] = [i["request"] for i in cluster["interactions"] if i["request"]["uri"].endswith("/secrets/put")]
    assert json.loads(put["body"])["string_value"] == "<redacted>"


def test_the_double_sends_the_identities_real_answers_carry(arm_double):
    """Real ARM bodies name their creator (``systemData.createdBy``, a workspace's
    ``createdBy.oid/puid``); Databricks names users in SCIM ``userName`` and a cluster's
    ``single_user_name``. The double sends them, so scrubbing them is exercised."""
    import requests

    from tests.double.arm_api import DEFAULT_ARM_TOKEN
    from tests.test_databricks_support import client

    headers = {"Authorization": f"Bearer {DEFAULT_ARM_TOKEN}"}
    base = f"{arm_double.url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers"
    account = requests.put(
        f"{base}/Microsoft.CognitiveServices/accounts/who?api-version=2025-09-01",
        headers=headers,
        json={
            "location": "eastus2",
            "kind": "OpenAI",
            "sku": {"name": "S0"},
            "properties": {"customSubDomainName": "who"},
        },
        timeout=10,
    ).json()
    assert account["systemData"]["createdBy"] == "lab-user@example.com"
    assert account["systemData"]["createdByType"] == "User"
    workspace = requests.put(
        f"{base}/Microsoft.Databricks/workspaces/who?api-version=2026-01-01",
        headers=headers,
        json={
            "location": "eastus2",
            "sku": {"name": "premium"},
            "properties": {"managedResourceGroupId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/m"},
        },
        timeout=10,
    ).json()
    creator = workspace["properties"]["createdBy"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", creator["oid"])
    assert not re.match(r"^(.)\1{7}", creator["oid"]) and not re.match(r"^(.)\1+$", creator["puid"])
    assert workspace["systemData"]["createdBy"] == "lab-user@example.com"

    databricks = client(arm_double)
    arm_double.databricks.transition_seconds = 0
    assert databricks.current_user.me().user_name == "lab-user@example.com"
    details = databricks.clusters.create(
        cluster_name="who",
        spark_version="16.4.x-cpu-ml-scala2.12",
        node_type_id="Standard_D4ds_v5",
        num_workers=0,
        single_user_name="lab-user@example.com",
    ).result()
    assert details.single_user_name == details.creator_user_name == "lab-user@example.com"
