"""What the double's ARM resource providers share: path patterns, the ARM error shape, and
finding an account by the path of a request."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .arm_api import ArmDouble

SUB = r"/subscriptions/(?P<sub>[^/]+)"
RG = SUB + r"/resourceGroups/(?P<rg>[^/]+)"
COG = r"/providers/Microsoft\.CognitiveServices"
COG_PATH = "/providers/Microsoft.CognitiveServices"
ACCOUNT = RG + COG + r"/accounts/(?P<account>[^/]+)"
LOCATION = SUB + COG + r"/locations/(?P<location>[^/]+)"


def arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """An ARM error response: ``{"error": {"code": ..., "message": ...}}``."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def public(resource: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a stored account (its deployments and keys are private)."""
    return {k: copy.deepcopy(v) for k, v in resource.items() if k not in ("deployments", "keys")}


def find_account(api: ArmDouble, request: Request) -> dict[str, Any] | None:
    """The account a request's path names, or None."""
    p = request.params
    return api.accounts.get((p["sub"].lower(), p["rg"].lower(), p["account"].lower()))


def account_not_found(request: Request) -> Response:
    """ARM's 404 for an account."""
    p = request.params
    return arm_error(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.CognitiveServices/accounts/{p['account']}' under resource group "
        f"'{p['rg']}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )
