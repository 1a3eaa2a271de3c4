"""The Azure credential of live and record runs against the lab double.

azure-identity's own ``ClientSecretCredential``, as ``DefaultAzureCredential`` builds it from
``AZURE_TENANT_ID``/``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``, so that the token requests
a recording holds are the ones azure-identity (MSAL underneath) really sends: tenant
discovery (``GET /<tenant>/v2.0/.well-known/openid-configuration``), then ``POST
/<tenant>/oauth2/v2.0/token`` with MSAL's form fields and ``x-client-*`` headers.

Two settings differ from a user's run, both because the authority is the double on loopback:
- ``authority`` is the double's https listener (``AZURE_AUTHORITY_HOST``), trusted through
  its self-signed certificate (``LAB_DOUBLE_CA_BUNDLE``): azure-identity refuses ``http://``.
- ``disable_instance_discovery=True``: MSAL skips instance discovery for
  ``login.microsoftonline.com`` (a host it knows) but would ask that public host about any
  other authority; the double must never cause a packet off the machine.

The lab names this factory in ``LLMOPS_AZURE_CREDENTIAL`` (``tests.double.lab``).
"""

from __future__ import annotations

import os
from typing import Any

CA_BUNDLE_VARIABLE = "LAB_DOUBLE_CA_BUNDLE"


def lab_credential() -> Any:
    """A ``ClientSecretCredential`` for the double's Entra ID (see the module docstring)."""
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        os.environ["AZURE_TENANT_ID"],
        os.environ["AZURE_CLIENT_ID"],
        os.environ["AZURE_CLIENT_SECRET"],
        authority=os.environ["AZURE_AUTHORITY_HOST"],
        disable_instance_discovery=True,
        connection_verify=os.environ[CA_BUNDLE_VARIABLE],
    )
