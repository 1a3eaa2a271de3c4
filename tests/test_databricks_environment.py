"""What code on the lab's cluster finds in its environment, as on a real cluster.

A Databricks cluster gets environment variables only from its spec (``spark_env_vars``); a
secret belongs in a secret scope, referenced as ``{{secrets/<scope>/<key>}}`` (PITFALLS,
"The real services"). So a cluster created with ``--llmops-provision`` gets the Azure
OpenAI endpoint and API version as variables and the key through a secret scope that the
fixture creates and removes; an attached cluster without them fails the lab's cell test
saying what to set; and the double's commands see exactly the cluster's environment.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from pytest_llmops import cli
from pytest_llmops.resources import remove_after
from pytest_llmops.secrets.scan import scan_paths
from tests import test_databricks_support as support
from tests.conftest import REPO, SECRET_API_KEY, all_bytes
from tests.test_databricks_support import client, go_offline, make_cluster, session_cassette

workspace_double = support.workspace_double

SCOPE = re.compile(r"^pytest-llmops-[0-9a-f]{12}-removeafter-\d{10}$")

ENVIRONMENT = """
import hashlib
import os

def test_environment(databricks_cluster, databricks_command):
    databricks_cluster.require_environment("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")
    seen = databricks_command('''
        import hashlib, os
        key = os.environ["AZURE_OPENAI_API_KEY"].encode()
        print(os.environ["AZURE_OPENAI_ENDPOINT"], os.environ["AZURE_OPENAI_API_VERSION"])
        print(hashlib.sha256(key).hexdigest()[:16])
    ''')
    endpoint, digest = seen.splitlines()
    assert endpoint.split() == [os.environ.get("EXPECTED_ENDPOINT", "https://resource.openai.azure.com"),
                                "2024-05-01-preview"]
    assert digest == os.environ.get("EXPECTED_DIGEST", digest)
"""


def test_a_provisioned_cluster_gets_the_endpoint_and_the_key_through_a_secret_scope(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    double = workspace_double
    monkeypatch.setenv("EXPECTED_ENDPOINT", double.url)
    monkeypatch.setenv("EXPECTED_DIGEST", hashlib.sha256(SECRET_API_KEY.encode()).hexdigest()[:16])
    pytester.makepyfile(test_env=ENVIRONMENT)
    result = pytester.runpytest("--llmops-record", "--llmops-provision")
    result.assert_outcomes(passed=1)

    [create] = double.requests_to(r"/clusters/create$", "POST")
    env = create.json()["spark_env_vars"]
    scope = env["AZURE_OPENAI_API_KEY"][len("{{secrets/") : -len("/AZURE_OPENAI_API_KEY}}")]
    assert SCOPE.match(scope), env
    assert env == {
        "AZURE_OPENAI_ENDPOINT": double.url,
        "AZURE_OPENAI_API_VERSION": "2024-05-01-preview",
        "AZURE_OPENAI_API_KEY": f"{{{{secrets/{scope}/AZURE_OPENAI_API_KEY}}}}",
    }
    # The scope and its secret exist before the cluster, and go after it.
    paths = [r.path.split("?")[0] for r in double.requests]
    order = [
        p
        for p in paths
        if p.endswith(
            (
                "/secrets/scopes/create",
                "/secrets/put",
                "/clusters/create",
                "/clusters/permanent-delete",
                "/secrets/scopes/delete",
            )
        )
    ]
    assert [p.rsplit("/api/", 1)[1] for p in order] == [
        "2.0/secrets/scopes/create",
        "2.0/secrets/put",
        "2.1/clusters/create",
        "2.1/clusters/permanent-delete",
        "2.0/secrets/scopes/delete",
    ]
    assert double.databricks.secrets.events == [
        ("created", scope),
        ("put", f"{scope}/AZURE_OPENAI_API_KEY"),
        ("deleted", scope),
    ]
    assert double.databricks.secrets.scopes() == {} and double.databricks.live_clusters() == []
    result.stdout.fnmatch_lines(
        [f"*creating secret scope {scope} (holding AZURE_OPENAI_API_KEY)", f"*removing secret scope {scope}"]
    )

    # The key's value reached the double in put_secret's body, and no cassette.
    cassettes = pytester.path / "cassettes"
    assert SECRET_API_KEY.encode() not in all_bytes(cassettes)
    interactions, metadata = session_cassette(pytester.path, "databricks_cluster")
    [put] = [r for r, _ in interactions if r.path.endswith("/secrets/put")]
    assert b'"string_value":"<redacted>"' in put.body
    assert metadata["environment"] == {
        "scope": scope,
        "variables": {
            "AZURE_OPENAI_ENDPOINT": "https://resource.openai.azure.com",
            "AZURE_OPENAI_API_VERSION": "2024-05-01-preview",
        },
        "secrets": ["AZURE_OPENAI_API_KEY"],
    }
    assert scan_paths([cassettes]) == []

    # Offline, the same requests are replayed, and said to be.
    go_offline(double, monkeypatch)
    monkeypatch.delenv("EXPECTED_ENDPOINT")
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    replayed = pytester.runpytest()
    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines(
        [
            f"*replaying the recorded creation of secret scope {scope}*",
            "*replaying the recorded creation of cluster pytest-llmops-*",
            f"*replaying the recorded removal of secret scope {scope}",
        ]
    )


def lab_cell_module() -> str:
    """The lab's step-5 module, as shipped (the cluster cell verbatim)."""
    return (REPO / "examples" / "lab" / "test_4_log_llm.py").read_text()


def test_an_attached_cluster_without_the_variables_fails_saying_what_to_set(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    cluster_id = make_cluster(workspace_double)  # its owner set no environment variables
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", cluster_id)
    pytester.makepyfile(test_4_log_llm=lab_cell_module())
    result = pytester.runpytest("--llmops-live", "-k", "on_the_cluster")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*ClusterEnvironmentMissing: Cluster {cluster_id} has no AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY "
            "in its environment*",
            "*Environment variables (the API's spark_env_vars), e.g. AZURE_OPENAI_ENDPOINT=<azure_openai_endpoint> "
            "AZURE_OPENAI_API_KEY={{secrets/<scope>/AZURE_OPENAI_API_KEY}}*databricks secrets create-scope*"
            "--llmops-provision*",
        ]
    )
    assert "KeyError" not in result.stdout.str()
    assert workspace_double.databricks.commands == {}  # nothing ran on the cluster


def test_an_attached_cluster_with_the_variables_runs_the_labs_cell(
    pytester: pytest.Pytester, workspace_double, monkeypatch, tmp_path
):
    workspace_double.databricks.command_env = {  # the runtime's own MLflow store
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'cluster.db'}",
        "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
    }
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", make_cluster(workspace_double, openai_env=True))
    pytester.makepyfile(test_4_log_llm=lab_cell_module())
    pytester.runpytest("--llmops-live", "-k", "on_the_cluster").assert_outcomes(passed=1)
    [chat] = workspace_double.requests_to(r"/chat/completions$")
    assert chat.headers["api-key"] == workspace_double.openai.api_key  # the secret, resolved


def test_commands_see_exactly_the_clusters_environment(workspace_double, monkeypatch):
    double = workspace_double
    # The double's own process has Azure OpenAI variables: none of them may reach a command.
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "from-the-doubles-process")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9/")
    workspace = client(double)
    workspace.secrets.create_scope("team")
    workspace.secrets.put_secret("team", "token", string_value="first value")
    cluster_id = (
        workspace.clusters.create(
            cluster_name="env",
            spark_version=support.ML_RUNTIME,
            node_type_id="Standard_D4ds_v5",
            num_workers=0,
            spark_env_vars={
                "STAGE": "test",
                "TOKEN": "{{secrets/team/token}}",
                "URL": "https://x/{{secrets/team/token}}",
            },
        )
        .result()
        .cluster_id
    )
    context = workspace.command_execution.create_and_wait(cluster_id=cluster_id).id

    def run(code: str) -> str:
        return workspace.command_execution.execute_and_wait(
            cluster_id=cluster_id, context_id=context, command=code
        ).results.data

    names = set(run("import os; print(' '.join(sorted(os.environ)))").split())
    assert {"STAGE", "TOKEN", "URL"} <= names and not {n for n in names if n.startswith("AZURE_")}
    assert (
        run("import os; print(os.environ['TOKEN'], os.environ['URL'])") == "first value https://x/first value"
    )
    # The API shows the reference, never the value; a new value is fetched at the next start.
    assert workspace.clusters.get(cluster_id).spark_env_vars["TOKEN"] == "{{secrets/team/token}}"
    workspace.secrets.put_secret("team", "token", string_value="second value")
    assert run("import os; print(os.environ['TOKEN'])") == "first value"
    workspace.command_execution.destroy(cluster_id=cluster_id, context_id=context)


def test_a_reference_to_a_missing_secret_stops_the_cluster(workspace_double):
    from databricks.sdk.errors import OperationFailed

    workspace = client(workspace_double)
    with pytest.raises(OperationFailed, match="Secret does not exist with scope: nowhere and key: k"):
        workspace.clusters.create(
            cluster_name="env",
            spark_version=support.ML_RUNTIME,
            node_type_id="Standard_D4ds_v5",
            num_workers=0,
            spark_env_vars={"K": "{{secrets/nowhere/k}}"},
        ).result()
    [cluster] = workspace_double.databricks.live_clusters()
    assert cluster["termination_reason"]["code"] == "SECRET_RESOLUTION_ERROR"


def test_a_cluster_that_cannot_start_removes_its_secret_scope(pytester: pytest.Pytester, workspace_double):
    workspace_double.databricks.fail_create_with_quota = True
    pytester.makepyfile(test_env=ENVIRONMENT)
    result = pytester.runpytest("--llmops-live", "--llmops-provision")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*QuotaExceeded: Cluster * could not start*"])
    created, deleted = (e for e in workspace_double.databricks.secrets.events if e[0] != "put")
    assert created[0] == "created" and deleted == ("deleted", created[1])
    assert workspace_double.databricks.secrets.scopes() == {}
    assert workspace_double.databricks.live_clusters() == []


def test_sweep_deletes_due_secret_scopes_of_ours_only(workspace_double, capsys):
    workspace = client(workspace_double)
    expired = "pytest-llmops-0123456789ab-removeafter-2000010100"
    fresh = f"pytest-llmops-0123456789ab-removeafter-{remove_after()}"
    for scope in (expired, fresh, "team-secrets", "pytest-llmops-by-hand"):
        workspace.secrets.create_scope(scope)

    assert cli.main(["sweep", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        f"would delete Databricks secret scope {expired}, DATABRICKS: RemoveAfter 2000010100, session 0123456789ab"
        in out
    )
    assert f"kept Databricks secret scope {fresh}" in out
    assert cli.main(["sweep"]) == 0
    assert f"deleted Databricks secret scope {expired}" in capsys.readouterr().out
    assert set(workspace_double.databricks.secrets.scopes()) == {
        fresh,
        "team-secrets",
        "pytest-llmops-by-hand",
    }
