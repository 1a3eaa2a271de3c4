"""Lab step 3: an Azure Databricks workspace in the same resource group and region
(Premium or Trial). An existing workspace (DATABRICKS_HOST) is reused; with
``--llmops-provision`` and no DATABRICKS_HOST one is created and deleted after the session.
"""


def test_the_workspace_answers(databricks_workspace, azure_databricks_workspace):
    me = databricks_workspace.current_user.me()
    assert me.user_name and "@" in me.user_name
    assert databricks_workspace.config.host.startswith(("https://", "http://127."))
    if azure_databricks_workspace.provisioned:
        assert azure_databricks_workspace.sku in {"premium", "trial"}
        assert azure_databricks_workspace.resource_group
        assert azure_databricks_workspace.region


def test_the_workspace_offers_the_labs_runtime(databricks_workspace):
    runtime = databricks_workspace.clusters.select_spark_version(ml=True, long_term_support=True)
    major, minor = (int(part) for part in runtime.split(".")[:2])
    assert (major, minor) >= (16, 4)
    assert "-ml-" in runtime
