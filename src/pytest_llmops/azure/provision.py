"""Provisioning the lab's Azure OpenAI resource and its gpt-4o deployment, and removing them.

Steps 1-2 of the lab, as code: an account of kind ``OpenAI`` (SKU S0, custom subdomain,
tagged) in a region picked at random among the lab's four (or ``AZURE_LOCATION`` first);
model availability and quota checked before creating anything; on a quota error, the
account is removed and the next region tried. Then a deployment ``gpt-4o`` (the model's
default version, Standard, 10K tokens per minute, default content filter, dynamic quota
off), its endpoint and key read back, and a first chat completion answered before the
deployment is handed out. Removal deletes the deployment and the account, then purges the
soft-deleted account so that its name and quota are free again.

Everything here takes the management client and a ``say`` callback: the fixtures decide
the mode (a replayed client needs no change here).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_llmops.azure import arm
from pytest_llmops.errors import ProvisioningError
from pytest_llmops.resources import creation_line

LAB_REGIONS = ("eastus2", "northcentralus", "swedencentral", "switzerlandwest")
MODEL = "gpt-4o"
DEPLOYMENT = "gpt-4o"
DEPLOYMENT_SKU = "Standard"
CAPACITY = 10
"""Thousands of tokens per minute (the lab's 10K TPM)."""
CONTENT_FILTER = "Microsoft.DefaultV2"
ACCOUNT_KIND = "OpenAI"
ACCOUNT_SKU = "S0"
READY_TIMEOUT_S = 600.0
"""How long a new deployment may take to answer its first chat completion."""
READY_PROBE: dict[str, Any] = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}

Say = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """Where and under which names to provision; stored in the session cassette so that a
    replay makes the same requests."""

    resource_group: str
    regions: list[str]
    name: str
    """Base name: accounts are ``<name>-<region>`` (also their custom subdomain)."""
    tags: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> Plan:
        return cls(
            resource_group=str(data["resource_group"]),
            regions=[str(r) for r in data["regions"]],
            name=str(data["name"]),
            tags=dict(data.get("tags") or {}),
        )


def region_order(preferred: str | None, rng: random.Random | None = None) -> list[str]:
    """``preferred`` (``AZURE_LOCATION``) first, then the lab's other regions in random
    order: the random pick spreads the load over regional quotas, as the lab asks."""
    others = [r for r in LAB_REGIONS if r != (preferred or "").lower()]
    (rng or random.Random()).shuffle(others)
    return ([preferred.lower()] if preferred else []) + others


def account_name(base: str, region: str) -> str:
    """The account (and custom subdomain) name in ``region``: at most 64 characters."""
    return f"{base}-{region}"[:64].rstrip("-")


@dataclass(frozen=True)
class OpenAIResource:
    """What was provisioned: JSON-able (shared between xdist workers), without the key."""

    resource_group: str
    account: str
    region: str
    endpoint: str
    deployment: str
    model: str
    model_version: str
    local_auth: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OpenAIResource:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def quota_meters(usage_name: str | None, sku: str = DEPLOYMENT_SKU, model: str = MODEL) -> set[str]:
    """The names (lower-cased) the ``usages`` list may give the meter that a deployment of
    ``model`` draws on. Real subscriptions give a SKU the prefix as ``usageName``
    (``OpenAI.Standard``) and name the meter with the model (``OpenAI.Standard.gpt-4o``);
    class-style names (``OpenAI.Provisioned.Class1`` in Azure's examples) are the meter itself."""
    prefix = (usage_name or f"OpenAI.{sku}").lower()
    return {prefix, f"{prefix}.{model.lower()}"}


def is_account_meter(name: str) -> bool:
    """Whether a usages meter counts Cognitive Services accounts: ``AccountCount`` (Azure's
    examples) or ``OpenAI.S0.AccountCount`` (real subscriptions)."""
    lowered = name.lower()
    return lowered == "accountcount" or lowered.endswith(".accountcount")


def check_region(client: Any, region: str) -> tuple[str | None, str]:
    """``(default model version, "")`` when gpt-4o (Standard) is offered in ``region``, the
    quota has room for the deployment and the subscription for another account; else
    ``(None, why not)``. Nothing is created to find out."""
    offered = [
        m.model
        for m in client.models.list(region)
        if m.kind == ACCOUNT_KIND
        and m.model is not None
        and m.model.name == MODEL
        and any(s.name == DEPLOYMENT_SKU for s in (m.model.skus or []))
    ]
    if not offered:
        return None, f"{MODEL} ({DEPLOYMENT_SKU}) is not offered in {region}"
    model = next((m for m in offered if m.is_default_version), offered[0])
    sku = next(s for s in model.skus if s.name == DEPLOYMENT_SKU)
    meters = quota_meters(sku.usage_name)
    for usage in client.usages.list(region):
        name = str(getattr(usage.name, "value", None) or "")
        if not name or usage.limit is None:
            continue
        used = usage.current_value or 0.0
        if name.lower() in meters and usage.limit - used < CAPACITY:
            return None, (
                f"not enough quota for {MODEL} ({DEPLOYMENT_SKU}) in {region}: {used:g} of "
                f"{usage.limit:g}K tokens per minute used ({name}), {CAPACITY}K needed"
            )
        if is_account_meter(name) and used >= usage.limit:
            return None, (
                f"no room for another Cognitive Services account in {region}: {used:g} of "
                f"{usage.limit:g} accounts ({name})"
            )
    return str(model.version), ""


def deployment_body(version: str) -> dict[str, Any]:
    """The lab's deployment as ARM JSON. Sent as JSON rather than as the SDK's model: the
    model treats ``dynamicThrottlingEnabled`` (dynamic quota) as read-only and drops it,
    and the lab wants it stated as off."""
    return {
        "sku": {"name": DEPLOYMENT_SKU, "capacity": CAPACITY},
        "properties": {
            "model": {"format": "OpenAI", "name": MODEL, "version": version},
            "raiPolicyName": CONTENT_FILTER,
            "dynamicThrottlingEnabled": False,
        },
    }


class OpenAIProvisioner:
    """Creates and removes the lab's Azure OpenAI account and deployment with one client."""

    def __init__(self, client: Any, plan: Plan, say: Say, *, replaying: bool = False) -> None:
        self.client = client
        self.plan = plan
        self.say = say
        self.replaying = replaying
        """Whether the client answers from a recording (progress lines say so)."""

    # -- create ----------------------------------------------------------------------------

    def create(self) -> OpenAIResource:
        """Provision in the first region of the plan that has the model and the quota.
        Whatever was created is removed again if this fails or is interrupted."""
        from azure.core.exceptions import HttpResponseError

        attempted: list[tuple[str, str]] = []
        reasons: list[str] = []
        regions = self.plan.regions
        try:
            for number, region in enumerate(regions):
                following = regions[number + 1] if number + 1 < len(regions) else None
                version, why = check_region(self.client, region)
                if version is None:
                    reasons.append(why)
                    self._moving_on(why, following)
                    continue
                name = account_name(self.plan.name, region)
                attempted.append((name, region))
                try:
                    self._create_account(name, region)
                    self._create_deployment(name, version)
                except (HttpResponseError, arm.FailedOperation) as error:
                    if not arm.is_quota_error(error):
                        raise _refused(name, region, error) from error
                    why = f"quota error in {region} ({arm.error_code(error)}: {arm.error_message(error)})"
                    reasons.append(why)
                    self._remove_account(name, region)
                    attempted.pop()
                    self._moving_on(why, following)
                    continue
                return self._read_back(name, region, version)
        except BaseException:
            for name, region in attempted:
                with _reporting(self.say, f"cleaning up {name}"):
                    self.remove(
                        OpenAIResource(
                            self.plan.resource_group, name, region, "", DEPLOYMENT, MODEL, "", True
                        )
                    )
            raise
        raise ProvisioningError(
            f"Could not provision {MODEL} in any of {', '.join(regions)}: " + "; ".join(reasons) + ". "
            "Free quota (delete unused deployments, or purge soft-deleted accounts: `pytest-llmops sweep`), "
            "request more in the Azure portal (Azure OpenAI > Quotas), or set AZURE_LOCATION to a region "
            "with room."
        )

    def _moving_on(self, why: str, following: str | None) -> None:
        self.say(f"{why}; trying {following}" if following else why)

    def _create_account(self, name: str, region: str) -> None:
        from azure.mgmt.cognitiveservices.models import Account, AccountProperties, Sku

        self.say(
            creation_line(
                f"Azure OpenAI account {name} in {region}",
                replaying=self.replaying,
                detail=f"kind {ACCOUNT_KIND}, SKU {ACCOUNT_SKU}",
            )
        )
        account = Account(
            location=region,
            kind=ACCOUNT_KIND,
            sku=Sku(name=ACCOUNT_SKU),
            tags=self.plan.tags,
            properties=AccountProperties(custom_sub_domain_name=name, public_network_access="Enabled"),
        )
        arm.wait(self.client.accounts.begin_create(self.plan.resource_group, name, account))

    def _create_deployment(self, account: str, version: str) -> None:
        self.say(
            creation_line(
                f"deployment {DEPLOYMENT} of {MODEL} {version}",
                replaying=self.replaying,
                detail=f"{DEPLOYMENT_SKU}, {CAPACITY}K tokens per minute",
            )
        )
        body = deployment_body(version)
        arm.wait(
            self.client.deployments.begin_create_or_update(
                self.plan.resource_group, account, DEPLOYMENT, json.dumps(body).encode()
            )
        )

    def _read_back(self, name: str, region: str, version: str) -> OpenAIResource:
        account = self.client.accounts.get(self.plan.resource_group, name)
        properties = account.properties
        endpoint = str(properties.endpoint or f"https://{name}.openai.azure.com/")
        return OpenAIResource(
            resource_group=self.plan.resource_group,
            account=name,
            region=region,
            endpoint=endpoint,
            deployment=DEPLOYMENT,
            model=MODEL,
            model_version=version,
            local_auth=not bool(properties.disable_local_auth),
        )

    def api_key(self, resource: OpenAIResource) -> str | None:
        """The account's key1, or None when local (key) auth is disabled: use Entra ID then."""
        if not resource.local_auth:
            return None
        return str(self.client.accounts.list_keys(resource.resource_group, resource.account).key1)

    # -- remove ----------------------------------------------------------------------------

    def remove(self, resource: OpenAIResource) -> None:
        """Delete the deployment and the account, then purge the soft-deleted account. Every
        step is tried; what could not be removed is reported with how to remove it."""
        group, name = resource.resource_group, resource.account
        steps: list[tuple[str, Callable[[], Any]]] = [
            (
                f"deployment {name}/{resource.deployment}",
                lambda: arm.wait(self.client.deployments.begin_delete(group, name, resource.deployment)),
            ),
            (f"account {name}", lambda: arm.wait(self.client.accounts.begin_delete(group, name))),
            (
                f"soft-deleted account {name}",
                lambda: arm.wait(self.client.deleted_accounts.begin_purge(resource.region, group, name)),
            ),
        ]
        failed: list[str] = []
        for what, step in steps:
            try:
                arm.ignoring_not_found(step)
            except Exception as error:
                failed.append(f"{what}: {_first_line(error)}")
        if failed:
            raise ProvisioningError(
                "Could not remove "
                + "; ".join(failed)
                + ". Remove them with `pytest-llmops sweep` once their "
                f"RemoveAfter tag passed, or now: `az cognitiveservices account delete -g {group} -n {name}` "
                f"then `az cognitiveservices account purge -g {group} -n {name} -l {resource.region}`."
            )

    def _remove_account(self, name: str, region: str) -> None:
        self.remove(OpenAIResource(self.plan.resource_group, name, region, "", DEPLOYMENT, MODEL, "", True))


def wait_until_answering(
    endpoint: str,
    deployment: str,
    api_version: str,
    headers: dict[str, str],
    timeout: float = READY_TIMEOUT_S,
    say: Say | None = None,
    *,
    replaying: bool = False,
) -> None:
    """Send a one-token chat completion until the new deployment answers it (a new
    deployment, or the DNS name of a new account, can take a while to come up)."""
    import requests

    url = f"{endpoint.rstrip('/')}/openai/deployments/{deployment}/chat/completions?api-version={api_version}"
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        retry_after = 5.0
        try:
            response = requests.post(url, json=READY_PROBE, headers=headers, timeout=60)
        except requests.ConnectionError as error:
            last = f"connection failed ({_first_line(error)})"
        else:
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:120]}"
            if response.status_code not in (401, 403, 404, 408, 429, 500, 502, 503, 504):
                raise ProvisioningError(
                    f"The new deployment {deployment} at {endpoint} refused a chat completion: {last}"
                )
            retry_after = _retry_after(response.headers.get("retry-after"), retry_after)
        if time.monotonic() + retry_after > deadline:
            raise ProvisioningError(
                f"The new deployment {deployment} at {endpoint} did not answer in {timeout:.0f} s ({last})."
            )
        if say is not None and not announced:
            waiting = f"for deployment {deployment} to answer ({last})"
            say(f"replaying the recorded wait {waiting}" if replaying else f"waiting {waiting}")
            announced = True
        arm.sleep(retry_after)


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, min(float(value), 60.0)) if value else default
    except ValueError:
        return default


def _refused(name: str, region: str, error: BaseException) -> ProvisioningError:
    code, message = arm.arm_error(error)
    return ProvisioningError(
        f"Azure refused to create Azure OpenAI account {name} or its deployment in {region}: "
        f"{code + ': ' if code else ''}{message}\nWhat was created was removed. Fix what Azure names "
        "(permissions on the resource group, a policy, the model's availability), or set AZURE_LOCATION "
        "to another region, then rerun."
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def _reporting(say: Say, what: str) -> Iterator[None]:
    """Run a cleanup step; report (not raise) its failure, so the original error surfaces."""
    try:
        yield
    except Exception as error:
        say(f"{what} failed: {_first_line(error)}")
