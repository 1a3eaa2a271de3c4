"""MLflow's judges on the session's Azure OpenAI deployment: ``llmops_judge``.

MLflow 3's judges (``Guidelines``, ``Safety``, ``make_judge``...) reach ``azure:/<deployment>``
through its gateway's OpenAI provider in Azure mode, configured by ``AZURE_API_KEY``,
``AZURE_API_BASE`` and ``AZURE_API_VERSION`` (not the ``AZURE_OPENAI_*`` names), and send
their requests with ``requests`` (``mlflow.genai.judges.adapters.utils``). For the session:

- those variables are set from the deployment (placeholders in replay) and restored after;
- MLflow's judge requests go through :class:`JudgeRequests`: paced with the plugin's own
  clients (one limiter per deployment, shared by xdist workers; replay never waits), with
  a deployment reached through Entra ID given a bearer token instead of a key (judges run
  in parallel threads: the cassette records and replays every thread's requests);
- MLflow's judges look their model up (context window, price) in its model catalog, which
  they download from GitHub unless ``MLFLOW_MODEL_CATALOG_URI`` says otherwise: the session
  uses the catalog bundled with MLflow (the same in every mode, and no request that a
  cassette would record or a sealed replay refuse), unless the variable is set;
- whether the judge asks for structured outputs is decided from the API version, once:
  Azure answers ``response_format: json_schema`` with a 400 before 2024-08-01-preview, and
  MLflow would otherwise learn that per process from a first failed call, so that a
  recording would depend on which test of a worker judged first.
Judge calls are HTTP like any other: the test's cassette records and replays them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from pytest_llmops.azure.openai import AzureOpenAIDeployment
    from pytest_llmops.traffic.pacer import Pacer

JUDGE_MODULE = "mlflow.genai.judges.adapters.utils"
CATALOG_ENV = "MLFLOW_MODEL_CATALOG_URI"
STRUCTURED_OUTPUTS_SINCE = "2024-08-01"
ENTRA_ID_PLACEHOLDER = "entra-id"
"""MLflow's Azure provider wants a key; with Entra ID the bearer token replaces it."""
_DEPLOYMENT_RE = re.compile(r"/deployments/([^/]+)/")

def model_uri(deployment: AzureOpenAIDeployment) -> str:
    """The judge model URI of a deployment: ``azure:/<deployment name>``."""
    return f"azure:/{deployment.deployment}"


def structured_outputs(api_version: str) -> bool:
    """Whether an Azure OpenAI API version accepts ``response_format: json_schema``."""
    head = api_version.strip()[:10]
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", head):
        return True  # "v1", "latest", "preview": the current API
    return head >= STRUCTURED_OUTPUTS_SINCE


class JudgeRequests:
    """Stands in for the ``requests`` module inside MLflow's judge adapter: ``post`` to the
    session's deployment is paced (and authenticated with Entra ID when there is no key);
    everything else is ``requests`` itself."""

    def __init__(
        self,
        requests: Any,
        host: str,
        pacer: Pacer | None,
        token: Callable[[], str] | None,
    ) -> None:
        self._requests = requests
        self._host = host
        self._pacer = pacer
        self._token = token

    def __getattr__(self, name: str) -> Any:
        return getattr(self._requests, name)

    def post(self, url: str, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        if f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}" != self._host:
            return self._requests.post(url, **kwargs)
        if self._token is not None:
            headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "api-key"}
            kwargs["headers"] = {**headers, "Authorization": f"Bearer {self._token()}"}
        found = _DEPLOYMENT_RE.search(parts.path)
        if self._pacer is None or found is None:
            return self._requests.post(url, **kwargs)
        from pytest_llmops.traffic.estimate import charged, estimate

        sent = kwargs.get("json")
        body: dict[str, Any] = sent if isinstance(sent, dict) else {}
        limiter = self._pacer.limiter(self._host, found.group(1))
        reservation = limiter.wait(estimate(body, self._pacer.options.completion_budget))
        try:
            response = self._requests.post(url, **kwargs)
        except BaseException:
            limiter.settle(reservation, None, {})
            raise
        charge = None
        if response.ok:
            with contextlib.suppress(ValueError, AttributeError):
                usage = response.json().get("usage")
                charge = charged(body, usage) if isinstance(usage, dict) else None
        # MLflow sends a 429 again itself (after its own backoff); the limiter holds every
        # worker until its Retry-After has passed.
        limiter.settle(reservation, response.status_code, response.headers, charge, retrying=True)
        return response


def _host(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


@contextlib.contextmanager
def configured(config: pytest.Config, deployment: AzureOpenAIDeployment, credential: Any) -> Iterator[str]:
    """Configure MLflow's judges for ``deployment`` while the block runs; yield its model URI."""
    import importlib

    from pytest_llmops.tracking.bootstrap import import_mlflow
    from pytest_llmops.traffic.pacer import pacer

    import_mlflow()
    adapter: Any = importlib.import_module(JUDGE_MODULE)
    token: Callable[[], str] | None = None
    if not deployment.api_key:
        from pytest_llmops.azure.openai import client_kwargs

        token = client_kwargs(deployment, credential)["azure_ad_token_provider"]
    values = {
        "AZURE_API_KEY": deployment.api_key or ENTRA_ID_PLACEHOLDER,
        "AZURE_API_BASE": deployment.endpoint,
        "AZURE_API_VERSION": deployment.api_version,
    }
    if CATALOG_ENV not in os.environ:
        values[CATALOG_ENV] = ""  # MLflow's bundled model catalog, never a download
    saved = {name: os.environ.get(name) for name in values}
    the_pacer = pacer(config)
    if the_pacer is not None:
        the_pacer.note_deployment(deployment)
    original = adapter.requests
    adapter.requests = JudgeRequests(original, _host(deployment.endpoint), the_pacer, token)
    _decide_structured_outputs(deployment)
    os.environ.update(values)
    try:
        yield model_uri(deployment)
    finally:
        adapter.requests = original
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _decide_structured_outputs(deployment: AzureOpenAIDeployment) -> None:
    from mlflow.genai.judges.adapters import gateway_adapter

    capabilities = getattr(gateway_adapter, "_MODEL_RESPONSE_FORMAT_CAPABILITIES", None)
    if isinstance(capabilities, dict):
        capabilities[f"azure/{deployment.deployment}"] = structured_outputs(deployment.api_version)
