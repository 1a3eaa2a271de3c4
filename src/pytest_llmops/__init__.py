"""pytest-llmops: test LLM applications on Azure OpenAI and Azure Databricks.

Importing this package is cheap: the heavy libraries (mlflow, openai, databricks-sdk,
azure-*, vcrpy) are imported only inside the fixtures and functions that need them.


PYTEST_DONT_REWRITE: loaded at start-up (see :mod:`pytest_llmops.plugin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_llmops.errors import LLMOpsError, ReplayMiss

__all__ = ["LLMOpsError", "ReplayMiss"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``LLMOpsError`` and ``ReplayMiss``, imported on first use (not at plugin load)."""
    if name in __all__:
        from pytest_llmops import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
