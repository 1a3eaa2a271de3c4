"""Entra ID (the Microsoft identity platform) on the lab double: what azure-identity's
``ClientSecretCredential`` (MSAL underneath) asks for.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: tenant discovery; MSAL reads the
  ``token_endpoint`` from it and checks that ``issuer`` belongs to the authority.
- ``POST /{tenant}/oauth2/v2.0/token`` (client credentials): a JWT-shaped access token that
  ARM, the Azure OpenAI API and the Databricks API of this double all accept.

azure-identity refuses an ``http://`` authority, so the lab reaches these over the double's
https listener (``double.login_url``, certificate in ``double.ca_bundle``); the same routes
also answer on plain http for hand-written credentials.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .arm_api import ArmDouble
    from .server import LabDouble


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _login_base(double: LabDouble, request: Request) -> str:
    host = request.headers.get("host") or ""
    secure = double.tls_port is not None and host.endswith(f":{double.tls_port}")
    return f"{'https' if secure else 'http'}://{host}" if host else double.url


class Entra:
    """The token and discovery endpoints; tokens it issues are accepted by every API."""

    def __init__(self, double: LabDouble, arm: ArmDouble) -> None:
        self.double = double
        self.arm = arm

    def openid_configuration(self, request: Request) -> Response:
        """Tenant discovery, in the shape of ``login.microsoftonline.com``'s answer."""
        tenant = request.params["tenant"]
        base = f"{_login_base(self.double, request)}/{tenant}"
        body = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "aud", "exp", "iat", "nonce", "tid"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
        return json_response(200, body)

    def token(self, request: Request) -> Response:
        """``POST /{tenant}/oauth2/v2.0/token`` (client credentials)."""
        form = dict(parse_qsl(request.body.decode("utf-8")))
        if form.get("client_secret") != self.arm.client_secret:
            body = {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
                "error_codes": [7000215],
            }
            return json_response(401, body)
        claims = {
            "aud": form.get("scope", "").removesuffix("/.default"),
            "iss": f"https://sts.windows.net/{request.params['tenant']}/",
            "appid": form.get("client_id", ""),
            "tid": request.params["tenant"],
            "jti": uuid.uuid4().hex,
        }
        token = ".".join(
            (_b64url({"typ": "JWT", "alg": "RS256"}), _b64url(claims), _b64url({"sig": uuid.uuid4().hex}))
        )
        with self.arm.lock:
            self.arm.accepted_tokens.add(token)
            self.double.openai.bearer_tokens.add(token)
            self.double.databricks.tokens.add(token)
        body = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        return json_response(200, body)


def register(double: LabDouble, arm: ArmDouble) -> Entra:
    """Add the Entra ID routes to ``double``."""
    entra = Entra(double, arm)
    double.route(
        "GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", entra.openid_configuration
    )
    double.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", entra.token)
    return entra
