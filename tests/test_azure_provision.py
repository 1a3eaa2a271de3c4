"""``azure_openai_deployment --llmops-provision`` against the lab double: the lab's steps
1-2 done by a fixture, cleaned up after passing, failing and unlucky runs."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from pytest_llmops.secrets.scan import scan_paths
from tests import test_azure_support as support
from tests.conftest import SECRET_API_KEY, all_bytes
from tests.test_azure_support import (
    CHAT,
    CLIENT_SECRET,
    CONFTEST,
    LAB_REGIONS,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    TENANT,
    account_puts,
    unset,
    verbs,
)

arm_double = support.arm_double
azure_env = support.azure_env


def provision(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--llmops-live", "--llmops-provision", *args)


def test_provisions_the_lab_deployment_and_removes_it(pytester: pytest.Pytester, arm_double, azure_env):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=CHAT)
    result = pytester.runpytest("--llmops-record", "--llmops-provision")
    result.assert_outcomes(passed=1)

    [name] = account_puts(arm_double)
    assert verbs(arm_double, name) == ["created", "deleted", "purged"]
    assert verbs(arm_double, f"{name}/gpt-4o") == ["created", "deleted"]
    assert arm_double.arm.leaks() == []

    account = arm_double.requests_to(r"/accounts/[^/]+$", "PUT")[0].json()
    assert account["kind"] == "OpenAI" and account["sku"] == {"name": "S0"}
    assert account["location"] in LAB_REGIONS
    assert account["properties"]["customSubDomainName"] == name
    tags = account["tags"]
    assert tags["CreatedBy"] == "pytest-llmops" and len(tags["LLMOpsSession"]) == 12
    remove_after = dt.datetime.strptime(tags["RemoveAfter"], "%Y%m%d%H").replace(tzinfo=dt.UTC)
    assert remove_after > dt.datetime.now(dt.UTC)

    deployment = arm_double.requests_to(r"/deployments/gpt-4o$", "PUT")[0].json()
    assert deployment["sku"] == {"name": "Standard", "capacity": 10}
    assert deployment["properties"] == {
        "model": {"format": "OpenAI", "name": "gpt-4o", "version": "2024-11-20"},  # the default version
        "raiPolicyName": "Microsoft.DefaultV2",
        "dynamicThrottlingEnabled": False,
    }

    # Availability and quota are checked before anything is created; the deployment
    # answered a chat completion before the test got it.
    paths = [r.path.split("?")[0] for r in arm_double.requests]
    first_put = next(i for i, r in enumerate(arm_double.requests) if r.method == "PUT")
    assert any(p.endswith(f"/locations/{account['location']}/models") for p in paths[:first_put])
    assert any(p.endswith(f"/locations/{account['location']}/usages") for p in paths[:first_put])
    chats = arm_double.requests_to(r"/chat/completions$")
    assert chats[0].json()["max_tokens"] == 1 and len(chats) == 2
    result.stdout.fnmatch_lines(
        ["*creating Azure OpenAI account llmops-*", "*removing Azure OpenAI account*"]
    )

    # Token answers, keys, the subscription, the double's port: nothing of it on disk.
    cassettes = pytester.path / "cassettes"
    session = (cassettes / "_session" / "azure_openai_deployment.yaml").read_text()
    metadata = yaml.safe_load(session)["metadata"]  # what a replay does again
    assert metadata["provisioned"] is True and metadata["region"] == account["location"]
    assert metadata["plan"]["resource_group"] == RESOURCE_GROUP
    assert sorted(metadata["plan"]["regions"]) == sorted(LAB_REGIONS)
    assert metadata["endpoint"] == "https://resource.openai.azure.com/" and "api_key" not in metadata
    assert "Azure-AsyncOperation" in session and "Retry-After" in session
    assert "/listKeys" in session and '"key1":"<redacted>"' in session
    assert scan_paths([cassettes]) == []
    written = all_bytes(cassettes)
    issued = arm_double.arm.accepted_tokens - {"double-arm-token"}
    assert issued
    for secret in [
        SECRET_API_KEY,
        CLIENT_SECRET,
        SUBSCRIPTION,
        TENANT,
        f":{arm_double.port}",
        "127.0.0.1",
        *issued,
    ]:
        assert secret.encode() not in written, secret


@pytest.mark.parametrize("stage", ["usage", "account", "deployment"])
def test_quota_error_moves_to_another_region(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch, stage
):
    monkeypatch.setenv("AZURE_LOCATION", "eastus2")
    arm_double.arm.fail_quota("eastus2", at=stage)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_lab=CHAT + "\n\ndef test_region(azure_openai_deployment):\n"
        "    assert azure_openai_deployment.region != 'eastus2'\n"
    )
    result = provision(pytester)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*quota*eastus2*; trying *"])
    names = account_puts(arm_double)
    assert (
        names[0].endswith("-eastus2") if stage != "usage" else not any(n.endswith("-eastus2") for n in names)
    )
    if stage == "deployment":
        assert verbs(arm_double, names[0]) == ["created", "deleted", "purged"]
    assert arm_double.arm.leaks() == []


def test_no_region_with_quota_fails_clearly_and_leaves_nothing(
    pytester: pytest.Pytester, arm_double, azure_env
):
    for number, region in enumerate(LAB_REGIONS):
        arm_double.arm.fail_quota(region, at="usage" if number % 2 else "deployment")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=CHAT)
    result = provision(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ProvisioningError: Could not provision gpt-4o in any of*Quotas*"])
    assert len(account_puts(arm_double)) == 2
    assert arm_double.arm.leaks() == []


def test_a_failing_test_still_removes_everything(pytester: pytest.Pytester, arm_double, azure_env):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab="def test_fails(azure_openai_deployment):\n    assert False, 'boom'\n")
    provision(pytester).assert_outcomes(failed=1)
    [name] = account_puts(arm_double)
    assert verbs(arm_double, name) == ["created", "deleted", "purged"]
    assert arm_double.arm.leaks() == []


def test_failure_after_creating_cleans_up(pytester: pytest.Pytester, arm_double, azure_env):
    arm_double.openai.fail_next("content_filter")  # the readiness check gets a 400
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=CHAT)
    result = provision(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ProvisioningError: The new deployment gpt-4o*refused a chat completion*"])
    [name] = account_puts(arm_double)
    assert verbs(arm_double, name)[-2:] == ["deleted", "purged"]
    assert arm_double.arm.leaks() == []


def test_keep_resources_keeps_them(pytester: pytest.Pytester, arm_double, azure_env, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=CHAT)
    result = pytester.runpytest("--llmops-record", "--llmops-provision", "--llmops-keep-resources")
    result.assert_outcomes(passed=1)
    [name] = account_puts(arm_double)
    assert arm_double.arm.leaks() == [f"account {name}"]
    result.stdout.fnmatch_lines([f"*kept azure-openai (Azure OpenAI account {name}*pytest-llmops sweep*"])

    arm_double.stop()  # a replay of that recording does not try to remove what it kept
    unset(monkeypatch, azure_env)
    replayed = pytester.runpytest()
    replayed.assert_outcomes(passed=1)
    assert "removing" not in replayed.stdout.str()


def test_entra_id_when_local_auth_is_disabled(pytester: pytest.Pytester, arm_double, azure_env):
    arm_double.arm.disable_local_auth = True
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_lab=CHAT + "\n\ndef test_no_key(azure_openai_deployment):\n"
        "    assert azure_openai_deployment.api_key is None\n"
    )
    provision(pytester).assert_outcomes(passed=2)
    chats = arm_double.requests_to(r"/chat/completions$")
    assert chats and all(
        "api-key" not in r.headers and r.headers["authorization"].startswith("Bearer ") for r in chats
    )
    assert not arm_double.requests_to(r"/listKeys$")[1:]  # asked once, refused, then Entra ID
    assert arm_double.arm.leaks() == []


def test_attach_stays_the_default(pytester: pytest.Pytester, arm_double, azure_env, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", arm_double.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET_API_KEY)
    with arm_double.lock:
        arm_double.openai.deployments.add("gpt-4o")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_lab=CHAT.replace(
            "assert azure_openai_deployment.provisioned", "assert not azure_openai_deployment.provisioned"
        )
    )
    pytester.runpytest("--llmops-live").assert_outcomes(passed=1)
    assert not arm_double.requests_to(r"^/subscriptions/")


def test_provision_without_a_target_skips_naming_the_variables(
    pytester: pytest.Pytester, arm_double, monkeypatch
):
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    pytester.makepyfile(test_lab=CHAT)
    result = provision(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*AZURE_RESOURCE_GROUP not set*--llmops-provision*"])
