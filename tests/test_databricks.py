"""databricks_workspace, databricks_cluster and databricks_command over real HTTP against the
lab double: attach, provision, teardown whatever happens, and replay offline."""

from __future__ import annotations

import json
import sqlite3

import pytest

from pytest_llmops.cassettes.sanitize import DATABRICKS_HOST
from pytest_llmops.secrets.scan import scan_paths
from tests import test_databricks_support as support
from tests.conftest import SECRET_DATABRICKS_TOKEN, all_bytes
from tests.test_databricks_support import SEEN, calls, go_offline, make_cluster, session_cassette

workspace_double = support.workspace_double


def seen(pytester: pytest.Pytester) -> dict[str, object]:
    return json.loads((pytester.path / "seen.json").read_text())


# -- the workspace -----------------------------------------------------------------------------

WORKSPACE = """
import os

def test_workspace(databricks_workspace):
    config = databricks_workspace.config
    assert config.workspace_id == "1234567890123456"  # from the /.well-known/databricks-config probe
    expected = os.environ.get("EXPECTED_HOST") or "https://adb-0000000000000000.0.azuredatabricks.net"
    assert config.host == expected
"""


def test_workspace_records_its_probe_and_replays_it_with_a_placeholder_host(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    pytester.makepyfile(test_workspace=WORKSPACE)
    monkeypatch.setenv("EXPECTED_HOST", workspace_double.url)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=1)
    interactions, metadata = session_cassette(pytester.path, "databricks_workspace")
    assert [r.uri for r, _ in interactions] == [f"https://{DATABRICKS_HOST}/.well-known/databricks-config"]
    assert metadata["auth_type"] == "pat"

    go_offline(workspace_double, monkeypatch)
    monkeypatch.delenv("EXPECTED_HOST")
    # A developer's own settings must not change what replay does.
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "no-such-profile")
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1111111111111111.1.azuredatabricks.net")
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_workspace_not_configured_skips_naming_the_variables(pytester: pytest.Pytester):
    pytester.makepyfile(test_workspace=WORKSPACE)
    result = pytester.runpytest("--llmops-record", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*DATABRICKS_HOST, DATABRICKS_TOKEN not set*databricks_workspace*"])
    strict = pytester.runpytest("--llmops-record", "--llmops-strict")
    strict.assert_outcomes(errors=1)
    strict.stdout.fnmatch_lines(["*MissingCredential: DATABRICKS_HOST, DATABRICKS_TOKEN not set*"])


def test_a_cluster_neither_named_nor_provisioned_skips_naming_the_variable(
    pytester: pytest.Pytester, workspace_double
):
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest("--llmops-live", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*DATABRICKS_CLUSTER_ID not set*--llmops-provision*"])


def test_replay_without_a_recording_says_how_to_record(pytester: pytest.Pytester):
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*databricks_cluster has no recording to replay*", "*--llmops-record --llmops-provision*"]
    )


# -- attach ------------------------------------------------------------------------------------


def test_attach_to_a_running_cluster_never_stops_it_and_replays_offline(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    cluster_id = make_cluster(workspace_double)
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", cluster_id)
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest("--llmops-record", "--llmops-provision")  # attach wins over provision
    result.assert_outcomes(passed=1)
    assert seen(pytester) == {
        "cluster_id": cluster_id,
        "cluster_name": "shared-ml",
        "spark_version": support.ML_RUNTIME,
        "node_type_id": "Standard_D4ds_v5",
        "provisioned": False,
        "started": False,
        "environment": [],  # names of its spark_env_vars: its owner gave it none
    }
    assert workspace_double.databricks.cluster_state(cluster_id) == "RUNNING"
    assert len(workspace_double.requests_to(r"/clusters/create$", "POST")) == 1  # the arrangement's
    assert calls(workspace_double, "start") == calls(workspace_double, "delete") == []
    assert calls(workspace_double, "permanent-delete") == []
    _, metadata = session_cassette(pytester.path, "databricks_cluster")
    assert metadata["action"] == "attach"

    go_offline(workspace_double, monkeypatch)
    (pytester.path / "seen.json").unlink()
    pytester.runpytest().assert_outcomes(passed=1)
    assert seen(pytester)["cluster_id"] == cluster_id


def test_attach_starts_a_terminated_cluster_and_leaves_it_running(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    cluster_id = make_cluster(workspace_double, terminated=True)
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", cluster_id)
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest("--llmops-live", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*databricks_cluster: starting cluster*leaves it running*"])
    assert seen(pytester)["started"] is True
    assert calls(workspace_double, "start") == [cluster_id]
    assert calls(workspace_double, "delete")[1:] == []  # only the arrangement's own terminate
    assert workspace_double.databricks.cluster_state(cluster_id) == "RUNNING"


def test_attach_to_an_unknown_cluster_says_how_to_fix_it(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", "0000-000000-nothere")
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest("--llmops-live")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*DATABRICKS_CLUSTER_ID=0000-000000-nothere: the workspace has no such cluster*--llmops-provision*"]
    )


# -- provision ---------------------------------------------------------------------------------


def test_provision_creates_the_lab_cluster_and_removes_it(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest("--llmops-record", "--llmops-provision")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*databricks_cluster: creating cluster pytest-llmops-*16.4.x-cpu-ml-scala2.12, Standard_D4ds_v5*",
        "*databricks_cluster: cluster * RUNNING after * s",
        "*databricks_cluster: removing cluster *",
    ])
    cluster = seen(pytester)
    assert cluster["provisioned"] is True
    assert len(workspace_double.requests_to(r"/clusters/create$", "POST")) == 1
    audit = workspace_double.databricks.clusters[str(cluster["cluster_id"])]
    spec = audit["spec"]
    assert spec["spark_version"] == "16.4.x-cpu-ml-scala2.12"
    assert spec["node_type_id"] == "Standard_D4ds_v5"
    assert spec["num_workers"] == 0
    assert spec["spark_conf"] == {
        "spark.databricks.cluster.profile": "singleNode",
        "spark.master": "local[*]",
    }
    assert spec["runtime_engine"] == "STANDARD"  # Photon off
    assert spec["data_security_mode"] == "SINGLE_USER"
    assert spec["single_user_name"] == "lab-user@example.com"
    assert spec["autotermination_minutes"] > 0
    tags = spec["custom_tags"]
    assert tags["CreatedBy"] == "pytest-llmops"
    assert tags["ResourceClass"] == "SingleNode"
    assert len(tags["RemoveAfter"]) == 10 and tags["LLMOpsSession"]
    assert audit["permanently_deleted"] is True
    assert workspace_double.databricks.live_clusters() == []
    removed = [cluster["cluster_id"]]
    assert calls(workspace_double, "delete") == calls(workspace_double, "permanent-delete") == removed

    _, metadata = session_cassette(pytester.path, "databricks_cluster")
    assert metadata["action"] == "provision" and metadata["removed"] is True
    assert scan_paths([pytester.path / "cassettes"]) == []
    assert SECRET_DATABRICKS_TOKEN.encode() not in all_bytes(pytester.path / "cassettes")

    go_offline(workspace_double, monkeypatch)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert seen(pytester) == cluster
    assert "creating cluster" not in result.stdout.str()  # replay creates nothing


def test_node_type_from_the_ini_option_else_the_environment(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    pytester.makepyfile(test_seen=SEEN)
    monkeypatch.setenv("DATABRICKS_NODE_TYPE", "Standard_D8ds_v5")
    pytester.runpytest("--llmops-live", "--llmops-provision").assert_outcomes(passed=1)
    assert seen(pytester)["node_type_id"] == "Standard_D8ds_v5"
    pytester.makeini("[pytest]\nllmops_databricks_node_type = Standard_DS3_v2\n")
    pytester.runpytest("--llmops-live", "--llmops-provision").assert_outcomes(passed=1)
    assert seen(pytester)["node_type_id"] == "Standard_DS3_v2"
    assert workspace_double.databricks.live_clusters() == []


FAILING = """
def test_fails(databricks_cluster):
    assert databricks_cluster.cluster_id == "something else"
"""

BROKEN_FIXTURE = """
import pytest

@pytest.fixture
def model_on_cluster(databricks_cluster):
    raise RuntimeError("the model did not load")

def test_uses_it(model_on_cluster):
    pass
"""


@pytest.mark.parametrize(
    ("source", "outcome"),
    [(FAILING, {"failed": 1}), (BROKEN_FIXTURE, {"errors": 1})],
    ids=["failure", "error"],
)
def test_the_cluster_is_removed_after_a_failure_or_a_fixture_error(
    pytester: pytest.Pytester, workspace_double, source, outcome
):
    pytester.makepyfile(test_bad=source)
    result = pytester.runpytest("--llmops-record", "--llmops-provision")
    result.assert_outcomes(**outcome)
    assert len(workspace_double.databricks.clusters) == 1
    assert workspace_double.databricks.live_clusters() == []


def test_a_quota_failure_removes_the_cluster_and_suggests_another_region(
    pytester: pytest.Pytester, workspace_double
):
    workspace_double.databricks.fail_create_with_quota = True
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest("--llmops-record", "--llmops-provision")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*QuotaExceeded: Cluster * could not start: the subscription has no CPU (cores) quota left in "
        "swedencentral for Standard_D4ds_v5. The cluster was removed.",
        "*Azure said: *standardDDSv5Family Cores quota*",
        "*use another region*eastus2, northcentralus, switzerlandwest*--llmops-provision*",
    ])
    assert len(workspace_double.databricks.clusters) == 1
    assert workspace_double.databricks.live_clusters() == []
    assert not (pytester.path / "cassettes" / "_session" / "databricks_cluster.yaml").exists()


def test_keep_resources_keeps_the_cluster_and_prints_its_id(pytester: pytest.Pytester, workspace_double):
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest("--llmops-record", "--llmops-provision", "--llmops-keep-resources")
    result.assert_outcomes(passed=1)
    cluster_id = seen(pytester)["cluster_id"]
    result.stdout.fnmatch_lines(
        [f"*kept databricks_cluster (cluster {cluster_id} (pytest-llmops-*) and secret scope pytest-llmops-*)*sweep*"]
    )
    assert [c["cluster_id"] for c in workspace_double.databricks.live_clusters()] == [cluster_id]
    assert calls(workspace_double, "delete") == []
    _, metadata = session_cassette(pytester.path, "databricks_cluster")
    assert metadata["removed"] is False


# -- commands ----------------------------------------------------------------------------------

COMMANDS = """
def test_arithmetic(databricks_command):
    assert databricks_command("print(6 * 7)") == "42"
    result = databricks_command.run("import sys\\nprint(sys.version_info[0])", timeout=60)
    assert (result.output, result.result_type) == ("3", "text")

def test_remote_exception(databricks_command):
    databricks_command('''
        def divide(a, b):
            return a / b
        divide(1, 0)
    ''')
"""


def test_commands_return_output_and_fail_with_the_remote_traceback(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", make_cluster(workspace_double))
    pytester.makepyfile(test_commands=COMMANDS)
    result = pytester.runpytest("--llmops-record")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*RemoteCommandError: The command raised on cluster *: ZeroDivisionError: division by zero",
        "*Remote traceback:",
        "*line 2, in divide*",
        "*ZeroDivisionError: division by zero",
    ])
    contexts = workspace_double.databricks.contexts
    assert len(contexts) == 2 and workspace_double.databricks.live_contexts() == []
    assert (pytester.path / "cassettes" / "test_commands" / "test_arithmetic.yaml").is_file()
    assert scan_paths([pytester.path / "cassettes"]) == []

    go_offline(workspace_double, monkeypatch)
    pytester.runpytest("-k", "arithmetic").assert_outcomes(passed=1)


LOGGING_CELL = '''
def test_the_labs_logging_cell(databricks_command):
    output = databricks_command("""
        import os
        os.environ["AZURE_OPENAI_API_VERSION"] = "2024-05-01-preview"
        from openai import AzureOpenAI
        import mlflow

        client = AzureOpenAI(azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"],
                             api_key=os.environ["AZURE_OPENAI_API_KEY"],
                             api_version=os.environ["AZURE_OPENAI_API_VERSION"])
        system_prompt = "Assistant is a large language model trained by OpenAI."
        mlflow.openai.autolog()
        with mlflow.start_run():
            response = client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "system", "content": system_prompt},
                          {"role": "user", "content": "Tell me a joke about animals."}])
            print(response.choices[0].message.content)
            mlflow.log_param("completion_tokens", response.usage.completion_tokens)
        mlflow.end_run()
    """, timeout=120)
    assert output.strip()
'''


def test_the_labs_logging_cell_runs_through_databricks_command(
    pytester: pytest.Pytester, workspace_double, monkeypatch, tmp_path
):
    store = tmp_path / "cluster-mlflow.db"
    workspace_double.databricks.command_env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
        "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
    }
    # The cluster's owner gave it the endpoint and, through a secret scope, the key.
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", make_cluster(workspace_double, openai_env=True))
    pytester.makepyfile(test_cell=LOGGING_CELL)
    result = pytester.runpytest("--llmops-live")
    result.assert_outcomes(passed=1)
    assert len(workspace_double.requests_to(r"/chat/completions$")) == 1
    with sqlite3.connect(store) as db:
        [(key, value)] = db.execute("select key, value from params").fetchall()
        [(traces,)] = db.execute("select count(*) from trace_info").fetchall()
    assert key == "completion_tokens" and int(value) > 0
    assert traces == 1
