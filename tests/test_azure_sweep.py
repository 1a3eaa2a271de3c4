"""The Azure finder of ``pytest-llmops sweep``: this plugin's expired resources
(``CreatedBy`` and a past ``RemoveAfter``) are deleted and purged; nothing else is touched."""

from __future__ import annotations

import datetime as dt
import io
import os
import time

import pytest
from azure.core.credentials import AccessToken

from pytest_llmops.azure import arm
from pytest_llmops.azure.sweep import find_resources
from pytest_llmops.errors import SweepUnavailable
from pytest_llmops.sweep import sweep
from tests import test_azure_support as support
from tests.double.arm_api import DEFAULT_ARM_TOKEN
from tests.test_azure_support import (
    CHAT,
    CONFTEST,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    account_puts,
    verbs,
)

arm_double = support.arm_double
azure_env = support.azure_env
FINDER = "tests.test_azure_sweep:double_finder"

NOW = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
OURS_EXPIRED = {"CreatedBy": "pytest-llmops", "RemoveAfter": "2030010110", "LLMOpsSession": "0123456789ab"}
OURS_FRESH = {"CreatedBy": "pytest-llmops", "RemoveAfter": "2030010114", "LLMOpsSession": "0123456789ab"}
FOREIGN = {"CreatedBy": "someone-else", "RemoveAfter": "2020010100"}


class Token:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(DEFAULT_ARM_TOKEN, int(time.time()) + 3600)


def double_finder():
    """The Azure finder with a token the double accepts (azure-identity refuses its http)."""
    return find_resources(Token(), endpoint=os.environ["AZURE_RESOURCE_MANAGER_ENDPOINT"])


def run_sweep(now: dt.datetime, dry_run: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    code = sweep([FINDER], now=now, dry_run=dry_run, out=out)
    return code, out.getvalue()


def seed(double, name: str, tags: dict[str, str], group: str = RESOURCE_GROUP) -> None:
    double.arm.seed_account(
        name, subscription=SUBSCRIPTION, resource_group=group, location="eastus2", tags=tags
    )


def test_without_a_subscription_the_azure_sweeper_says_what_to_set(monkeypatch):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    with pytest.raises(SweepUnavailable, match="AZURE_SUBSCRIPTION_ID"):
        list(find_resources())


def test_sweep_deletes_and_purges_only_expired_resources_of_ours(arm_double, monkeypatch):
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("AZURE_RESOURCE_MANAGER_ENDPOINT", arm_double.url)
    seed(arm_double, "old-account", OURS_EXPIRED)
    seed(arm_double, "fresh-account", OURS_FRESH)
    seed(arm_double, "their-account", FOREIGN)
    seed(arm_double, "half-removed", OURS_EXPIRED)  # deleted, never purged (an interrupted teardown)
    client = arm.cognitive_client(Token(), SUBSCRIPTION, arm_double.url)
    arm.wait(client.accounts.begin_delete(RESOURCE_GROUP, "half-removed"))
    for name, tags in (("old-ws", OURS_EXPIRED), ("their-ws", FOREIGN)):
        arm_double.arm.seed_workspace(
            name, subscription=SUBSCRIPTION, resource_group=RESOURCE_GROUP, location="eastus2", tags=tags
        )

    code, said = run_sweep(NOW, dry_run=True)
    assert code == 0 and "would delete 3, kept 1 not due" in said
    assert len(arm_double.arm.leaks()) == 6  # the dry run removed nothing

    code, said = run_sweep(NOW)
    assert code == 0, said
    assert "deleted Azure OpenAI account /subscriptions/" in said and "RemoveAfter 2030010110" in said
    assert (
        "deleted Azure OpenAI account (soft-deleted)" in said and "deleted Azure Databricks workspace" in said
    )
    assert verbs(arm_double, "old-account") == ["deleted", "purged"]
    assert verbs(arm_double, "old-account/gpt-4o") == ["deleted"]
    assert verbs(arm_double, "half-removed") == ["deleted", "purged"]
    assert sorted(arm_double.arm.leaks()) == [
        "account fresh-account",
        "account their-account",
        "workspace their-ws",
    ]


def test_sweep_can_be_limited_to_one_resource_group(arm_double, monkeypatch):
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("AZURE_RESOURCE_MANAGER_ENDPOINT", arm_double.url)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-other")
    seed(arm_double, "mine", OURS_EXPIRED)
    seed(arm_double, "other", OURS_EXPIRED, group="rg-other")
    assert run_sweep(NOW)[0] == 0
    assert arm_double.arm.leaks() == ["account mine"]


def test_sweep_finds_what_a_run_kept(pytester: pytest.Pytester, arm_double, azure_env):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=CHAT)
    pytester.runpytest("--llmops-live", "--llmops-provision", "--llmops-keep-resources").assert_outcomes(
        passed=1
    )
    [name] = account_puts(arm_double)
    assert arm_double.arm.leaks() == [f"account {name}"]

    code, said = run_sweep(dt.datetime.now(dt.UTC))
    assert code == 0 and "kept 1 not due" in said  # its RemoveAfter is two hours ahead
    code, said = run_sweep(dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))
    assert code == 0 and f"({name})" in said
    assert verbs(arm_double, name) == ["created", "deleted", "purged"]
    assert arm_double.arm.leaks() == []
