"""The quota pre-check on real Azure's naming, and the region ``AZURE_LOCATION`` picks.

Real subscriptions name a model SKU's ``usageName`` by its prefix (``OpenAI.Standard``) and
the usages meter with the model (``OpenAI.Standard.gpt-4o``); the account meter is
``OpenAI.S0.AccountCount``. Azure's official examples show class-style names
(``OpenAI.Provisioned.Class1``, the meter's own name) and ``AccountCount``. A region that
is full in either naming is skipped before anything is created in it.
"""

from __future__ import annotations

import pytest

from pytest_llmops.azure import arm
from pytest_llmops.azure.provision import check_region
from tests import test_azure_support as support
from tests.test_azure_double import Token, example, keys_of
from tests.test_azure_support import CHAT, CONFTEST, LAB_REGIONS, SUBSCRIPTION, account_puts

arm_double = support.arm_double
azure_env = support.azure_env

REGION_TEST = """
def test_region(azure_openai_deployment):
    assert azure_openai_deployment.region != "eastus2"
"""


def models_and_usages(double, region: str) -> tuple[dict, dict]:
    import requests

    from tests.double.arm_api import DEFAULT_ARM_TOKEN

    base = (
        f"{double.url}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.CognitiveServices/locations/{region}"
    )
    headers = {"Authorization": f"Bearer {DEFAULT_ARM_TOKEN}"}
    models = requests.get(f"{base}/models?api-version=2024-10-01", headers=headers, timeout=10).json()
    usages = requests.get(f"{base}/usages?api-version=2024-10-01", headers=headers, timeout=10).json()
    return models, usages


def test_the_double_names_quota_meters_as_real_subscriptions_do(arm_double):
    models, usages = models_and_usages(arm_double, "eastus2")
    skus = {s["name"]: s["usageName"] for s in models["value"][0]["model"]["skus"]}
    assert skus == {"Standard": "OpenAI.Standard", "GlobalStandard": "OpenAI.GlobalStandard"}
    meters = {u["name"]["value"] for u in usages["value"]}
    assert meters == {"OpenAI.Standard.gpt-4o", "OpenAI.GlobalStandard.gpt-4o", "OpenAI.S0.AccountCount"}

    arm_double.arm.usage_naming = "class"  # as the official examples name them
    models, usages = models_and_usages(arm_double, "eastus2")
    assert models["value"][0]["model"]["skus"][0]["usageName"] == "OpenAI.Standard.Class1"
    assert {u["name"]["value"] for u in usages["value"]} == {
        "OpenAI.Standard.Class1",
        "OpenAI.GlobalStandard.Class1",
        "AccountCount",
    }


def test_models_and_usages_have_the_official_examples_shape(arm_double, shared_dir):
    models, usages = models_and_usages(arm_double, "eastus2")
    official_model = example(shared_dir, "ListLocationModels")["responses"]["200"]["body"]["value"][0]
    # Fine-tuning fields belong to the example's model (ada), not to gpt-4o.
    official_keys = {k for k in keys_of(official_model) if "inetune" not in k.lower() and "FineTune" not in k}
    official_keys -= {k for k in official_keys if k.startswith("model.capabilities.")}
    official_keys -= {"model.deprecation.fineTune"}
    assert official_keys <= keys_of(models["value"][0])
    official_usage = example(shared_dir, "ListUsages")["responses"]["200"]["body"]["value"][0]
    assert all(keys_of(official_usage) <= keys_of(usage) for usage in usages["value"])


@pytest.mark.parametrize(
    ("usage_name", "meter", "matches"),
    [
        ("OpenAI.Standard", "OpenAI.Standard.gpt-4o", True),  # real subscriptions
        ("OpenAI.Standard", "openai.standard.GPT-4O", True),
        ("OpenAI.Provisioned.Class1", "OpenAI.Provisioned.Class1", True),  # the official examples
        ("OpenAI.Standard", "OpenAI.Standard.gpt-4o-mini", False),
        ("OpenAI.Standard", "OpenAI.GlobalStandard.gpt-4o", False),
        (None, "OpenAI.Standard.gpt-4o", True),
    ],
)
def test_a_skus_usage_name_finds_its_meter_in_either_naming(usage_name, meter, matches):
    from pytest_llmops.azure.provision import quota_meters

    assert (meter.lower() in quota_meters(usage_name)) is matches


@pytest.mark.parametrize(
    ("meter", "counts_accounts"),
    [("OpenAI.S0.AccountCount", True), ("AccountCount", True), ("OpenAI.Standard.gpt-4o", False)],
)
def test_the_account_meter_in_either_naming(meter, counts_accounts):
    from pytest_llmops.azure.provision import is_account_meter

    assert is_account_meter(meter) is counts_accounts


@pytest.mark.parametrize("naming", ["model", "class"])
@pytest.mark.parametrize(
    ("stage", "why"),
    [
        ("usage", "not enough quota for gpt-4o (Standard) in eastus2: 450 of 450K tokens per minute used"),
        ("account-count", "no room for another Cognitive Services account in eastus2: 200 of 200 accounts"),
    ],
)
def test_the_pre_check_sees_a_full_region_in_either_naming(arm_double, naming, stage, why):
    arm_double.arm.usage_naming = naming
    client = arm.cognitive_client(Token(), SUBSCRIPTION, arm_double.url)
    assert check_region(client, "eastus2") == ("2024-11-20", "")
    arm_double.arm.fail_quota("eastus2", at=stage)
    version, said = check_region(client, "eastus2")
    assert version is None and said.startswith(why)


@pytest.mark.parametrize("naming", ["model", "class"])
@pytest.mark.parametrize("stage", ["usage", "account-count"])
def test_a_full_region_is_skipped_without_creating_anything(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch, naming, stage
):
    monkeypatch.setenv("AZURE_LOCATION", "eastus2")
    arm_double.arm.usage_naming = naming
    arm_double.arm.fail_quota("eastus2", at=stage)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=CHAT + REGION_TEST)
    result = pytester.runpytest("--llmops-live", "--llmops-provision")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*in eastus2: * of *(*)*; trying *"])
    # The double's audit: asked about eastus2, created nothing there, then the next region.
    asked = [r.path.split("?")[0] for r in arm_double.requests_to(r"/locations/eastus2/(models|usages)$")]
    assert len(asked) == 2
    names = account_puts(arm_double)
    assert names and not any(name.endswith("-eastus2") for name in names)
    assert not [e for e in arm_double.arm.audit()["events"] if e[2].endswith("-eastus2")]
    assert arm_double.arm.leaks() == []


WHERE = """
import json
import pathlib

def test_where(azure_openai_deployment, azure_databricks_workspace):
    pathlib.Path("where.json").write_text(json.dumps(
        [azure_openai_deployment.region, azure_databricks_workspace.region]))
"""


@pytest.mark.parametrize("location", ["SwitzerlandWest", "westeurope"])
def test_azure_location_chooses_the_region(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch, location
):
    """Issue 19: ``AZURE_LOCATION`` is tried first (one of the lab's four, or any other),
    for the Azure OpenAI account and the Databricks workspace beside it."""
    import json

    monkeypatch.setenv("AZURE_LOCATION", location)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=WHERE)
    pytester.runpytest("--llmops-live", "--llmops-provision").assert_outcomes(passed=1)
    region = location.lower()
    assert json.loads((pytester.path / "where.json").read_text()) == [region, region]
    first_check = arm_double.requests_to(r"/locations/[^/]+/models$")[0].path
    assert f"/locations/{region}/models" in first_check
    [account] = arm_double.requests_to(r"/accounts/[^/]+$", "PUT")
    [workspace] = arm_double.requests_to(r"/workspaces/[^/]+$", "PUT")
    assert account.json()["location"] == workspace.json()["location"] == region
    assert region in LAB_REGIONS or region == "westeurope"
    assert arm_double.arm.leaks() == []
