"""The trace-writing helper process, against real SQLite stores: what it writes is what the
tests' process would have written, ``flush`` means written, and nothing is lost when the
helper cannot start, dies, or its parent dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_llmops.tracking import bootstrap, offload
from pytest_llmops.tracking import uri as tracking_uri
from pytest_llmops.tracking.sqlruns import RunFinish
from pytest_llmops.tracking.writer import StoreWriter

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def plugin_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the plugin sets before MLflow traces anything (``bootstrap.prepare_environment``)."""
    environment: dict[str, str] = {}
    bootstrap.prepare_environment(environment)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)


def new_store(path: Path) -> tuple[str, Any, str]:
    """A migrated SQLite store, its client, and an experiment in it."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{path}"
    with bootstrap.quiet_mlflow():
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
        bootstrap.tune_sqlite(client, uri)
        experiment_id = client.create_experiment("e", artifact_location=(path.parent / "artifacts").as_uri())
    return uri, client, str(experiment_id)


def make_traces(uri: str, run_id: str, count: int) -> list[Any]:
    """``count`` finished traces linked to ``run_id``, as marked tests leave them (taken by
    the plugin's collector, never exported by MLflow)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    from pytest_llmops.tracking import runs
    from pytest_llmops.tracking.traces import Autolog, Collector, capture

    collector = Collector(run_id, "tests/test_x.py::test_one")
    previous = utils._tracking_uri
    mlflow.set_tracking_uri(uri)
    runs.activate(mlflow.MlflowClient(uri).get_run(run_id))  # the test's run, as the plugin has it
    try:
        with capture(collector, False, Autolog()):
            _spans(count)
    finally:
        runs.stop(run_id, "FINISHED")
        mlflow.set_tracking_uri(previous)
    assert len(collector.traces) == count
    return collector.traces


def _spans(count: int) -> None:
    import mlflow

    for i in range(count):
        with mlflow.start_span(f"chat {i}", span_type="CHAT_MODEL") as span:
            span.set_inputs({"messages": [{"role": "user", "content": f"Question {i}?"}]})
            span.set_attribute(
                "mlflow.chat.tokenUsage", {"input_tokens": 12, "output_tokens": i, "total_tokens": 12 + i}
            )
            with mlflow.start_span("tool", span_type="TOOL") as child:
                child.set_outputs({"ok": i})
            span.set_outputs({"choices": [{"message": {"content": f"Answer {i}"}}]})


def stored_traces(client: Any, experiment_id: str) -> dict[str, Any]:
    """Each stored trace, by its request preview, as a user reads it back."""
    found = {}
    for trace in client.search_traces(locations=[experiment_id], max_results=1000):
        info = trace.info
        found[info.request_preview] = {
            "tags": {k: v for k, v in info.tags.items() if k != "mlflow.artifactLocation"},
            "metadata": info.trace_metadata,
            "state": info.state,
            "token_usage": info.token_usage,
            "spans": [
                (s.name, s.span_type, s.inputs, s.outputs, s.parent_id is None) for s in trace.data.spans
            ],
        }
    return found


@pytest.fixture
def two_stores(tmp_path: Path) -> dict[str, tuple[str, Any, str]]:
    return {name: new_store(tmp_path / name / "mlflow.db") for name in ("inline", "helper")}


def started(writer: StoreWriter, timeout: float = 60) -> StoreWriter:
    """The writer once its helper is ready (it writes everything itself until then)."""
    writer._helper_process()
    deadline = time.monotonic() + timeout
    while writer._helper_process() is None:
        assert writer._helper is not None and time.monotonic() < deadline, "the helper did not start"
        time.sleep(0.05)
    return writer


def write(writer: StoreWriter, traces: list[Any], finishes: list[RunFinish] = ()) -> list[str]:  # type: ignore[assignment]
    for trace in traces:
        writer.log_trace(trace)
    for finish in finishes:
        writer.finish_run(finish)
    writer.flush()
    return writer.errors


def test_the_helper_writes_what_the_tests_process_writes(two_stores: dict[str, Any]) -> None:
    results = {}
    for name, (uri, client, experiment_id) in two_stores.items():
        run = client.create_run(experiment_id)
        traces = make_traces(uri, run.info.run_id, 30)
        finish = RunFinish(
            run.info.run_id, "FAILED", 1, {"p": "1"}, {"llmops.llm_calls": 30.0}, {"o": "failed"}
        )
        writer = started(StoreWriter(uri, offload=True)) if name == "helper" else StoreWriter(uri)
        assert write(writer, traces, [finish]) == []
        assert (writer._helper is not None) == (name == "helper")
        # flush returned: everything is in the store already
        results[name] = stored_traces(client, experiment_id)
        stored = client.get_run(run.info.run_id)
        assert (stored.info.status, stored.data.params, stored.data.tags["o"]) == (
            "FAILED",
            {"p": "1"},
            "failed",
        )
        assert writer.close() == []
    assert len(results["helper"]) == 30
    for preview, trace in results["helper"].items():
        inline = results["inline"][preview]
        trace["metadata"].pop("mlflow.sourceRun"), inline["metadata"].pop("mlflow.sourceRun")
        trace["tags"].pop("llmops.run_id"), inline["tags"].pop("llmops.run_id")
        # sizes differ by a byte when the two traces' timings have different digits
        sizes = [json.loads(t["metadata"].pop("mlflow.trace.sizeStats")) for t in (trace, inline)]
        assert sizes[0]["num_spans"] == sizes[1]["num_spans"] == 2
        trace["metadata"].pop("mlflow.trace.sizeBytes"), inline["metadata"].pop("mlflow.trace.sizeBytes")
        for key in set(trace["metadata"]) | set(inline["metadata"]):
            assert trace["metadata"].get(key) == inline["metadata"].get(key), key
        assert trace == inline


def test_errors_of_the_helper_reach_the_summary(tmp_path: Path) -> None:
    uri, client, experiment_id = new_store(tmp_path / "mlflow.db")
    run = client.create_run(experiment_id)
    writer = started(StoreWriter(uri, offload=True))
    errors = write(writer, [], [RunFinish("0" * 32, "FINISHED", 1, metrics={"m": 1.0})])
    assert writer._helper is not None
    assert len(errors) == 1 and f"could not write run {'0' * 32} to {uri}" in errors[0]
    assert "Run with id=" in errors[0]
    writer.close()
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


def test_a_helper_that_dies_gives_its_traces_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    uri, client, experiment_id = new_store(tmp_path / "mlflow.db")
    run = client.create_run(experiment_id)
    traces = make_traces(uri, run.info.run_id, 12)
    writer = started(StoreWriter(uri, offload=True))
    for trace in traces[:6]:
        writer.log_trace(trace)
    writer.finish_run(RunFinish(run.info.run_id, "FINISHED", 1, metrics={"m": 1.0}))
    helper = writer._helper
    assert helper is not None
    helper._process.kill()  # before it could acknowledge anything
    helper._process.wait()
    for trace in traces[6:]:
        writer.log_trace(trace)
    with caplog.at_level("WARNING", logger="pytest_llmops.tracking.writer"):
        writer.flush()
    assert "writing traces in this process from now on" in caplog.text
    assert "exit code -9" in caplog.text
    assert writer._helper is None
    assert len(client.search_traces(locations=[experiment_id], max_results=100)) == 12
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    writer.log_trace(make_traces(uri, run.info.run_id, 1)[0])  # later ones: written here
    assert writer.close() == []
    assert len(client.search_traces(locations=[experiment_id], max_results=100)) == 13


def test_a_helper_that_cannot_start_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    uri, client, experiment_id = new_store(tmp_path / "mlflow.db")
    run = client.create_run(experiment_id)
    real_popen = subprocess.Popen

    def broken_python(command: list[str], **kwargs: Any) -> Any:
        script = "import sys; sys.stderr.write('No module named pytest_llmops'); sys.exit(1)"
        return real_popen([sys.executable, "-c", script], **kwargs)

    monkeypatch.setattr(offload.subprocess, "Popen", broken_python)
    writer = StoreWriter(uri, offload=True)
    writer._helper_process()
    assert writer._helper is not None
    writer._helper._process.wait(60)
    with caplog.at_level("WARNING", logger="pytest_llmops.tracking.offload"):
        assert write(writer, make_traces(uri, run.info.run_id, 3)) == []
    assert "exit code 1" in caplog.text and "No module named pytest_llmops" in caplog.text
    assert len(client.search_traces(locations=[experiment_id], max_results=100)) == 3
    assert writer.close() == []


def test_a_short_session_never_waits_for_the_helper(tmp_path: Path) -> None:
    """Until the helper has imported mlflow the tests' process writes everything itself, and
    a helper still starting at the end is stopped, not waited for."""
    uri, client, experiment_id = new_store(tmp_path / "mlflow.db")
    run = client.create_run(experiment_id)
    writer = StoreWriter(uri, offload=True)
    start = time.monotonic()
    assert write(writer, make_traces(uri, run.info.run_id, 2)) == []
    assert writer._helper is not None and not writer._helper.ready
    helper = writer._helper._process
    assert writer.close() == []
    assert time.monotonic() - start < 1.5, "waited for the helper"
    assert helper.poll() is not None
    assert len(client.search_traces(locations=[experiment_id], max_results=100)) == 2


HELPER_LIFE = """
import os, signal, time
import pytest
from pytest_llmops.tracking import hooks

@pytest.mark.llmops
def test_a_first():
    pass

def test_b_helper_ready():
    writer = hooks.get(pytest.llmops_config).writer
    writer._helper_process()
    while writer._helper_process() is None:
        assert writer._helper is not None
        time.sleep(0.05)

@pytest.mark.llmops
@pytest.mark.parametrize("i", range(5))
def test_traced(i):
    import mlflow
    with mlflow.start_span(f"call {{i}}", span_type="CHAT_MODEL") as span:
        span.set_inputs({{"i": i}})

@pytest.mark.llmops
def test_last():
    helper = hooks.get(pytest.llmops_config)._writer._helper
    with open("helper.pid", "w") as out:
        out.write(str(helper._process.pid))
    os.kill(os.getpid(), signal.{signal})
    time.sleep(5)
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_the_helper_finishes_its_work_when_the_session_is_interrupted_or_killed(
    tmp_path: Path, signal_name: str
) -> None:
    """Ctrl-C: the session ends normally (the helper ignores SIGINT, is flushed and closed).
    SIGKILL of pytest: the helper reads the end of its input, writes what it has, exits."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\ndef pytest_configure(config):\n    pytest.llmops_config = config\n",
        encoding="utf-8",
    )
    (tmp_path / "test_life.py").write_text(
        textwrap.dedent(HELPER_LIFE.format(signal=signal_name)), encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "MLFLOW_", "PYTEST_"))}
    env["LLMOPS_TRACE_PROCESS"] = "1"  # a helper although the session is short
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    expected = -signal.SIGKILL if signal_name == "SIGKILL" else pytest.ExitCode.INTERRUPTED
    assert result.returncode == expected, result.stdout + result.stderr
    pid = int((tmp_path / "helper.pid").read_text())
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the helper process outlived its session"

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri.embedded_uri(tmp_path))
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([experiment_id])}
    traced = [runs[f"test_life.py::test_traced[{i}]"] for i in range(5)]
    assert [r.info.status for r in traced] == ["FINISHED"] * 5
    assert all(r.data.metrics["llmops.llm_calls"] == 1.0 for r in traced)
    previews = {t.info.request_preview for t in client.search_traces(locations=[experiment_id])}
    assert previews == {json.dumps({"i": i}) for i in range(5)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
        return stat.read().split()[2] != "Z"


def test_who_uses_a_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite = "sqlite:////tmp/x/mlflow.db"
    many = offload.MIN_TESTS
    monkeypatch.delenv(offload.DISABLE_ENV, raising=False)
    monkeypatch.setattr(offload.os, "sched_getaffinity", lambda _pid: {0, 1})
    assert offload.wanted(sqlite, under_xdist=False, tracked_tests=many)
    assert not offload.wanted(sqlite, under_xdist=False, tracked_tests=many - 1)  # over before it starts
    assert not offload.wanted(sqlite, under_xdist=True, tracked_tests=many)  # the workers use the cores
    assert not offload.wanted("http://127.0.0.1:5000", under_xdist=False, tracked_tests=many)  # a server's work
    assert not offload.wanted("databricks", under_xdist=False, tracked_tests=many)
    monkeypatch.setenv(offload.DISABLE_ENV, "0")
    assert not offload.wanted(sqlite, under_xdist=False, tracked_tests=many)
    monkeypatch.setenv(offload.DISABLE_ENV, "1")
    assert offload.wanted(sqlite, under_xdist=False, tracked_tests=1)  # forced
    monkeypatch.delenv(offload.DISABLE_ENV)
    monkeypatch.setattr(offload.os, "sched_getaffinity", lambda _pid: {0})
    assert not offload.wanted(sqlite, under_xdist=False, tracked_tests=many)  # one core: nothing to gain


ASYNC_USER = """
import pytest

@pytest.mark.llmops
def test_traced(llmops_traces):
    import mlflow
    with mlflow.start_span("call", span_type="CHAT_MODEL") as span:
        span.set_inputs({"q": 1})
    assert len(llmops_traces) == 1
"""


def test_traces_are_captured_when_the_user_asked_for_asynchronous_trace_logging(tmp_path: Path) -> None:
    """MLflow then exports through a batch span processor, past the plugin's capture: the
    plugin turns that processor off (not the user's asynchronous export of other traces)."""
    (tmp_path / "test_async.py").write_text(ASYNC_USER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "MLFLOW_", "PYTEST_"))}
    env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "true"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri.embedded_uri(tmp_path))
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    (run,) = [r for r in client.search_runs([experiment_id]) if r.info.run_name.endswith("test_traced")]
    assert run.data.metrics["llmops.llm_calls"] == 1.0
    assert len(client.search_traces(locations=[experiment_id])) == 1


SHORT_SESSION = """
import os
from pathlib import Path

import pytest


@pytest.mark.llmops
@pytest.mark.parametrize("i", range(5))
def test_marked(i):
    pass


def test_zz_children_of_this_process():
    children = []
    for task in Path("/proc/self/task").iterdir():
        children += (task / "children").read_text().split()
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\\0", b" ").decode() for pid in children]
    print("CHILDREN", [c for c in commands if "pytest_llmops" in c])
"""


@pytest.mark.parametrize("forced", [False, True])
def test_a_short_session_starts_no_helper(tmp_path: Path, forced: bool) -> None:
    """The helper imports mlflow on the other core for ~2-3 s before it can take over: a
    session with fewer than ``offload.MIN_TESTS`` tracked tests never uses it, so it does
    not start it (``LLMOPS_TRACE_PROCESS=1`` does)."""
    (tmp_path / "test_short.py").write_text(SHORT_SESSION, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "MLFLOW_", "PYTEST_"))}
    if forced:
        env["LLMOPS_TRACE_PROCESS"] = "1"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line.partition("CHILDREN")[2] for line in result.stdout.splitlines() if "CHILDREN" in line]
    helpers = [c for c in line.split("'") if "-m pytest_llmops.tracking." in c]  # the helper, by any name
    assert len(helpers) == (1 if forced else 0), line
