"""The provisioning fixtures' lifecycle, per mode: create once (under xdist too), hand
out, remove after the last worker, and make the session cassette replay all of it.

- live/record: the real ARM endpoint (``AZURE_RESOURCE_MANAGER_ENDPOINT``) with the
  ``azure_credential`` fixture; names, regions and tags are decided here and stored in the
  session cassette's metadata (record).
- replay: the same calls, answered by the session cassette (zero-GUID subscription, the
  recorded names and region order, a placeholder credential), so that a replay does what
  the recording did, with no flag, variable or credential, and without waiting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import extras, resources, session
from pytest_llmops import settings as settings_mod
from pytest_llmops.azure import arm
from pytest_llmops.azure.openai import (
    COGNITIVE_SCOPE,
    DEFAULT_API_VERSION,
    REPLAY_API_KEY,
    AzureOpenAIDeployment,
    missing,
)
from pytest_llmops.azure.workspace import AzureDatabricksWorkspace, from_resource
from pytest_llmops.cassettes.sanitize import ZERO_GUID
from pytest_llmops.extras import ARM_MODULES

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette, Recorder
    from pytest_llmops.settings import Settings

OPENAI_RESOURCE = "azure-openai"
WORKSPACE_RESOURCE = "azure-databricks-workspace"


def provision_target(settings: Settings, fixture: str) -> tuple[str, str] | None:
    """``(subscription id, resource group)`` when this live/record session provisions
    (``--llmops-provision`` and both variables set), else None (attach). A workspace named
    by ``DATABRICKS_HOST`` or ``DATABRICKS_CONFIG_PROFILE`` is always attached (the lab
    reuses an existing workspace; creating one takes minutes).

    With ``--llmops-provision`` but a variable missing and nothing to attach to, the test
    is skipped naming what is missing.
    """
    if not settings.provision or settings.is_replay:
        return None
    if fixture == "azure_databricks_workspace" and any(
        os.environ.get(name, "").strip() for name in ("DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE")
    ):
        return None
    subscription = os.environ.get("AZURE_SUBSCRIPTION_ID", "").strip()
    group = os.environ.get("AZURE_RESOURCE_GROUP", "").strip()
    if subscription and group:
        return subscription, group
    attach_variable = "AZURE_OPENAI_ENDPOINT" if fixture == "azure_openai_deployment" else "DATABRICKS_HOST"
    if not os.environ.get(attach_variable, "").strip():
        absent = [
            n for n, v in (("AZURE_SUBSCRIPTION_ID", subscription), ("AZURE_RESOURCE_GROUP", group)) if not v
        ]
        missing(absent, settings, f"{fixture} (--llmops-provision)")
    return None


class _Session:
    """What both provisioning fixtures need: mode, ARM client inputs, progress, cassette."""

    def __init__(self, request: pytest.FixtureRequest, cassette: Cassette, fixture: str) -> None:
        self.config = request.config
        self.settings = settings_mod.get(self.config)
        self.cassette = cassette
        self.recorder: Recorder = request.getfixturevalue("llmops_recorder")
        self.replay = cassette.replaying  # replay mode, or a recorded creation kept by missing/new
        if self.replay:
            self.subscription, self.group = ZERO_GUID, str(cassette.metadata["plan"]["resource_group"])
            self.credential: Any = arm.ReplayCredential()
            self.endpoint = arm.DEFAULT_ARM_ENDPOINT
        else:
            target = provision_target(self.settings, fixture)
            if target is None:
                raise RuntimeError(f"{fixture}: provisioning without --llmops-provision and a target")
            self.subscription, self.group = target
            self.credential = request.getfixturevalue("azure_credential")
            self.endpoint = arm.arm_endpoint()

    def say(self, message: str) -> None:
        resources.progress(self.config, message)

    @property
    def base_name(self) -> str:
        return f"llmops-{session.session_id(self.config)}"

    @property
    def kept(self) -> bool:
        """In replay: whether the recording kept its resources (then there is no removal to replay)."""
        return bool(self.cassette.metadata.get("kept"))

    def finish(self, shared: resources.Shared) -> None:
        """Write the session cassette (record mode, the creating process only)."""
        if shared.created and not self.replay:
            if self.settings.keep_resources:
                self.cassette.metadata["kept"] = True
            self.cassette.save()


# -- Azure OpenAI -------------------------------------------------------------------------


def deployment(request: pytest.FixtureRequest) -> Iterator[AzureOpenAIDeployment]:
    """The ``azure_openai_deployment`` fixture: replayed as recorded (attached, or its
    provisioning replayed), provisioned, or attached from the environment."""
    from pytest_llmops.azure.openai import attach, replayed

    yield from _session_resource(
        request, "azure_openai_deployment", provisioned_deployment, replayed, attach
    )


def _session_resource(
    request: pytest.FixtureRequest,
    fixture: str,
    provisioned: Callable[[pytest.FixtureRequest, Cassette], Iterator[Any]],
    recorded: Callable[[dict[str, Any]], Any],
    attach: Callable[[Settings], Any],
) -> Iterator[Any]:
    """A provisioning fixture's resource, per its session cassette: what the recording did
    (``recorded`` from its metadata when it attached), ``provisioned`` when provisioning (or
    replaying a provisioning), else ``attach``-ed, its metadata recorded for replay."""
    from pytest_llmops.cassettes.lifecycle import open_session_cassette

    cassette = open_session_cassette(request, fixture)
    settings = settings_mod.get(request.config)
    if cassette.replaying and not cassette.metadata.get("provisioned"):
        yield recorded(cassette.metadata)
    elif cassette.replaying or provision_target(settings, fixture) is not None:
        yield from provisioned(request, cassette)
    else:
        attached = attach(settings)
        cassette.metadata.update(attached.metadata())
        yield attached
        cassette.save()


def provisioned_deployment(
    request: pytest.FixtureRequest, cassette: Cassette
) -> Iterator[AzureOpenAIDeployment]:
    """The ``azure_openai_deployment`` fixture when provisioning (or replaying one)."""
    extras.require("--llmops-provision of azure_openai_deployment", *ARM_MODULES)
    from pytest_llmops.azure.provision import (
        CAPACITY,
        DEPLOYMENT_SKU,
        OpenAIProvisioner,
        OpenAIResource,
        Plan,
        region_order,
        wait_until_answering,
    )

    ctx = _Session(request, cassette, "azure_openai_deployment")
    metadata = cassette.metadata
    api_version = (
        str(metadata.get("api_version") or DEFAULT_API_VERSION)
        if ctx.replay
        else os.environ.get("AZURE_OPENAI_API_VERSION", "").strip() or DEFAULT_API_VERSION
    )
    # Built before any cassette is active: the SDK is imported, so replay patches its sleeps.
    client = arm.cognitive_client(ctx.credential, ctx.subscription, ctx.endpoint)
    if ctx.replay:
        plan = Plan.from_metadata(metadata["plan"])
    else:
        plan = Plan(
            resource_group=ctx.group,
            regions=region_order(os.environ.get("AZURE_LOCATION", "").strip() or None),
            name=ctx.base_name,
            tags=resources.tags(ctx.config),
        )
    provisioner = OpenAIProvisioner(client, plan, ctx.say, replaying=ctx.replay)
    keys: dict[str, str | None] = {}

    def create() -> dict[str, Any]:
        if not ctx.replay:
            metadata["plan"] = plan.metadata()
        with cassette.activate():
            resource = provisioner.create()
            try:
                keys["key"] = key = provisioner.api_key(resource)
                if not ctx.replay:  # scrubbed from every cassette of the session
                    ctx.recorder.add_secret(key, "AZURE_OPENAI_API_KEY")
                    ctx.recorder.add_endpoint(resource.endpoint, "openai")
                if key:
                    headers = {"api-key": key}
                else:
                    headers = {"Authorization": f"Bearer {ctx.credential.get_token(COGNITIVE_SCOPE).token}"}
                wait_until_answering(
                    resource.endpoint,
                    resource.deployment,
                    api_version,
                    headers,
                    say=ctx.say,
                    replaying=ctx.replay,
                )
            except BaseException:
                try:
                    provisioner.remove(resource)
                except Exception as error:
                    ctx.say(f"cleaning up {resource.account} failed: {error}")
                raise
        answering = f"Azure OpenAI deployment {resource.deployment} is answering at {resource.endpoint}"
        ctx.say(f"replayed: {answering}" if ctx.replay else answering)
        return resource.to_json()

    def remove(value: dict[str, Any]) -> None:
        if ctx.replay and ctx.kept:
            return
        resource = OpenAIResource.from_json(value)
        ctx.say(
            resources.removal_line(
                f"Azure OpenAI account {resource.account}",
                replaying=ctx.replay,
                detail="deployment, account, purge",
            )
        )
        with cassette.activate():
            provisioner.remove(resource)

    def describe(value: dict[str, Any]) -> str:
        return f"Azure OpenAI account {value['account']} ({value['region']}, group {value['resource_group']})"

    with resources.shared(ctx.config, OPENAI_RESOURCE, create, remove, describe=describe) as shared:
        resource = OpenAIResource.from_json(shared.value)
        if ctx.replay:
            key: str | None = REPLAY_API_KEY
        elif shared.created:
            key = keys["key"]
        else:
            key = provisioner.api_key(resource)  # another worker created it: its key stays off disk
        deployment = AzureOpenAIDeployment(
            endpoint=resource.endpoint,
            deployment=resource.deployment,
            api_version=api_version,
            model=resource.model,
            region=resource.region,
            provisioned=True,
            api_key=key,
            model_version=resource.model_version,
            sku=DEPLOYMENT_SKU,
            capacity=CAPACITY,
        )
        if ctx.replay:
            deployment = AzureOpenAIDeployment.from_metadata(metadata)
        elif shared.created:
            metadata.update(deployment.metadata())
        yield deployment
    ctx.finish(shared)


# -- Azure Databricks ---------------------------------------------------------------------


def workspace(request: pytest.FixtureRequest) -> Iterator[AzureDatabricksWorkspace]:
    """The ``azure_databricks_workspace`` fixture: replayed as recorded, provisioned, or
    attached by ``DATABRICKS_HOST``."""
    from pytest_llmops.azure.workspace import attach as attach_workspace

    yield from _session_resource(
        request, "azure_databricks_workspace", provisioned_workspace,
        AzureDatabricksWorkspace.from_metadata, lambda settings: attach_workspace(),
    )


def provisioned_workspace(
    request: pytest.FixtureRequest, cassette: Cassette
) -> Iterator[AzureDatabricksWorkspace]:
    """The ``azure_databricks_workspace`` fixture when provisioning (or replaying one)."""
    extras.require("--llmops-provision of azure_databricks_workspace", *ARM_MODULES)
    from pytest_llmops.azure.provision import region_order
    from pytest_llmops.azure.workspace import WorkspaceProvisioner

    ctx = _Session(request, cassette, "azure_databricks_workspace")
    metadata = cassette.metadata
    client = arm.databricks_client(ctx.credential, ctx.subscription, ctx.endpoint)
    provisioner = WorkspaceProvisioner(client, ctx.subscription, ctx.endpoint, ctx.say, replaying=ctx.replay)
    if ctx.replay:
        plan = dict(metadata["plan"])
    else:
        plan = {
            "resource_group": ctx.group,
            "name": ctx.base_name,
            "region": _workspace_region(ctx.config) or region_order(None)[0],
            "tags": resources.tags(ctx.config),
        }

    def create() -> dict[str, Any]:
        if not ctx.replay:
            metadata["plan"] = plan
        with cassette.activate():
            value = provisioner.create(plan["resource_group"], plan["name"], plan["region"], plan["tags"])
        if not ctx.replay:
            ctx.recorder.add_endpoint(value["url"], "databricks")
        return value

    def remove(value: dict[str, Any]) -> None:
        if ctx.replay and ctx.kept:
            return
        ctx.say(resources.removal_line(f"Azure Databricks workspace {value['name']}", replaying=ctx.replay))
        with cassette.activate():
            provisioner.remove(value)

    def describe(value: dict[str, Any]) -> str:
        return (
            f"Azure Databricks workspace {value['name']} ({value['region']}, group {value['resource_group']})"
        )

    with resources.shared(ctx.config, WORKSPACE_RESOURCE, create, remove, describe=describe) as shared:
        workspace = from_resource(shared.value)
        if ctx.replay:
            workspace = AzureDatabricksWorkspace.from_metadata(metadata)
        elif shared.created:
            metadata.update(workspace.metadata())
        yield workspace
    ctx.finish(shared)


def _workspace_region(config: pytest.Config) -> str | None:
    """The region of the Azure OpenAI account this run provisioned (the lab puts both in one
    region; that account may have moved on from ``AZURE_LOCATION`` for lack of quota), else
    ``AZURE_LOCATION``, else None."""
    import json

    record = resources.state_dir(config) / f"{OPENAI_RESOURCE}.json"
    if record.is_file():
        return str(json.loads(record.read_text())["region"])
    return os.environ.get("AZURE_LOCATION", "").strip().lower() or None
