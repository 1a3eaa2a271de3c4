"""Cognitive Services (Azure OpenAI) accounts on the double's ARM: create, read, list, keys,
soft delete, deleted accounts and purge. Deployments, usages and models: ``arm_deployments``.

An account's creation answers in the ``account.create`` style of ``arm_lro`` (by default
201 ``Succeeded`` with no LRO headers, as Cognitive Services can); deletes and purges go
through ``Azure-AsyncOperation``/``Location``.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import arm_deployments
from .arm_lro import now
from .arm_resources import (
    ACCOUNT,
    COG,
    COG_PATH,
    LOCATION,
    RG,
    SUB,
    account_not_found,
    find_account,
    public,
)
from .arm_resources import arm_error as _error
from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .arm_api import ArmDouble


def account_body(
    api: ArmDouble,
    sub: str,
    rg: str,
    name: str,
    location: str,
    kind: str,
    tags: dict[str, str],
    properties: dict[str, Any],
    base: str,
) -> dict[str, Any]:
    """A new account as the double stores it (``deployments`` and ``keys`` are private)."""
    subdomain = properties.get("customSubDomainName") or name
    endpoint = f"{base or api.double.url}/"
    return {
        "id": f"/subscriptions/{sub}/resourceGroups/{rg}{COG_PATH}/accounts/{name}",
        "name": name,
        "type": "Microsoft.CognitiveServices/accounts",
        "location": location,
        "sku": {"name": "S0"},
        "kind": kind,
        "tags": tags,
        "etag": f'"{uuid.uuid4()}"',
        "systemData": api.system_data(),
        "properties": {
            "endpoint": endpoint,
            "endpoints": {"OpenAI Language Model Instance API": endpoint},
            "provisioningState": "Accepted",
            "customSubDomainName": subdomain,
            "publicNetworkAccess": properties.get("publicNetworkAccess", "Enabled"),
            "disableLocalAuth": bool(properties.get("disableLocalAuth")) or api.disable_local_auth,
            "dateCreated": now(),
            "internalId": uuid.uuid4().hex,
        },
        "deployments": {},
        "keys": (uuid.uuid4().hex, uuid.uuid4().hex),
    }


def seed_account(
    api: ArmDouble, name: str, subscription: str, resource_group: str, location: str, tags: dict[str, str]
) -> None:
    """Plant an existing account with a gpt-4o deployment (see ``ArmDouble.seed_account``)."""
    with api.lock:
        key = (subscription.lower(), resource_group.lower(), name.lower())
        account = account_body(api, subscription, resource_group, name, location, "OpenAI", tags, {}, "")
        account["properties"]["provisioningState"] = "Succeeded"
        api.accounts[key] = account
        deployment = arm_deployments.deployment_body(
            api,
            account,
            "gpt-4o",
            {"name": "Standard", "capacity": 10},
            {
                "model": {
                    "format": "OpenAI",
                    "name": "gpt-4o",
                    "version": arm_deployments.GPT_4O_VERSIONS[0][0],
                }
            },
        )
        deployment["properties"]["provisioningState"] = "Succeeded"
        account["deployments"]["gpt-4o"] = deployment


class Accounts:
    """The account handlers of one ARM double."""

    def __init__(self, api: ArmDouble) -> None:
        self.api = api

    def put(self, request: Request) -> Response:
        """``PUT .../accounts/{name}``: create (in the ``account.create`` style) or update (200)."""
        api = self.api
        sub, rg, name = request.params["sub"], request.params["rg"], request.params["account"]
        body = request.json()
        location = str(body.get("location") or "").replace(" ", "").lower()
        kind, sku = body.get("kind"), (body.get("sku") or {}).get("name")
        properties = body.get("properties") or {}
        if not location or not kind or not sku:
            return _error(400, "InvalidRequestContent", "location, kind and sku.name are required.")
        key = (sub.lower(), rg.lower(), name.lower())
        with api.lock:
            existing = api.accounts.get(key)
            if existing is not None:
                existing["tags"] = body.get("tags") or {}
                return json_response(200, public(existing))
            refused = self._refusal(key, kind, location, str(properties.get("customSubDomainName") or ""))
            if refused is not None:
                api.events.append(("refused", "account", name))
                return refused
            account = account_body(
                api, sub, rg, name, location, kind, body.get("tags") or {}, properties, api.base(request)
            )
            api.accounts[key] = account
            api.events.append(("created", "account", name))

        def finish() -> None:
            with api.lock:
                if key in api.accounts:
                    api.accounts[key]["properties"]["provisioningState"] = "Succeeded"
            return None

        def current() -> dict[str, Any] | None:
            with api.lock:
                return public(account)

        return api.cognitive_operation(
            request, "account.create", location, account["id"], finish, body=current
        )

    def _refusal(
        self, key: tuple[str, str, str], kind: str, location: str, subdomain: str
    ) -> Response | None:
        api = self.api
        if key in api.deleted:
            return _error(
                409,
                "FlagMustBeSetForRestore",
                f"An existing resource with ID '{api.deleted[key]['id']}' has been soft-deleted. To "
                "restore the resource, you must specify 'restore' to be 'true' in the property. If you "
                "don't want to restore existing resource, please purge it first.",
            )
        if kind == "OpenAI" and not subdomain:
            return _error(400, "BadRequest", "customSubDomainName is required for kind OpenAI.")
        taken = [
            a
            for a in (*api.accounts.values(), *api.deleted.values())
            if a["properties"].get("customSubDomainName", "").lower() == subdomain.lower()
        ]
        if subdomain and taken:
            return _error(
                400,
                "CustomDomainInUse",
                f"Please pick a different name. The subdomain name '{subdomain.lower()}' is not available "
                "as it's already used by a resource.",
            )
        if api.quota_stage(location) in ("account", "account-count"):
            return _error(
                409,
                "QuotaExceeded",
                f"Operation failed because a quota limit was reached: the subscription has no quota for "
                f"more accounts of kind {kind} in {location}.",
            )
        return None

    def get(self, request: Request) -> Response:
        """``GET .../accounts/{name}``."""
        with self.api.lock:
            account = find_account(self.api, request)
            return account_not_found(request) if account is None else json_response(200, public(account))

    def list(self, request: Request) -> Response:
        """``GET /subscriptions/{sub}[/resourceGroups/{rg}]/providers/.../accounts``."""
        sub, rg = request.params["sub"].lower(), request.params.get("rg")
        with self.api.lock:
            value = [
                public(a)
                for key, a in self.api.accounts.items()
                if key[0] == sub and (rg is None or key[1] == rg.lower())
            ]
        return json_response(200, {"value": value})

    def delete(self, request: Request) -> Response:
        """``DELETE .../accounts/{name}``: soft-delete (in the ``account.delete`` style)."""
        api = self.api
        p = request.params
        key = (p["sub"].lower(), p["rg"].lower(), p["account"].lower())
        with api.lock:
            account = api.accounts.get(key)
            if account is None:
                return Response(204, b"", {})
            account["properties"]["provisioningState"] = "Deleting"
            location = account["location"]

        def finish() -> None:
            with api.lock:
                gone = api.accounts.pop(key, None)
                if gone is None:
                    return None
                for deployment in gone["deployments"].values():
                    arm_deployments.unregister(api, deployment["name"])
                deleted = public(gone)
                deleted["id"] = (
                    f"/subscriptions/{p['sub']}/providers/Microsoft.CognitiveServices/locations/"
                    f"{location}/resourceGroups/{p['rg']}/deletedAccounts/{gone['name']}"
                )
                deleted["properties"]["provisioningState"] = "Deleted"
                deleted["properties"]["deletionDate"] = now()
                purge_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
                deleted["properties"]["scheduledPurgeDate"] = purge_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                api.deleted[key] = deleted
                api.events.append(("deleted", "account", gone["name"]))
            return None

        return api.cognitive_operation(request, "account.delete", location, account["id"], finish)

    def list_keys(self, request: Request) -> Response:
        """``POST .../accounts/{name}/listKeys``: key1 is the double's Azure OpenAI key."""
        with self.api.lock:
            account = find_account(self.api, request)
            if account is None:
                return account_not_found(request)
            if account["properties"]["disableLocalAuth"]:
                return _error(400, "BadRequest", "Failed to list key. disableLocalAuth is set to be true")
            return json_response(200, {"key1": self.api.double.openai.api_key, "key2": account["keys"][1]})

    # -- soft-deleted accounts -----------------------------------------------------------------

    def list_deleted(self, request: Request) -> Response:
        """``GET /subscriptions/{sub}/providers/Microsoft.CognitiveServices/deletedAccounts``."""
        sub = request.params["sub"].lower()
        with self.api.lock:
            value = [copy.deepcopy(a) for key, a in self.api.deleted.items() if key[0] == sub]
        return json_response(200, {"value": value})

    def _find_deleted(self, request: Request) -> tuple[tuple[str, str, str], dict[str, Any] | None]:
        p = request.params
        key = (p["sub"].lower(), p["rg"].lower(), p["account"].lower())
        account = self.api.deleted.get(key)
        if account is not None and account["location"] != p["location"].lower():
            account = None
        return key, account

    def get_deleted(self, request: Request) -> Response:
        """``GET .../locations/{location}/resourceGroups/{rg}/deletedAccounts/{name}``."""
        with self.api.lock:
            _, account = self._find_deleted(request)
        if account is None:
            return _error(404, "ResourceNotFound", f"Deleted account {request.params['account']} not found.")
        return json_response(200, copy.deepcopy(account))

    def purge(self, request: Request) -> Response:
        """``DELETE .../deletedAccounts/{name}``: purge (in the ``account.purge`` style)."""
        api = self.api
        with api.lock:
            key, account = self._find_deleted(request)
        if account is None:
            return _error(404, "ResourceNotFound", f"Deleted account {request.params['account']} not found.")

        def finish() -> None:
            with api.lock:
                if api.deleted.pop(key, None) is not None:
                    api.events.append(("purged", "account", account["name"]))
            return None

        p = request.params
        return api.cognitive_operation(request, "account.purge", p["location"], account["id"], finish)


def routes(api: ArmDouble) -> list[tuple[str, str, Callable[[Request], Response]]]:
    """The Cognitive Services routes (accounts here, deployments and quota in ``arm_deployments``)."""
    accounts = Accounts(api)
    return [
        ("GET", SUB + COG + r"/accounts", accounts.list),
        ("GET", RG + COG + r"/accounts", accounts.list),
        ("GET", SUB + COG + r"/deletedAccounts", accounts.list_deleted),
        (
            "GET",
            LOCATION + r"/resourceGroups/(?P<rg>[^/]+)/deletedAccounts/(?P<account>[^/]+)",
            accounts.get_deleted,
        ),
        (
            "DELETE",
            LOCATION + r"/resourceGroups/(?P<rg>[^/]+)/deletedAccounts/(?P<account>[^/]+)",
            accounts.purge,
        ),
        ("PUT", ACCOUNT, accounts.put),
        ("GET", ACCOUNT, accounts.get),
        ("DELETE", ACCOUNT, accounts.delete),
        ("POST", ACCOUNT + r"/listKeys", accounts.list_keys),
        *arm_deployments.routes(api),
    ]
