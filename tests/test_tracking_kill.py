"""A killed session loses no passed test's run, and leaves no run RUNNING for good.

- A tracked test's run is FINISHED in the store before its xdist worker reports the test
  passed (checked from the controller, as each report arrives).
- SIGKILL of the controller under ``-n 4``: every test reported passed has its FINISHED
  run; the session's runs stay RUNNING until a later session, finding the killed process
  gone, closes them as KILLED.
- Whether a session's process is gone is told from its owner tag (host, pid, start time).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_llmops.tracking import orphans
from tests.test_tracking import (
    CLEAN_ENV_PREFIXES,
    children,
    client_for,
    run_pytest,
    runs_by_name,
    session_runs,
)

CONTROLLER_CHECKS = '''
import hashlib, json, os, sqlite3, time
from pathlib import Path

import pytest

STORE = Path(__file__).parent / ".llmops" / "mlflow.db"
FLAGS = Path(__file__).parent / "flags"


def _flag(nodeid):
    return FLAGS / hashlib.sha1(nodeid.encode()).hexdigest()


def pytest_runtest_logreport(report):
    """In the controller, as each test's call report arrives: what the store says of its run."""
    config = pytest.llmops_config
    if hasattr(config, "workerinput") or report.when != "call":
        return
    with sqlite3.connect(STORE) as db:
        row = db.execute(
            "SELECT r.status, o.value FROM runs r JOIN tags n ON n.run_uuid = r.run_uuid "
            "LEFT JOIN tags o ON o.run_uuid = r.run_uuid AND o.key = 'llmops.outcome' "
            "WHERE n.key = 'llmops.nodeid' AND n.value = ?", (report.nodeid,)).fetchone()
    with open(Path(__file__).parent / "seen.jsonl", "a") as out:
        out.write(json.dumps({"nodeid": report.nodeid, "outcome": report.outcome, "run": row}) + "\\n")
    FLAGS.mkdir(exist_ok=True)
    _flag(report.nodeid).touch()


def pytest_configure(config):
    pytest.llmops_config = config


@pytest.fixture
def held(request):
    """The test's teardown waits until the controller has looked at its call report."""
    yield
    deadline = time.monotonic() + 60
    while not _flag(request.node.nodeid).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
'''

HELD_TESTS = '''
import pytest

@pytest.mark.llmops
@pytest.mark.parametrize("i", range(6))
def test_held(held, i):
    assert i != 5
'''


def test_a_tests_run_is_in_the_store_before_its_worker_reports_it(tmp_path: Path) -> None:
    """The controller reads the store when each call report arrives, while the worker is
    kept in the test's teardown: the run is already ended, with the test's outcome."""
    import json

    (tmp_path / "conftest.py").write_text(CONTROLLER_CHECKS, encoding="utf-8")
    (tmp_path / "test_held.py").write_text(HELD_TESTS, encoding="utf-8")
    result = run_pytest(tmp_path, "-n", "2", "test_held.py")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "1 failed, 5 passed" in result.stdout, result.stdout
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len(seen) == 6
    for entry in seen:
        expected = ["FINISHED", "passed"] if entry["outcome"] == "passed" else ["FAILED", "failed"]
        assert entry["run"] == expected, entry


MANY = '''
import time

import pytest

@pytest.mark.llmops
@pytest.mark.parametrize("i", range(400))
def test_slow(i):
    time.sleep(0.02)
'''


def test_sigkill_under_xdist_loses_no_passed_run_and_a_later_session_closes_the_rest(tmp_path: Path) -> None:
    """The controller of ``-n 4`` is killed (SIGKILL, as by an out-of-memory killer or a
    cancelled CI job) once 60 tests were reported passed; its workers see it gone and exit."""
    (tmp_path / "test_many.py").write_text(MANY, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN_ENV_PREFIXES)}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-n", "4", "test_many.py"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    passed: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if " PASSED " in line:
                passed.append(line.split(" PASSED ", 1)[1].strip())
                if len(passed) == 60:
                    os.kill(process.pid, signal.SIGKILL)
                    break
        process.wait(timeout=60)
        _wait_for_group(process.pid)
    finally:
        if process.poll() is None or _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)  # cleanup only: the test has failed by then
    assert process.returncode == -signal.SIGKILL
    assert len(passed) == 60

    client = client_for(tmp_path)
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    (killed,) = session_runs(client, experiment_id)
    assert killed.info.status == "RUNNING"
    runs = runs_by_name(client, experiment_id)
    for nodeid in passed:
        run = runs[nodeid]
        assert (run.info.status, run.data.tags["llmops.outcome"]) == ("FINISHED", "passed"), nodeid

    later = run_pytest(tmp_path, "-k", "test_slow and 399", "test_many.py")
    assert later.returncode == 0, later.stdout + later.stderr
    client = client_for(tmp_path)
    closed = client.get_run(killed.info.run_id)
    assert closed.info.status == "KILLED"
    left = children(client, experiment_id, killed.info.run_id)
    # None is left RUNNING. A test a worker was running when the controller vanished may end
    # FAILED (the worker's exit interrupts it, and it ends its run itself); a passed one never.
    assert {run.info.status for run in left} <= {"FINISHED", "KILLED", "FAILED"}
    assert not [run for run in left if run.info.status == "FAILED" and run.data.tags.get("llmops.nodeid") in passed]
    for run in left:
        if run.info.status == "KILLED":
            assert run.data.tags["llmops.outcome"] == "interrupted", run.data.tags
    (later_session,) = [r for r in session_runs(client, experiment_id) if r.info.run_id != killed.info.run_id]
    assert later_session.info.status == "FINISHED"
    assert closed.data.tags["llmops.closed_by"] == later_session.data.tags["llmops.session_id"]


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_group(group: int, timeout: float = 60) -> None:
    """Wait until the killed controller's workers have exited on their own."""
    deadline = time.monotonic() + timeout
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_session_is_dead_when_its_process_is_gone_or_another_process_has_its_pid() -> None:
    me = orphans.owner()
    host, pid, start = me.split()
    assert (host, int(pid)) == (socket.gethostname(), os.getpid()) and start != "-"
    assert not orphans.is_dead(me)  # this process
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    assert orphans.is_dead(f"{host} {finished.stdout.strip()} {start}")  # gone
    assert orphans.is_dead(f"{host} {pid} {start.split(':')[0]}:1")  # same pid, another start: reused
    assert not orphans.is_dead(f"another-host {finished.stdout.strip()} {start}")  # cannot tell
    assert not orphans.is_dead(f"{host} {pid} -")  # no start time known: alive as far as can be told
    assert not orphans.is_dead("not an owner tag")


def test_a_running_session_is_left_alone(tmp_path: Path) -> None:
    """A session that is still running (another pytest of this host, here faked by a run
    whose owner is this very process) is not closed by a later one."""
    from mlflow import MlflowClient

    from pytest_llmops.tracking import bootstrap

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bootstrap.quiet_mlflow():
        client = MlflowClient(uri)
        experiment_id = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
        tags = {orphans.ROLE_TAG: orphans.SESSION_ROLE}
        alive = client.create_run(experiment_id, tags={**tags, orphans.OWNER_TAG: orphans.owner()})
        gone = client.create_run(experiment_id, tags={**tags, orphans.OWNER_TAG: _gone_owner()})
        test_run = client.create_run(experiment_id, tags={"mlflow.parentRunId": gone.info.run_id})
        assert orphans.close_dead_sessions(client, experiment_id, "later") == [gone.info.run_id]
        assert client.get_run(alive.info.run_id).info.status == "RUNNING"
        assert client.get_run(gone.info.run_id).info.status == "KILLED"
        assert client.get_run(test_run.info.run_id).info.status == "KILLED"
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # nothing else written
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone() == (1,)


def _gone_owner() -> str:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    return orphans.owner().replace(f" {os.getpid()} ", f" {finished.stdout.strip()} ")
