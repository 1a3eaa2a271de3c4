"""Which names carry secrets: headers, query and form parameters, JSON fields.

A value found under one of these names is redacted where it is, and then replaced wherever
else it appears (see :mod:`pytest_llmops.secrets.known`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CREDENTIAL_HEADERS = frozenset(
    {
        "api-key",
        "authorization",
        "proxy-authorization",
        "ocp-apim-subscription-key",
        "cookie",
        "set-cookie",
        "x-ms-authorization-auxiliary",
        "x-databricks-azure-sp-management-token",
    }
)
"""Headers that carry credentials: their values are secrets wherever else they appear."""

SECRET_HEADERS = CREDENTIAL_HEADERS | frozenset(
    {
        "x-databricks-azure-workspace-resource-id",
        "x-databricks-org-id",
        "apim-request-id",
        "x-request-id",
        "x-ms-request-id",
        "x-ms-client-request-id",
        "x-ms-correlation-request-id",
        "x-ms-routing-request-id",
        "x-ms-arm-service-request-id",
        "x-databricks-request-id",
        "request-id",
        "traceparent",
        "azureml-model-session",
        "openai-organization",
        "openai-project",
    }
)
"""Headers redacted in cassettes: credentials, and ids that would tie a recording to an account."""

SECRET_QUERY = frozenset(
    {"sig", "code", "token", "access_token", "refresh_token", "id_token", "client_secret", "api-key",
     "subscription-key", "password", "client_assertion", "assertion"}
)
SECRET_FORM = frozenset(
    {"client_secret", "client_assertion", "password", "refresh_token", "access_token", "code",
     "assertion", "id_token", "code_verifier", "token"}
)
"""Form fields, in ``application/x-www-form-urlencoded`` and ``multipart/form-data`` bodies."""

SECRET_JSON = frozenset(
    key.lower()
    for key in (
        "access_token", "refresh_token", "id_token", "client_secret", "password", "key1", "key2",
        "primaryKey", "secondaryKey", "connectionString", "primaryConnectionString",
        "secondaryConnectionString", "token_value", "api_key", "apiKey", "secret", "accessToken",
        "refreshToken", "sasToken", "sas_token", "private_key", "client_assertion",
        "string_value", "bytes_value",  # Databricks Secrets API: put_secret's value
    )
)
"""JSON fields, at any depth (case-insensitive)."""


@dataclass
class Names:
    """The names a session redacts (the defaults above, plus what ``pytest_llmops_configure``
    adds): shared by the cassettes' sanitizer and the MLflow scrubbing."""

    headers: set[str] = field(default_factory=lambda: set(SECRET_HEADERS))
    credential_headers: set[str] = field(default_factory=lambda: set(CREDENTIAL_HEADERS))
    query: set[str] = field(default_factory=lambda: set(SECRET_QUERY))
    form: set[str] = field(default_factory=lambda: set(SECRET_FORM))
    json: set[str] = field(default_factory=lambda: set(SECRET_JSON))
