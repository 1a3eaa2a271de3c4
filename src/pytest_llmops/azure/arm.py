"""Azure Resource Manager: where it is, how to authenticate to it, its clients, and the
long-running operations they start.

The management clients are azure-mgmt's (``CognitiveServicesManagementClient``,
``AzureDatabricksManagementClient``), built with ``base_url`` from
``AZURE_RESOURCE_MANAGER_ENDPOINT`` (default ``https://management.azure.com``).

azure-core refuses to send a bearer token over plain http. That is right for the
internet, and wrong for a local double on loopback (which the ARM endpoint of a test
suite, and the ``Location`` of a recording made against one, may be): the
authentication policy here allows http to loopback hosts only.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
    from azure.mgmt.databricks import AzureDatabricksManagementClient

ARM_ENDPOINT_VARIABLE = "AZURE_RESOURCE_MANAGER_ENDPOINT"
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
LRO_TIMEOUT_S = 1800.0
"""Longest wait for one Azure operation (creating an account or a workspace takes minutes)."""

T = TypeVar("T")


def arm_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The ARM base URL: ``AZURE_RESOURCE_MANAGER_ENDPOINT``, else the public cloud's."""
    env = os.environ if environ is None else environ
    return (env.get(ARM_ENDPOINT_VARIABLE, "").strip() or DEFAULT_ARM_ENDPOINT).rstrip("/")


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credential_scope(endpoint: str) -> str:
    """The token scope for an ARM endpoint: the endpoint itself for a (sovereign) cloud,
    the public cloud's for a local double (whose fake credential ignores it)."""
    if endpoint.startswith("https://") and not is_loopback_url(endpoint):
        return f"{endpoint.rstrip('/')}/.default"
    return f"{DEFAULT_ARM_ENDPOINT}/.default"


class ReplayCredential:
    """The ``TokenCredential`` of replay: cassettes need no real token (the Authorization
    header is redacted on both sides of a match)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("replay-token", int(time.time()) + 3600)


def _authentication_policy(credential: Any, scope: str) -> Any:
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    class LoopbackAwareAuthentication(ARMChallengeAuthenticationPolicy):
        """ARM's bearer policy, allowing plain http to loopback hosts only."""

        def on_request(self, request: Any) -> None:
            if is_loopback_url(request.http_request.url):
                request.context["enforce_https"] = False
            super().on_request(request)

    return LoopbackAwareAuthentication(credential, scope)


def _client_kwargs(credential: Any, endpoint: str) -> dict[str, Any]:
    scope = credential_scope(endpoint)
    return {
        "base_url": endpoint,
        "credential_scopes": [scope],
        "authentication_policy": _authentication_policy(credential, scope),
    }


def cognitive_client(
    credential: Any, subscription_id: str, endpoint: str
) -> CognitiveServicesManagementClient:
    """A Cognitive Services (Azure OpenAI) management client."""
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient

    return CognitiveServicesManagementClient(
        credential, subscription_id, **_client_kwargs(credential, endpoint)
    )


def databricks_client(
    credential: Any, subscription_id: str, endpoint: str
) -> AzureDatabricksManagementClient:
    """An Azure Databricks management client."""
    from azure.mgmt.databricks import AzureDatabricksManagementClient

    return AzureDatabricksManagementClient(
        credential, subscription_id, **_client_kwargs(credential, endpoint)
    )


class FailedOperation(Exception):
    """A long-running operation whose resource ended ``Failed`` or ``Canceled`` although
    azure-core returned it as a result: what a create answered with ``provisioningState:
    Failed`` and no LRO headers becomes (azure-core's body polling does not raise then)."""

    def __init__(self, state: str, code: str, message: str, resource_id: str) -> None:
        self.state = state
        self.code = code
        self.message = message
        self.resource_id = resource_id
        detail = f"{code}: {message}" if code else (message or "Azure gave no error code")
        super().__init__(f"provisioningState {state} for {resource_id or 'the resource'} ({detail})")


def wait(poller: Any, timeout: float = LRO_TIMEOUT_S) -> Any:
    """The result of a long-running operation (``Azure-AsyncOperation``/``Location`` polled
    at the server's ``Retry-After``; during replay those waits are no-ops). A result whose
    ``provisioningState`` is ``Failed`` or ``Canceled`` raises :class:`FailedOperation` with
    Azure's error code, instead of passing for a success."""
    result = poller.result(timeout=timeout)
    if not poller.done():
        raise TimeoutError(f"the Azure operation did not finish within {timeout:.0f} s")
    found = _field(_field(result, "properties"), "provisioning_state", "provisioningState")
    state = str(getattr(found, "value", found) or poller.status())  # an SDK enum, or a str
    if state in ("Failed", "Canceled"):
        error = _model_error(result)
        raise FailedOperation(
            state,
            str(error.get("code") or ""),
            str(error.get("message") or ""),
            str(_field(result, "id") or ""),
        )
    return result


def _field(model: Any, *names: str) -> Any:
    """An attribute of an azure-mgmt model, or a key of a dict-like one."""
    for name in names:
        if isinstance(model, Mapping) and name in model:
            return model[name]
        value = getattr(model, name, None)
        if value is not None:
            return value
    return None


def _model_error(result: Any) -> dict[str, Any]:
    """The ``error`` a failed resource carries beside its provisioningState (kept by the
    models among their unknown fields), or ``{}``."""
    for holder in (result, _field(result, "properties")):
        if holder is None:
            continue
        extra = getattr(holder, "additional_properties", None)
        candidates = [extra.get("error") if isinstance(extra, Mapping) else None, _field(holder, "error")]
        for error in candidates:
            if isinstance(error, Mapping) and error.get("code"):
                return dict(error)
    return {}


def arm_error(error: BaseException) -> tuple[str, str]:
    """``(code, message)`` of an ARM error, wherever Azure put it: azure-core's parsed error
    (a 4xx body, or a ``Failed`` Azure-AsyncOperation status), else the failed resource's own
    body (``error`` or ``properties.error`` beside ``provisioningState: Failed``, which a
    create answered without LRO headers carries and azure-core does not parse).
    ``("", first line)`` when Azure gave no code."""
    if isinstance(error, FailedOperation):
        return error.code, error.message or str(error)
    odata = getattr(error, "error", None)
    code, message = getattr(odata, "code", None), getattr(odata, "message", None)
    if code:
        return str(code), str(message or "")
    body = _response_json(error)
    found_properties = body.get("properties")
    properties: dict[str, Any] = found_properties if isinstance(found_properties, dict) else {}
    for found in (body.get("error"), properties.get("error")):
        if isinstance(found, dict) and found.get("code"):
            return str(found["code"]), str(found.get("message") or "")
    state = properties.get("provisioningState") or body.get("status")
    if state in ("Failed", "Canceled"):
        what = body.get("id") or "the resource"
        return "", f"provisioningState {state} for {what}, without an error code"
    text = str(error).strip()
    return "", text.splitlines()[0] if text else type(error).__name__


def _response_json(error: BaseException) -> dict[str, Any]:
    import json

    response = getattr(error, "response", None)
    try:
        body = json.loads(response.text()) if response is not None else None
    except (ValueError, TypeError, AttributeError):
        return {}
    return body if isinstance(body, dict) else {}


def error_code(error: BaseException) -> str:
    """The ARM error code (``""`` when Azure gave none): see :func:`arm_error`."""
    return arm_error(error)[0]


def error_message(error: BaseException) -> str:
    """The ARM error message (without azure-core's code prefix), else the first line."""
    message = arm_error(error)[1]
    if message:
        return message
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_quota_error(error: BaseException) -> bool:
    """Whether an ARM error says the region ran out of quota."""
    code, message = arm_error(error)
    if code in ("InsufficientQuota", "QuotaExceeded"):
        return True
    return code == "OperationNotAllowed" and "quota" in f"{message} {error}".lower()


def is_not_found(error: BaseException) -> bool:
    """Whether an ARM error is a 404."""
    return getattr(error, "status_code", None) == 404


def ignoring_not_found(call: Callable[[], T]) -> T | None:
    """``call()``, or None when what it acts on does not exist (anymore)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return call()
    except ResourceNotFoundError:
        return None


def sleep(seconds: float) -> None:
    """Wait between readiness checks (a no-op during replay: this module is in the
    cassettes' no-sleep list)."""
    time.sleep(seconds)
