"""A tracking store that cannot be used costs one clear message, not minutes per test.

- A tracking URI MLflow cannot use is a usage error at start-up, in one line (issue 14.7).
- A store that fails when it is used (an unreachable server; a read-only, corrupt, locked
  or full SQLite store) is found once, remembered for the session, and said once, naming
  the store and the fix; the tests keep their own outcomes (they run untracked) and the
  summary is printed (issue 18.3). ``--llmops-strict`` makes tracked tests fail instead.

Every store here is real: MLflow's SQLite store made unusable the way it happens to users
(the file made immutable, garbage bytes, another process holding a write transaction, a
file-size limit), and for the server, loopback addresses nothing or something that is not
MLflow listens on.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmops.tracking import bootstrap
from tests.test_tracking import client_for, run_pytest, runs_by_name, session_runs

pytest_plugins = ["pytester"]

ONE_TEST = "def test_plain():\n    pass\n"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("htp://127.0.0.1:5000", "has a scheme MLflow has no tracking store for ('htp')"),
        ("localhost:5000", "Did you mean http://localhost:5000?"),
        ("http://", "names no host. Write it as http://HOST:PORT"),
        ("http://[::1", "is not a valid URI"),
        ("http://127.0.0.1:99999", "is not a valid URI (Port out of range"),
        ("sqlite://db-host/mlflow.db", "names a host, which SQLite has not"),
        ("sqlite://", "is an in-memory SQLite database"),
        ("./mlruns", "is MLflow's file store (a folder), which MLflow refuses unless MLFLOW_ALLOW_FILE_STORE=true"),
        ("mysql://user@db-host/mlflow", "needs the database driver 'MySQLdb', which is not installed. Install it (`pip install mysqlclient`)"),
        ("databricks-uc", "is a Unity Catalog URI: a model registry, not a tracking store. Use `databricks`."),
    ],
)
def test_a_tracking_uri_mlflow_cannot_use_is_a_usage_error_at_start_up(
    pytester: pytest.Pytester, uri: str, expected: str
) -> None:
    """Checked in ``pytest_configure``, before any test and without importing MLflow: the
    session has no marked test at all, and still stops (the URI is wrong, whoever uses it)."""
    pytester.makepyfile(test_plain=ONE_TEST)
    result = pytester.runpytest(f"--llmops-tracking-uri={uri}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    (line,) = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert line.startswith(f"ERROR: The MLflow tracking URI {uri!r} (--llmops-tracking-uri) "), line
    assert expected in line, line
    assert line.endswith("Or unset it to use the embedded store .llmops/mlflow.db."), line
    assert "Traceback" not in result.stderr.str()


def test_the_usage_error_names_where_the_uri_was_set(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_plain=ONE_TEST)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "htp://127.0.0.1:5000")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: The MLflow tracking URI 'htp://127.0.0.1:5000' (MLFLOW_TRACKING_URI) has*"])
    pytester.makeini("[pytest]\nllmops_tracking_uri = sqlite://\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: The MLflow tracking URI 'sqlite://' (the llmops_tracking_uri ini option) is*"])


@pytest.mark.parametrize(
    "uri", ["sqlite:///mlflow.db", "sqlite:////tmp/x/mlflow.db", "http://127.0.0.1:5000", "https://mlflow.invalid",
            "databricks", "databricks://dev", "file:///tmp/mlruns"],
)
def test_tracking_uris_mlflow_can_use_pass_the_check(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, uri: str
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the file store, when the user allows it
    pytester.makepyfile(test_plain=ONE_TEST)
    result = pytester.runpytest(f"--llmops-tracking-uri={uri}")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()


# -- a store that fails when used --------------------------------------------------------

MARKED = """
import pytest

@pytest.mark.llmops
@pytest.mark.parametrize("i", range(3))
def test_marked(i):
    assert i < 2, "the test's own failure"
"""

OUTCOMES = "1 failed, 2 passed"
"""What the three tests of MARKED do on their own: the store must not change it."""


def write_marked(root: Path) -> None:
    (root / "test_marked.py").write_text(MARKED, encoding="utf-8")


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow SQLite store (copied by the tests that need one)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    from mlflow import MlflowClient

    with bootstrap.quiet_mlflow():
        MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


def copy_store(template: Path, root: Path) -> Path:
    """The template as ``root``'s embedded store (SQLite's own copy: consistent)."""
    target = root / ".llmops" / "mlflow.db"
    target.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(template)) as source, contextlib.closing(
        sqlite3.connect(target)
    ) as copy:
        source.backup(copy)
    return target


def one_message(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The session's outcome is the tests' own, its summary is printed with one line about
    the store (containing each of ``expected``), and no traceback is shown."""
    out = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out[-4000:]
    assert OUTCOMES in result.stdout, out[-4000:]
    assert "Traceback" not in out and "sqlalchemy" not in out.lower() and "INTERNALERROR" not in out, out[-6000:]
    section = result.stdout.split("llmops: MLflow runs", 1)[1].split("short test summary info", 1)[0]
    store_lines = [line for line in section.splitlines() if "The MLflow tracking store" in line]
    assert len(store_lines) == 1, section
    for text in expected:
        assert text in store_lines[0], store_lines[0]
    assert "warning: 3 tracked tests ran without tracking" in section, section
    return store_lines[0]


def test_a_corrupt_store(tmp_path: Path) -> None:
    write_marked(tmp_path)
    store = tmp_path / ".llmops" / "mlflow.db"
    store.parent.mkdir()
    store.write_bytes(b"this is not a database, it was overwritten" * 500)
    line = one_message(run_pytest(tmp_path, "test_marked.py"),
                       f"{store} is not a usable SQLite database (DatabaseError: file is not a database)",
                       f"Move it away (`mv {store} {store}.corrupt`)")
    assert line.startswith("warning: ")


def test_a_store_cut_short(tmp_path: Path, migrated_store: Path) -> None:
    """A store whose pages were lost (a copy cut in the middle): SQLite calls it malformed."""
    write_marked(tmp_path)
    store = copy_store(migrated_store, tmp_path)
    data = store.read_bytes()
    store.write_bytes(data[:4096] + b"\0" * 4096 + data[8192 : len(data) // 2])
    one_message(run_pytest(tmp_path, "test_marked.py"), "is not a usable SQLite database", "malformed")


def test_a_read_only_store(tmp_path: Path, migrated_store: Path) -> None:
    """The store file cannot be written. The suite runs as root, for whom permissions do
    not count: the file is made immutable (``chattr +i``) instead, which stops root too."""
    write_marked(tmp_path)
    store = copy_store(migrated_store, tmp_path)
    with read_only(store):
        result = run_pytest(tmp_path, "test_marked.py")
    one_message(result, f"{store} is read-only", "Make the file and its folder writable")


def test_a_store_locked_by_another_process(tmp_path: Path, migrated_store: Path) -> None:
    """Another process holds a write transaction (BEGIN IMMEDIATE) for the whole session."""
    write_marked(tmp_path)
    store = copy_store(migrated_store, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(store)!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        result = run_pytest(tmp_path, "test_marked.py")
    finally:
        holder.communicate("")  # its input ends: it exits, releasing the lock
    one_message(result, f"{store} is locked by another process", "database is locked", "End that process")


def test_a_full_store(tmp_path: Path, migrated_store: Path) -> None:
    """"Full" is simulated with a file-size limit (RLIMIT_FSIZE) of 8 KiB on the pytest
    process: no file of the store can grow (the database, its write-ahead log, its 32 KiB
    shared-memory index), as on a full disk. SQLite says "disk I/O error" (Python ignores
    the SIGXFSZ signal that comes with it); the plugin's own small state files still fit."""
    write_marked(tmp_path)
    store = copy_store(migrated_store, tmp_path)
    limit = 8192

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    result = run_pytest(tmp_path, "test_marked.py", preexec_fn=limited)
    one_message(result, f"{store} cannot be written", "disk I/O error", "its disk is full", "df -h")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


FILLS_AT_THE_END = """
import resource

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    # The disk fills up as the session ends: from now on no file can grow.
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
"""


def test_a_disk_that_fills_as_the_session_ends(tmp_path: Path) -> None:
    """Simulated with RLIMIT_FSIZE = 0 from the first ``pytest_sessionfinish`` hook on: the
    session run cannot be ended, nor the report written; the summary is still printed, with
    one message each, and the tests' runs (ended when their outcome was known) are all
    there. The session run stays RUNNING until a later session, finding its process gone,
    closes it as KILLED."""
    write_marked(tmp_path)
    (tmp_path / "conftest.py").write_text(FILLS_AT_THE_END, encoding="utf-8")
    result = run_pytest(tmp_path, "--llmops-report=report.json", "test_marked.py")
    out = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out[-4000:]
    assert OUTCOMES in result.stdout and "INTERNALERROR" not in out and "Traceback" not in out, out[-6000:]
    section = result.stdout.split("llmops: MLflow runs", 1)[1].split("short test summary info", 1)[0]
    assert "3 tests (1 failed, 2 passed)" in section, section
    (store_line,) = [line for line in section.splitlines() if "The MLflow tracking store" in line]
    assert "cannot be written" in store_line and "its disk is full" in store_line, store_line
    assert "warning: pytest-llmops could not write the report report.json" in section, section
    assert not (tmp_path / "report.json").exists() or not (tmp_path / "report.json").read_text()

    client = client_for(tmp_path)
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    (first,) = session_runs(client, experiment_id)
    assert first.info.status == "RUNNING"
    runs = runs_by_name(client, experiment_id)
    ended = {name: (run.info.status, run.data.tags["llmops.outcome"])
             for name, run in runs.items() if name.startswith("test_marked.py")}
    assert ended == {
        "test_marked.py::test_marked[0]": ("FINISHED", "passed"),
        "test_marked.py::test_marked[1]": ("FINISHED", "passed"),
        "test_marked.py::test_marked[2]": ("FAILED", "failed"),
    }

    (tmp_path / "conftest.py").unlink()  # space again
    later = run_pytest(tmp_path, "-k", "test_marked and 0", "test_marked.py")
    assert later.returncode == 0, later.stdout + later.stderr
    client = client_for(tmp_path)
    closed = client.get_run(first.info.run_id)
    assert closed.info.status == "KILLED"
    (second,) = [r for r in session_runs(client, experiment_id) if r.info.run_id != first.info.run_id]
    assert closed.data.tags["llmops.closed_by"] == second.data.tags["llmops.session_id"]
    assert second.info.status == "FINISHED"


class ClosingServer:
    """Loopback TCP server that accepts connections and closes them at once (not an HTTP
    server, let alone MLflow), counting them."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.socket.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_tracking_server_that_does_not_answer_is_tried_once(tmp_path: Path, workers: int) -> None:
    """MLflow retries such a server for ~4 minutes per call; the session asks once, in one
    process (xdist workers share what the first found), and goes on untracked. The
    subprocess timeout (120 s) is a guard: the old code took ~248 s per marked test."""
    write_marked(tmp_path)
    server = ClosingServer()
    try:
        xdist = ["-n", str(workers)] if workers else []
        uri = f"http://127.0.0.1:{server.port}"
        result = run_pytest(tmp_path, *xdist, f"--llmops-tracking-uri={uri}", "test_marked.py", timeout=120)
    finally:
        server.close()
    one_message(result, f"The MLflow tracking store {uri} does not answer", "Start the tracking server")
    assert server.connections == 1


def test_a_refused_tracking_server(tmp_path: Path) -> None:
    """The issue's own example: nothing listens on 127.0.0.1:9 (discard)."""
    write_marked(tmp_path)
    result = run_pytest(tmp_path, "--llmops-tracking-uri=http://127.0.0.1:9", "test_marked.py", timeout=120)
    one_message(result, "http://127.0.0.1:9 does not answer (ConnectionRefusedError: [Errno 111] Connection refused)")


NEEDS_ITS_RUN = """
import pytest

@pytest.mark.llmops
def test_only_marked():
    pass

@pytest.mark.llmops
def test_uses_its_traces(llmops_traces):
    assert len(llmops_traces) == 0

def test_uses_its_run(llmops_run):
    pass
"""


@pytest.mark.parametrize("strict", [False, True])
def test_tests_that_need_their_run_fail_with_the_one_line(tmp_path: Path, strict: bool) -> None:
    """A test that uses its run or traces cannot run untracked: it fails with the
    TrackingError in one line. Under ``--llmops-strict`` every tracked test does."""
    (tmp_path / "test_needs.py").write_text(NEEDS_ITS_RUN, encoding="utf-8")
    store = tmp_path / ".llmops" / "mlflow.db"
    store.parent.mkdir()
    store.write_bytes(b"garbage" * 1000)
    result = run_pytest(tmp_path, "-rA", *(["--llmops-strict"] if strict else []), "test_needs.py")
    out = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert ("3 errors" if strict else "1 passed, 2 errors") in result.stdout, out[-4000:]
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR test_needs.py::")]
    assert len(errors) == (3 if strict else 2), result.stdout
    assert all(" - TrackingError: The MLflow" in line for line in errors), errors
    message = f"TrackingError: The MLflow tracking store {store} is not a usable SQLite database"
    # Each error's report, in one line (the short summary repeats it in full when CI is set:
    # pytest truncates those lines only on a terminal, so count in the reports' section).
    reports = result.stdout.split("short test summary info", 1)[0]
    assert reports.count(message) == len(errors), result.stdout
    if not strict:
        assert "PASSED test_needs.py::test_only_marked" in result.stdout
