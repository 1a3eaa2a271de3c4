"""Which optional extra provides which module, and the one check that imports them.

The base install (``pip install pytest-llmops``) records and replays cassettes and builds
the Azure OpenAI clients. Everything else is an extra; a fixture, marker, hook or command
that needs one calls :func:`require` at its boundary, which fails with one line naming the
``pip install`` that fixes it (never at plugin load).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pytest_llmops.errors import MissingExtra

EXTRAS: dict[str, str] = {
    "mlflow": "mlflow",
    "azure.mgmt.cognitiveservices": "azure",
    "azure.mgmt.databricks": "azure",
    "databricks.sdk": "databricks",
    "numpy": "drift",
    "scipy": "drift",
    "matplotlib": "drift",
    "pyspark": "spark",
    "pyarrow": "spark",
}
"""Module -> the extra of ``pyproject.toml`` that installs it."""

ARM_MODULES = ("azure.mgmt.cognitiveservices", "azure.mgmt.databricks")
DRIFT_MODULES = ("numpy", "scipy", "matplotlib")
DATABRICKS_FIXTURES = "Databricks (databricks_workspace, databricks_cluster, databricks_command)"


def _missing(what: str, extras: list[str]) -> str:
    names = ",".join(dict.fromkeys(extras))
    return f"{what} needs the [{names}] extra: pip install 'pytest-llmops[{names}]'"


def require(what: str, *modules: str) -> list[ModuleType]:
    """Import ``modules`` (names from :data:`EXTRAS`) for ``what`` (e.g. "the llmops marker");
    raise :class:`~pytest_llmops.errors.MissingExtra` naming the install command when any of
    them is not installed."""
    found: list[ModuleType] = []
    missing: list[str] = []
    for name in modules:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top and not name.startswith(top) and top not in {m.split(".")[0] for m in EXTRAS}:
                raise  # a broken installation of something else: not ours to explain
            missing.append(EXTRAS[name])
    if missing:
        raise MissingExtra(_missing(what, missing))
    return found
