"""Lab step 4: a single-node cluster, Databricks Runtime 16.4 LTS ML (or later), Photon off,
worker type Standard_D4ds_v5. DATABRICKS_CLUSTER_ID reuses one (started if terminated);
``--llmops-provision`` creates one and removes it after the session.
"""

from databricks.sdk.service.compute import RuntimeEngine, State


def test_the_cluster_is_running_the_labs_runtime(databricks_cluster, databricks_workspace):
    details = databricks_workspace.clusters.get(databricks_cluster.cluster_id)
    assert details.state == State.RUNNING
    major, minor = (int(part) for part in details.spark_version.split(".")[:2])
    assert (major, minor) >= (16, 4)
    assert "-ml-" in details.spark_version
    assert details.spark_version == databricks_cluster.spark_version


def test_a_provisioned_cluster_is_the_labs_single_node(databricks_cluster, databricks_workspace):
    details = databricks_workspace.clusters.get(databricks_cluster.cluster_id)
    if not databricks_cluster.provisioned:
        return  # an attached cluster is the user's: only its runtime is checked above
    assert details.node_type_id == "Standard_D4ds_v5"
    assert details.num_workers == 0
    assert details.spark_conf["spark.databricks.cluster.profile"] == "singleNode"
    assert details.custom_tags["ResourceClass"] == "SingleNode"
    assert details.runtime_engine != RuntimeEngine.PHOTON
    assert details.autotermination_minutes and details.autotermination_minutes > 0
    assert details.custom_tags["CreatedBy"] == "pytest-llmops"
    assert details.custom_tags["RemoveAfter"].isdigit()
