"""Azure: the Azure OpenAI deployment and the Databricks workspace (attach or provision),
clients and credentials.

- the pytest fixtures (``azure_credential``, ``azure_openai_deployment``,
  ``azure_openai_client``/``azure_openai_async_client``, ``azure_databricks_workspace``) are
  in :mod:`pytest_llmops.fixtures.azure`, thin: their bodies are ``lifecycle`` and ``openai``;
- ``openai``: the deployment a session uses, attached from the environment, and its clients;
- ``lifecycle``: provisioning per mode (once across xdist workers, recorded and replayed);
- ``arm``: Azure Resource Manager endpoint, management clients, long-running operations;
- ``provision``: the lab's Azure OpenAI account and gpt-4o deployment (regions, quota);
- ``workspace``: the lab's Azure Databricks workspace;
- ``sweep``: the finder of leaked Azure resources for ``pytest-llmops sweep``.

The azure-* SDKs are imported inside functions only.
"""
