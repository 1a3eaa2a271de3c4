"""What the Azure tests share: the lab double set up for Azure Resource Manager, the
variables that point a provisioning run at it, and the conftest of the generated suites.

How the generated suites authenticate: they override the ``azure_credential`` fixture
(the documented override point) with ``DoubleCredential``, a small ``TokenCredential``
that fetches client-credential tokens from the double's Entra ID token endpoint over
plain HTTP: quick, and an HTTP token request whose JSON answer carries a JWT, so its
scrubbing is exercised. The lab itself (``tests.double.lab``), and the tests of what a
recording holds (``test_lab_realism``), use azure-identity's own ``ClientSecretCredential``
against the double's https listener (``tests.double.credential``), so that the token
requests recorded are the ones azure-identity really sends.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.double import LabDouble

SUBSCRIPTION = "3f2b8c1e-9a7d-4e6f-b5c4-2d1a0e9f8b7c"
TENANT = "9c4e2f1a-7b3d-4a5e-8f6c-1d2e3f4a5b6c"
RESOURCE_GROUP = "rg-llmops-lab"
CLIENT_SECRET = "Qx7~lab.client-secret_9f8e7d6c5b4a3f2e"
LAB_REGIONS = ("eastus2", "northcentralus", "swedencentral", "switzerlandwest")

CONFTEST = '''
import os
import time

import pytest
import requests


class DoubleCredential:
    """Client credentials against the lab double's token endpoint (azure-identity refuses
    the double's http authority)."""

    def __init__(self):
        self._tokens = {}

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        cached = self._tokens.get(scopes[0])
        if cached is None or cached.expires_on < time.time() + 300:
            url = f"{os.environ['AZURE_AUTHORITY_HOST']}/{os.environ['AZURE_TENANT_ID']}/oauth2/v2.0/token"
            form = {"grant_type": "client_credentials", "client_id": os.environ["AZURE_CLIENT_ID"],
                    "client_secret": os.environ["AZURE_CLIENT_SECRET"], "scope": scopes[0]}
            reply = requests.post(url, data=form, timeout=30)
            reply.raise_for_status()
            body = reply.json()
            cached = AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))
            self._tokens[scopes[0]] = cached
        return cached


@pytest.fixture(scope="session")
def azure_credential():
    return DoubleCredential()
'''

CHAT = """
def test_chat(azure_openai_client, azure_openai_deployment):
    assert azure_openai_deployment.provisioned
    reply = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment,
        messages=[{"role": "user", "content": "Tell me a joke about animals."}],
    )
    assert reply.choices[0].message.content
"""


@pytest.fixture
def arm_double(lab_double: LabDouble) -> LabDouble:
    """The lab double with instant long-running operations (one status read each), a client
    secret of real shape, and no Azure OpenAI deployment until ARM creates one."""
    lab_double.arm.polls = 0
    lab_double.arm.client_secret = CLIENT_SECRET
    with lab_double.lock:
        lab_double.openai.deployments.clear()
    return lab_double


@pytest.fixture
def azure_env(arm_double: LabDouble, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables of a provisioning run against the double (ARM and Entra ID there)."""
    env = {
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZURE_RESOURCE_GROUP": RESOURCE_GROUP,
        "AZURE_RESOURCE_MANAGER_ENDPOINT": arm_double.url,
        "AZURE_AUTHORITY_HOST": arm_double.url,
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": "lab-client",
        "AZURE_CLIENT_SECRET": CLIENT_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def unset(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Remove a run's variables (replay must need none)."""
    for name in env:
        monkeypatch.delenv(name, raising=False)


def account_puts(double: LabDouble) -> list[str]:
    """Names of the accounts the double was asked to create, in order."""
    return [
        re.sub(r".*/accounts/", "", r.path.split("?")[0])
        for r in double.requests_to(r"/accounts/[^/]+$", "PUT")
    ]


def verbs(double: LabDouble, name: str) -> list[str]:
    """What happened to one resource, in order (created, deleted, purged...)."""
    return [verb for verb, _, resource in double.arm.audit()["events"] if resource == name]
