"""The ``WorkspaceClient`` of a session, built per mode.

Live and record: the SDK's unified authentication, unchanged (``DATABRICKS_HOST`` and
``DATABRICKS_TOKEN``, a ``~/.databrickscfg`` profile, an Azure service principal through
``ARM_CLIENT_ID``/``ARM_CLIENT_SECRET``/``ARM_TENANT_ID``, or the Azure CLI's login).

Replay: a placeholder host and a dummy token, whatever the environment says, so every
call (the ``/.well-known/databricks-config`` probe included) is answered by cassettes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmops.cassettes.sanitize import DATABRICKS_HOST
from pytest_llmops.errors import WorkspaceConfigError
from pytest_llmops.settings import Settings

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

REPLAY_HOST = f"https://{DATABRICKS_HOST}"
REPLAY_TOKEN = "replay-token"  # not a secret: replay answers from cassettes
REPLAY_RETRY_TIMEOUT_S = 2
"""Replayed retries do not sleep (cassettes answer at once); a call outside any cassette,
which the sealed network refuses, fails in seconds instead of retrying for 5 minutes."""

AUTH_ALTERNATIVES = (
    "a profile (DATABRICKS_CONFIG_PROFILE), an Azure service principal "
    "(ARM_CLIENT_ID, ARM_CLIENT_SECRET, ARM_TENANT_ID) or `az login`"
)


def _product_version() -> str:
    from pytest_llmops import __version__

    return __version__


def replay_client() -> WorkspaceClient:
    """A client that needs no credential and no network: every answer comes from cassettes.

    The SDK's variables are hidden while it is built: a developer's ``DATABRICKS_*`` or
    ``ARM_*`` variables (or profile) must not change what replay does.
    """
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    with _sdk_variables_hidden():
        config = Config(
            host=REPLAY_HOST,
            token=REPLAY_TOKEN,
            auth_type="pat",
            retry_timeout_seconds=REPLAY_RETRY_TIMEOUT_S,
            product="pytest-llmops",
            product_version=_product_version(),
        )
    return WorkspaceClient(config=config)


@contextlib.contextmanager
def _sdk_variables_hidden() -> Iterator[None]:
    """Within the block, the environment variables the SDK's ``Config`` reads are unset (the
    SDK reads them only while a ``Config`` is built, in this thread)."""
    from databricks.sdk.config import Config

    names: set[str] = set()
    for attribute in Config.attributes():
        if attribute.env:
            names.add(attribute.env)
            names.update(getattr(attribute, "env_aliases", None) or ())
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def live_client(
    settings: Settings,
    *,
    host: str | None = None,
    azure_workspace_resource_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> WorkspaceClient:
    """A client through the SDK's unified authentication (live and record modes); ``host``
    and ``azure_workspace_resource_id`` name the workspace when the environment does not
    (one that ``--llmops-provision`` created).

    A workspace that is not configured at all skips the test naming ``DATABRICKS_HOST``; a
    host without credentials names ``DATABRICKS_TOKEN`` (``--llmops-strict`` fails instead).
    """
    from databricks.sdk import WorkspaceClient

    from pytest_llmops.azure.openai import missing

    env = os.environ if environ is None else environ
    what = f"databricks_workspace (or {AUTH_ALTERNATIVES})"
    if not host and not workspace_configured(env):
        missing(["DATABRICKS_HOST", "DATABRICKS_TOKEN"], settings, what)
    try:
        return WorkspaceClient(
            host=host,
            azure_workspace_resource_id=azure_workspace_resource_id,
            product="pytest-llmops",
            product_version=_product_version(),
        )
    except ValueError as error:
        if "cannot configure default credentials" in str(error):
            missing(["DATABRICKS_TOKEN"], settings, what)
        raise WorkspaceConfigError(
            f"databricks_workspace: the Databricks SDK rejected the configuration: {error}\n"
            "Fix the DATABRICKS_* variables or the profile (check with `databricks auth describe`), "
            "or run offline from cassettes with plain `pytest`."
        ) from error


def workspace_configured(env: Mapping[str, str]) -> bool:
    """Whether unified auth has anything to start from: a host, a profile or a config file."""
    if env.get("DATABRICKS_HOST") or env.get("DATABRICKS_CONFIG_PROFILE"):
        return True
    if env.get("DATABRICKS_AZURE_RESOURCE_ID"):
        return True
    config_file = env.get("DATABRICKS_CONFIG_FILE") or "~/.databrickscfg"
    return Path(config_file).expanduser().is_file()


def metadata(client: WorkspaceClient) -> dict[str, Any]:
    """What the session cassette stores about the workspace (never a host or credential)."""
    return {"auth_type": client.config.auth_type, "host": REPLAY_HOST}
