"""The provisioned cluster across processes: Ctrl-C during the tests and while waiting for
the cluster, one cluster for two xdist workers, and recorded create-and-wait cycles
replayed offline without waiting."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from pytest_llmops.secrets.scan import scan_paths
from tests import sleeps
from tests import test_databricks_support as support
from tests.conftest import SECRET_DATABRICKS_TOKEN, all_bytes
from tests.test_databricks_support import calls, go_offline, session_cassette, start_pytest, wait_for

workspace_double = support.workspace_double
WAITERS = ("databricks.", "pytest_llmops.")
"""The modules whose sleeps are waits for the service: the SDK's waiters and retries, the
plugin's readiness checks."""

SLOW = """
import pathlib
import time

def test_slow(databricks_cluster):
    pathlib.Path("ready").write_text(databricks_cluster.cluster_id)
    time.sleep(120)
"""


def interrupt(process: subprocess.Popen[str]) -> str:
    try:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    return output


def test_ctrl_c_during_the_tests_removes_the_cluster(pytester: pytest.Pytester, workspace_double):
    pytester.makepyfile(test_slow=SLOW)
    process = start_pytest(pytester.path, "--llmops-live", "--llmops-provision")
    ready = pytester.path / "ready"
    wait_for(lambda: ready.exists() or process.poll() is not None)
    assert process.poll() is None, process.communicate()[0]
    cluster_id = ready.read_text()
    assert workspace_double.databricks.cluster_state(cluster_id) == "RUNNING"
    output = interrupt(process)
    assert "KeyboardInterrupt" in output
    assert calls(workspace_double, "permanent-delete") == [cluster_id], output
    assert workspace_double.databricks.live_clusters() == []
    [(created, scope), *_] = workspace_double.databricks.secrets.events  # its secret scope went too
    assert created == "created" and workspace_double.databricks.secrets.events[-1] == ("deleted", scope)


def test_ctrl_c_while_waiting_for_the_cluster_removes_it(pytester: pytest.Pytester, workspace_double):
    workspace_double.databricks.transition_seconds = 600  # it never starts by itself
    pytester.makepyfile(test_slow=SLOW)
    process = start_pytest(pytester.path, "--llmops-live", "--llmops-provision")
    wait_for(lambda: bool(workspace_double.requests_to(r"/clusters/get$")) or process.poll() is not None)
    assert process.poll() is None, process.communicate()[0]
    output = interrupt(process)
    assert "KeyboardInterrupt" in output
    assert "interrupted: removing it" in output
    assert not (pytester.path / "ready").exists()
    [cluster] = workspace_double.databricks.clusters.values()
    assert cluster["permanently_deleted"] is True, output
    assert workspace_double.databricks.secrets.scopes() == {}, output  # created before the cluster, removed


WORKERS = """
import pathlib
import time

import pytest

@pytest.mark.llmops_cassette
@pytest.mark.parametrize("seconds", [0.0, 0.2, 0.5, 1.0])
def test_late(databricks_workspace, databricks_cluster, seconds, worker_id):
    time.sleep(seconds)
    details = databricks_workspace.clusters.get(databricks_cluster.cluster_id)
    assert details.state.value == "RUNNING"  # not removed while a worker still runs tests
    pathlib.Path(f"seen-{worker_id}-{seconds}").write_text(databricks_cluster.cluster_id)
"""


def test_two_workers_share_one_cluster_removed_after_the_last(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    pytester.makepyfile(test_workers=WORKERS)
    result = pytester.runpytest_subprocess("-n", "2", "--llmops-record", "--llmops-provision")
    result.assert_outcomes(passed=4)
    assert len(workspace_double.requests_to(r"/clusters/create$", "POST")) == 1
    seen = {path.name.split("-")[1]: path.read_text() for path in pytester.path.glob("seen-*")}
    assert set(seen) == {"gw0", "gw1"}
    [cluster_id] = set(seen.values())
    requests = workspace_double.requests
    last_get = max(i for i, r in enumerate(requests) if r.path.startswith("/api/2.1/clusters/get"))
    removal = next(i for i, r in enumerate(requests) if r.path.endswith("/clusters/permanent-delete"))
    assert removal > last_get
    assert workspace_double.databricks.live_clusters() == []
    # One secret scope for both workers, removed after the cluster.
    assert [verb for verb, _ in workspace_double.databricks.secrets.events] == ["created", "put", "deleted"]
    _, metadata = session_cassette(pytester.path, "databricks_cluster")
    assert metadata["action"] == "provision" and metadata["cluster"]["cluster_id"] == cluster_id

    go_offline(workspace_double, monkeypatch)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=4)


def test_two_workers_attach_once_and_start_a_terminated_cluster_once(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    workspace_double.databricks.transition_seconds = 0.5
    cluster_id = support.make_cluster(workspace_double, terminated=True)
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", cluster_id)
    pytester.makepyfile(test_workers=WORKERS)
    result = pytester.runpytest_subprocess("-n", "2", "--llmops-record")
    result.assert_outcomes(passed=4)
    assert calls(workspace_double, "start") == [cluster_id]
    assert calls(workspace_double, "permanent-delete") == []
    assert workspace_double.databricks.cluster_state(cluster_id) == "RUNNING"
    _, metadata = session_cassette(pytester.path, "databricks_cluster")
    assert metadata["action"] == "attach" and metadata["cluster"]["started"] is True


TIMED = """
import pathlib
import time

def test_timed(request, databricks_workspace):
    started = time.perf_counter()
    cluster = request.getfixturevalue("databricks_cluster")
    pathlib.Path("setup_seconds").write_text(str(time.perf_counter() - started))
"""


def states(interactions: list[tuple[object, dict[str, object]]], path: str) -> list[object]:
    import json

    found = []
    for request, response in interactions:
        if getattr(request, "path", "").endswith(path):
            body = json.loads(response["body"]["string"])  # type: ignore[index]
            found.append(body.get("state") or response["status"]["code"])  # type: ignore[index]
    return found


def test_a_recorded_create_and_wait_replays_in_well_under_a_second(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    workspace_double.databricks.transition_seconds = 2.5  # the waiter sees PENDING, PENDING, RUNNING
    workspace_double.databricks.throttle = {"/clusters/spark-versions": 1}  # an HTTP retry after 429
    pytester.makepyfile(test_timed=TIMED)
    recording = pytester.runpytest("--llmops-record", "--llmops-provision")
    recording.assert_outcomes(passed=1)
    recording.stdout.fnmatch_lines([
        "*databricks_cluster: cluster * PENDING after 0 s: Finding instances for new nodes*",
        "*databricks_cluster: cluster * RUNNING after * s",
    ])
    recorded = float((pytester.path / "setup_seconds").read_text())
    interactions, _ = session_cassette(pytester.path, "databricks_cluster")
    assert states(interactions, "/clusters/get") == ["PENDING", "PENDING", "RUNNING"]
    assert states(interactions, "/clusters/spark-versions")[0] == 429

    go_offline(workspace_double, monkeypatch)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    replayed = float((pytester.path / "setup_seconds").read_text())
    print(f"create-and-wait: recorded in {recorded:.2f} s, replayed in {replayed:.3f} s")
    assert recorded > 2.5
    assert replayed < 0.5


CYCLE = """
def test_cycle(databricks_cluster, databricks_command):
    assert databricks_cluster.provisioned
    assert databricks_command("print(sum(range(10)))") == "45"
"""


def test_a_full_provision_command_teardown_cycle_replays_offline(
    pytester: pytest.Pytester, workspace_double, monkeypatch
):
    workspace_double.databricks.transition_seconds = 1.5
    pytester.makeconftest(sleeps.CONFTEST)
    pytester.makepyfile(test_cycle=CYCLE)
    pytester.runpytest("--llmops-record", "--llmops-provision").assert_outcomes(passed=1)
    # The SDK's waiters waited for the cluster's 1.5 s transitions while recording...
    assert sum(seconds for seconds, _ in sleeps.slept(pytester.path, *WAITERS)) > 0
    assert workspace_double.databricks.live_clusters() == []
    assert workspace_double.databricks.live_contexts() == []
    cassettes = pytester.path / "cassettes"
    assert scan_paths([cassettes]) == []
    assert SECRET_DATABRICKS_TOKEN.encode() not in all_bytes(cassettes)

    go_offline(workspace_double, monkeypatch)
    pytester.runpytest().assert_outcomes(passed=1)
    # ...and the replay, in process and as a new `pytest` process, waited for nothing.
    assert sleeps.slept(pytester.path, *WAITERS) == []
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=pytester.path, capture_output=True, text=True, check=False,
    )
    assert process.returncode == 0, process.stdout
    assert sleeps.slept(pytester.path, *WAITERS) == []


def test_the_replay_clock_covers_the_sdk_waiters_and_http_retries():
    import databricks.sdk.service.compute as compute
    from databricks.sdk.clock import RealClock

    from pytest_llmops.cassettes.clock import no_sleep

    with no_sleep():
        started = time.perf_counter()
        compute.time.sleep(5)  # wait_get_cluster_running, the command waiters
        RealClock().sleep(5)  # databricks.sdk.retries (429, 503, connection retries)
        assert time.perf_counter() - started < 0.5
    assert compute.time is time  # restored: nothing else loses its clock
