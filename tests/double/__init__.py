"""The lab double: a local HTTP server speaking the Azure OpenAI and Databricks REST APIs.

See ``server.LabDouble``; ``python -m tests.double --port 8765`` runs it in the foreground.
"""

from .server import LabDouble

__all__ = ["LabDouble"]
