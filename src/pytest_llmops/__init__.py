"""pytest-llmops: test LLM applications on Azure OpenAI and Azure Databricks.

Importing this package is cheap: the heavy libraries (mlflow, openai, databricks-sdk,
azure-*, vcrpy) are imported only inside the fixtures and functions that need them.
"""

from pytest_llmops.errors import LLMOpsError, ReplayMiss

__all__ = ["LLMOpsError", "ReplayMiss"]
__version__ = "0.1.0"
