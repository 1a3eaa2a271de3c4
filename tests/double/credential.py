"""A ``TokenCredential`` for the lab double.

azure-identity refuses an ``http://`` authority, so live and record runs against the
double (CI, ``scripts/record-lab``) name this class in ``LLMOPS_AZURE_CREDENTIAL``: it
POSTs client credentials to the double's token endpoint, so a real token request and its
JWT-shaped answer go through the recorder (and are scrubbed).
"""

from __future__ import annotations

import os
import time
from typing import Any


class DoubleCredential:
    """Client credentials against ``$AZURE_AUTHORITY_HOST/$AZURE_TENANT_ID/oauth2/v2.0/token``."""

    def __init__(self) -> None:
        self._tokens: dict[str, Any] = {}

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        import requests
        from azure.core.credentials import AccessToken

        cached = self._tokens.get(scopes[0])
        if cached is None or cached.expires_on < time.time() + 300:
            url = f"{os.environ['AZURE_AUTHORITY_HOST']}/{os.environ['AZURE_TENANT_ID']}/oauth2/v2.0/token"
            form = {
                "grant_type": "client_credentials",
                "client_id": os.environ["AZURE_CLIENT_ID"],
                "client_secret": os.environ["AZURE_CLIENT_SECRET"],
                "scope": scopes[0],
            }
            reply = requests.post(url, data=form, timeout=30)
            reply.raise_for_status()
            body = reply.json()
            cached = AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))
            self._tokens[scopes[0]] = cached
        return cached
