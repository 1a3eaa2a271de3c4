"""The Azure OpenAI deployment a session uses, and the clients bound to it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops.cassettes.sanitize import OPENAI_HOST
from pytest_llmops.errors import MissingCredential
from pytest_llmops.settings import Settings, settings_key

if TYPE_CHECKING:
    from openai import AsyncAzureOpenAI, AzureOpenAI

DEFAULT_API_VERSION = "2024-05-01-preview"
DEFAULT_DEPLOYMENT = "gpt-4o"
REPLAY_ENDPOINT = f"https://{OPENAI_HOST}/"
REPLAY_API_KEY = "replay-api-key"  # not a secret: replay answers from cassettes
COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"


@dataclass(frozen=True)
class AzureOpenAIDeployment:
    """An Azure OpenAI deployment: where it is and how to reach it."""

    endpoint: str
    deployment: str
    api_version: str
    model: str = "gpt-4o"
    region: str | None = None
    provisioned: bool = False
    api_key: str | None = field(default=None, repr=False)
    """None means Entra ID (azure_credential)."""
    model_version: str | None = None
    sku: str | None = None
    """Deployment type (``Standard``) when provisioned; None when attached (not looked up)."""
    capacity: int | None = None
    """Thousands of tokens per minute (10 in the lab) when provisioned; None when attached."""

    @property
    def tokens_per_minute(self) -> int | None:
        """The deployment's rate limit in tokens per minute, when known."""
        return None if self.capacity is None else self.capacity * 1000

    def metadata(self) -> dict[str, Any]:
        """What a session cassette stores so that replay does what the recording did
        (never the key)."""
        data = asdict(self)
        data.pop("api_key")
        data["endpoint"] = REPLAY_ENDPOINT
        return data

    @classmethod
    def from_metadata(cls, data: Mapping[str, Any]) -> AzureOpenAIDeployment:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "api_key"}
        return cls(**{**known, "endpoint": REPLAY_ENDPOINT, "api_key": REPLAY_API_KEY})


def missing(names: list[str], settings: Settings, what: str) -> None:
    """Skip (or fail under ``--llmops-strict``) when variables needed live are not set."""
    listed = ", ".join(names)
    message = (
        f"{listed} not set: {what} needs {'it' if len(names) == 1 else 'them'} in {settings.mode} mode. "
        f"Export {'it' if len(names) == 1 else 'them'}, or run offline from cassettes with plain `pytest`."
    )
    if settings.strict:
        raise MissingCredential(message + " (--llmops-strict turns this skip into a failure)")
    pytest.skip(message)


def attach(settings: Settings, environ: Mapping[str, str] | None = None) -> AzureOpenAIDeployment:
    """The deployment named by the environment (live and record modes)."""
    env = os.environ if environ is None else environ
    endpoint = env.get("AZURE_OPENAI_ENDPOINT", "").strip()
    if not endpoint:
        missing(["AZURE_OPENAI_ENDPOINT"], settings, "azure_openai_deployment")
    return AzureOpenAIDeployment(
        endpoint=endpoint,
        deployment=env.get("AZURE_OPENAI_DEPLOYMENT", "").strip() or DEFAULT_DEPLOYMENT,
        api_version=env.get("AZURE_OPENAI_API_VERSION", "").strip() or DEFAULT_API_VERSION,
        model=env.get("AZURE_OPENAI_MODEL", "").strip() or "gpt-4o",
        region=env.get("AZURE_LOCATION") or None,
        api_key=env.get("AZURE_OPENAI_API_KEY") or None,
    )


def replayed(metadata: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> AzureOpenAIDeployment:
    """The deployment as recorded (session cassette metadata), with placeholder credentials."""
    if metadata:
        return AzureOpenAIDeployment.from_metadata(metadata)
    env = os.environ if environ is None else environ
    return AzureOpenAIDeployment(
        endpoint=REPLAY_ENDPOINT,
        deployment=env.get("AZURE_OPENAI_DEPLOYMENT", "").strip() or DEFAULT_DEPLOYMENT,
        api_version=env.get("AZURE_OPENAI_API_VERSION", "").strip() or DEFAULT_API_VERSION,
        api_key=REPLAY_API_KEY,
    )


def client_kwargs(deployment: AzureOpenAIDeployment, credential: Any) -> dict[str, Any]:
    """Keyword arguments of ``openai.AzureOpenAI``/``AsyncAzureOpenAI`` for a deployment:
    its key, or an Entra ID token provider from ``credential``."""
    kwargs: dict[str, Any] = {"azure_endpoint": deployment.endpoint, "api_version": deployment.api_version}
    if deployment.api_key:
        kwargs["api_key"] = deployment.api_key
    else:
        if credential is None:
            raise MissingCredential(
                "No AZURE_OPENAI_API_KEY and no azure_credential: set AZURE_OPENAI_API_KEY, or sign in "
                "for Entra ID (`az login`, or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET)."
            )
        from azure.identity import get_bearer_token_provider

        kwargs["azure_ad_token_provider"] = get_bearer_token_provider(credential, COGNITIVE_SCOPE)
    return kwargs


def load_credential_factory(spec: str) -> Any:
    """The callable named by ``LLMOPS_AZURE_CREDENTIAL`` (``package.module:attribute``)."""
    import importlib

    module_name, _, attribute = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute or "credential")
    except (ImportError, AttributeError) as exc:
        raise MissingCredential(
            f"LLMOPS_AZURE_CREDENTIAL={spec!r} does not name a callable ({exc}). Use "
            "`package.module:factory`, e.g. `azure.identity:AzureCliCredential`, or unset it to use "
            "DefaultAzureCredential."
        ) from exc


def session_credential(config: pytest.Config) -> Any:
    """The ``azure_credential`` fixture: None in replay, else the factory named by
    ``LLMOPS_AZURE_CREDENTIAL`` or ``DefaultAzureCredential``."""
    if config.stash[settings_key].is_replay:
        return None
    factory = os.environ.get("LLMOPS_AZURE_CREDENTIAL", "").strip()
    if factory:
        return load_credential_factory(factory)()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def client(deployment: AzureOpenAIDeployment, credential: Any, config: pytest.Config) -> AzureOpenAI:
    """An ``openai.AzureOpenAI`` client for ``deployment``, paced and open to ``llmops_faults``."""
    from openai import AzureOpenAI

    from pytest_llmops.traffic.clients import instrument

    return instrument(AzureOpenAI(**client_kwargs(deployment, credential)), config, deployment)


def async_client(
    deployment: AzureOpenAIDeployment, credential: Any, config: pytest.Config
) -> AsyncAzureOpenAI:
    """An ``openai.AsyncAzureOpenAI`` client for ``deployment``, like :func:`client`."""
    from openai import AsyncAzureOpenAI

    from pytest_llmops.traffic.clients import instrument

    return instrument(AsyncAzureOpenAI(**client_kwargs(deployment, credential)), config, deployment)
