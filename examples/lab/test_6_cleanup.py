"""Lab step 7: clean up. Terminate the cluster; delete the model deployment and the Azure
OpenAI resource (and the workspace, if this run created it) to free quota and cost.

The fixtures remove what they created after the last test of the session (also after
failures and Ctrl-C). This step terminates the cluster now, as the lab does by hand, and
checks what the session's recordings say the teardown did.
"""

import os
import re

import pytest
import yaml
from databricks.sdk.service.compute import State


def test_terminate_the_cluster(databricks_cluster, databricks_workspace, llmops_mode):
    if not databricks_cluster.provisioned:
        pytest.skip("an attached cluster belongs to its owner: pytest-llmops never terminates it")
    if os.environ.get("PYTEST_XDIST_WORKER") and llmops_mode != "replay":
        pytest.skip("other workers may still use the cluster: it is terminated after the last one")
    databricks_workspace.clusters.delete(databricks_cluster.cluster_id).result()
    assert databricks_workspace.clusters.get(databricks_cluster.cluster_id).state == State.TERMINATED


def _recorded(cassette_dir, fixture):
    path = cassette_dir / "_session" / f"{fixture}.yaml"
    data = yaml.safe_load(path.read_text())
    return [(i["request"]["method"], i["request"]["uri"]) for i in data["interactions"]], data["metadata"]


def test_the_recording_removed_what_it_created(llmops_mode, llmops_cassette_dir, azure_openai_deployment):
    if llmops_mode != "replay":
        pytest.skip("the teardown runs after this test; its calls are in the session cassettes once recorded")
    if not azure_openai_deployment.provisioned:
        pytest.skip("the recording attached to an existing deployment: nothing to remove")
    calls, _ = _recorded(llmops_cassette_dir, "azure_openai_deployment")
    deletes = [uri for method, uri in calls if method == "DELETE"]
    assert any("/deployments/gpt-4o" in uri for uri in deletes), "the deployment was deleted"
    assert any(re.search(r"/accounts/[^/?]+(\?|$)", uri) for uri in deletes), "the account was deleted"
    assert any("/deletedAccounts/" in uri for uri in deletes), "the soft-deleted account was purged"

    calls, metadata = _recorded(llmops_cassette_dir, "databricks_cluster")
    if metadata.get("action") == "provision":
        assert any(uri.endswith("/api/2.1/clusters/permanent-delete") for _, uri in calls)
