"""MLflow tracking of marked tests, black-box: pytest runs a project with pytester, then the
tests read the tracking store it left with ``MlflowClient``.

One session (run with ``-W error``) covers a marked test's run, params, tags, metrics and
traces, every outcome, the lab's cell verbatim, streamed calls, ``autolog=False``, another
experiment, an unmarked test, the terminal summary and the JSON report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmops.cassettes import paths
from tests import cassette_builders as cb

pytest_plugins = ["pytester"]

CLEAN_ENV_PREFIXES = ("LLMOPS_", "AZURE_", "MLFLOW_", "OPENAI_")

LAB = '''
import mlflow
import pytest


def ask(client, text):
    return client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])


@pytest.mark.llmops(params={"temperature": 0, "model": "gpt-4o"}, tags={"team": "evals"})
@pytest.mark.parametrize("animal", ["cat", "dog"])
@pytest.mark.parametrize("config", [{"verbose": True}], ids=["cfg"])
def test_joke(azure_openai_client, llmops_run, llmops_traces, request, animal, config):
    import mlflow.telemetry

    assert mlflow.active_run().info.run_id == llmops_run.info.run_id
    reply = ask(azure_openai_client, f"Tell me a joke about {animal}s.")
    assert reply.usage.total_tokens == 19
    mlflow.log_metric("joke_length", len(reply.choices[0].message.content))
    (trace,) = llmops_traces
    assert trace.info.tags["llmops.nodeid"] == request.node.nodeid
    assert trace.info.tags["llmops.run_id"] == llmops_run.info.run_id
    assert trace.info.trace_metadata["mlflow.sourceRun"] == llmops_run.info.run_id
    assert mlflow.telemetry.get_telemetry_client() is None


@pytest.mark.llmops
def test_stream(azure_openai_client, llmops_traces):
    stream = azure_openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Count to four."}], stream=True,
        stream_options={"include_usage": True})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.split() == ["one", "two", "three", "four"]
    (trace,) = llmops_traces
    assert trace.info.token_usage == {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16}


@pytest.mark.llmops
def test_thread(azure_openai_client, llmops_traces, request):
    import threading

    worker = threading.Thread(target=ask, args=(azure_openai_client, "Tell me a joke about ants."))
    worker.start()
    worker.join()
    (trace,) = llmops_traces  # no context variables in that thread: found through its run
    assert trace.info.tags["llmops.nodeid"] == request.node.nodeid


@pytest.mark.llmops
def test_lab_cell(azure_openai_client):
    client = azure_openai_client
    # The lab's notebook cell, verbatim:
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


@pytest.mark.llmops
def test_fails(azure_openai_client):
    ask(azure_openai_client, "Tell me a joke about fish.")
    assert False, "not funny"


@pytest.fixture
def broken():
    raise RuntimeError("setup broke")


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")


@pytest.mark.llmops
def test_setup_error(broken):
    pass


@pytest.mark.llmops
def test_teardown_error(broken_teardown):
    pass


@pytest.mark.llmops
def test_skipped():
    pytest.skip("not today")


@pytest.mark.llmops
@pytest.mark.xfail(reason="known bug", strict=True)
def test_xfailed():
    assert False


@pytest.mark.llmops(autolog=False, experiment="other-experiment", run_name="quiet")
def test_no_autolog(azure_openai_client, llmops_traces):
    ask(azure_openai_client, "Tell me a joke about birds.")
    assert len(llmops_traces) == 0


@pytest.mark.llmops_cassette
def test_unmarked(azure_openai_client):
    ask(azure_openai_client, "Tell me a joke about cows.")


def test_fixture_only(llmops_run, mlflow_experiment):
    assert mlflow.active_run().info.run_id == llmops_run.info.run_id
    assert llmops_run.info.experiment_id == mlflow_experiment.experiment_id
    assert mlflow_experiment.name == "pytest-llmops"
'''

SYSTEM = "Assistant is a large language model trained by OpenAI."
LAB_QUESTION = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Tell me a joke about animals."},
]


def write_lab_cassettes(root: Path, module: str = "test_lab") -> None:
    for animal in ("cat", "dog"):
        name = paths.test_name(f"{module}.py::test_joke[cfg-{animal}]")
        question = cb.question(f"Tell me a joke about {animal}s.")
        cb.write(root, module, name, cb.chat(question, f"A {animal} joke.", 12, 7))
    words = ["one", "two", "three", "four"]
    cb.write(root, module, "test_stream", cb.streamed_chat(cb.question("Count to four."), words))
    answer = cb.chat(LAB_QUESTION, "Why did the cat sit on the computer?", 25, 9)
    cb.write(root, module, "test_lab_cell", answer)
    jokes = {"test_fails": "fish", "test_no_autolog": "birds", "test_unmarked": "cows", "test_thread": "ants"}
    for name, animal in jokes.items():
        question = cb.question(f"Tell me a joke about {animal}.")
        cb.write(root, module, name, cb.chat(question, "Ha.", 10, 2))


def run_pytest(
    root: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """pytest on ``root`` in a subprocess (xdist and interrupts need one; it also keeps mlflow's
    process-wide state out of this one), with the environment of a new user (plus ``env``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN_ENV_PREFIXES)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=root, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        check=False, **popen,
    )


def client_for(root: Path) -> Any:
    """An ``MlflowClient`` on the embedded store a session left in ``root``."""
    from pytest_llmops.tracking.bootstrap import import_mlflow

    import_mlflow()  # quietly (SQLAlchemy's deprecation warning at import)
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{root / '.llmops' / 'mlflow.db'}")


def runs_by_name(client: Any, experiment_id: str) -> dict[str, Any]:
    runs = client.search_runs([experiment_id], max_results=1000)
    return {run.data.tags.get("llmops.nodeid", run.info.run_name): run for run in runs}


def session_runs(client: Any, experiment_id: str) -> list[Any]:
    return client.search_runs([experiment_id], filter_string="tags.`llmops.role` = 'session'")


def children(client: Any, experiment_id: str, parent_id: str) -> list[Any]:
    where = f"tags.mlflow.parentRunId = '{parent_id}'"
    return client.search_runs([experiment_id], filter_string=where, max_results=1000)


@pytest.fixture(scope="module")
def lab_session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The one session most tests below read: LAB under ``-W error``, with a JSON report."""
    root = tmp_path_factory.mktemp("lab")
    (root / "test_lab.py").write_text(LAB, encoding="utf-8")
    write_lab_cassettes(root)
    result = run_pytest(root, "-W", "error", "-rA", "--llmops-report=report.json", "test_lab.py")
    return {"root": root, "result": result}


def test_session_outcomes_are_those_of_the_tests(lab_session: dict[str, Any]) -> None:
    result = lab_session["result"]
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    for line in ("test_lab.py::test_fails - AssertionError", "ERROR test_lab.py::test_setup_error",
                 "ERROR test_lab.py::test_teardown_error", "XFAIL test_lab.py::test_xfailed"):
        assert line in out, out
    assert "9 passed" in out and "1 failed" in out and "1 skipped" in out and "2 errors" in out, out
    assert "Warning" not in out.split("short test summary info")[0].split("llmops: MLflow runs")[0], out


def test_a_marked_test_runs_in_its_own_run_under_the_session_run(lab_session: dict[str, Any]) -> None:
    root = lab_session["root"]
    client = client_for(root)
    experiment = client.get_experiment_by_name("pytest-llmops")
    assert experiment.artifact_location == (root / ".llmops" / "artifacts").resolve().as_uri()
    (parent,) = session_runs(client, experiment.experiment_id)
    assert parent.info.status == "FAILED"  # the session had failures
    runs = runs_by_name(client, experiment.experiment_id)
    run = runs["test_lab.py::test_joke[cfg-cat]"]
    assert run.info.run_name == "test_lab.py::test_joke[cfg-cat]"
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.params == {"animal": "cat", "temperature": "0", "model": "gpt-4o"}  # config: not a scalar
    tags = run.data.tags
    assert tags["llmops.outcome"] == "passed"
    assert tags["llmops.mode"] == "replay"
    assert tags["llmops.worker"] == "main"
    assert tags["llmops.cassette"] == "cassettes/test_lab/test_joke-cfg-cat.yaml"
    assert tags["team"] == "evals"
    assert tags["llmops.session_id"] == parent.data.tags["llmops.session_id"]
    assert "llmops.git_commit" not in tags  # not a git work tree
    metrics = run.data.metrics
    assert metrics["llmops.llm_calls"] == 1
    tokens = [metrics[f"llmops.{kind}_tokens"] for kind in ("prompt", "completion", "total")]
    assert tokens == [12, 7, 19]
    assert 0 < metrics["llmops.latency_ms_mean"] == metrics["llmops.latency_ms_max"] < 10_000
    assert 0 < metrics["llmops.duration_s"] < 60
    assert metrics["joke_length"] == len("A cat joke.")  # what the test logged itself
    assert not (root / "mlruns").exists()


def test_every_outcome_has_its_tag_and_status(lab_session: dict[str, Any]) -> None:
    client = client_for(lab_session["root"])
    runs = runs_by_name(client, client.get_experiment_by_name("pytest-llmops").experiment_id)
    expected = {
        "test_fails": ("failed", "FAILED"),
        "test_setup_error": ("error", "FAILED"),
        "test_teardown_error": ("error", "FAILED"),
        "test_skipped": ("skipped", "FINISHED"),
        "test_xfailed": ("xfailed", "FINISHED"),
        "test_stream": ("passed", "FINISHED"),
        "test_lab_cell": ("passed", "FINISHED"),
        "test_fixture_only": ("passed", "FINISHED"),  # llmops_run without the marker
    }
    for name, (outcome, status) in expected.items():
        run = runs[f"test_lab.py::{name}"]
        assert (run.data.tags["llmops.outcome"], run.info.status) == (outcome, status), name
    assert runs["test_lab.py::test_fails"].data.metrics["llmops.llm_calls"] == 1
    assert "test_lab.py::test_unmarked" not in runs


def test_the_lab_cell_runs_verbatim_nested_under_the_tests_run(lab_session: dict[str, Any]) -> None:
    client = client_for(lab_session["root"])
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    test_run = runs_by_name(client, experiment_id)["test_lab.py::test_lab_cell"]
    (lab_run,) = children(client, experiment_id, test_run.info.run_id)
    assert lab_run.info.status == "FINISHED"
    assert lab_run.data.params == {"completion_tokens": "9"}
    (trace,) = client.search_traces(locations=[experiment_id], run_id=lab_run.info.run_id)
    assert trace.info.tags["llmops.run_id"] == test_run.info.run_id
    assert trace.info.tags["llmops.nodeid"] == "test_lab.py::test_lab_cell"
    assert test_run.data.metrics["llmops.llm_calls"] == 1  # counted for the test
    assert test_run.data.metrics["llmops.total_tokens"] == 34


def test_traces_are_linked_to_their_run_and_tagged_with_the_test(lab_session: dict[str, Any]) -> None:
    client = client_for(lab_session["root"])
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    runs = runs_by_name(client, experiment_id)
    by_id = {run.info.run_id: run for run in runs.values()}
    traces = client.search_traces(locations=[experiment_id], max_results=100)
    nodeids = sorted(trace.info.tags["llmops.nodeid"] for trace in traces)
    assert nodeids == [
        "test_lab.py::test_fails",
        "test_lab.py::test_joke[cfg-cat]",
        "test_lab.py::test_joke[cfg-dog]",
        "test_lab.py::test_lab_cell",
        "test_lab.py::test_stream",
        "test_lab.py::test_thread",
    ]  # none for the unmarked test, none with autolog=False
    for trace in traces:
        run = runs[trace.info.tags["llmops.nodeid"]]
        assert trace.info.tags["llmops.run_id"] == run.info.run_id
        source = by_id[trace.info.trace_metadata["mlflow.sourceRun"]]
        assert run.info.run_id in (source.info.run_id, source.data.tags.get("mlflow.parentRunId"))
        assert len(trace.data.spans) == 1
    stream_run = runs["test_lab.py::test_stream"]
    assert stream_run.data.metrics["llmops.total_tokens"] == 16  # a streamed call's usage


def test_marker_experiment_run_name_and_autolog(lab_session: dict[str, Any]) -> None:
    client = client_for(lab_session["root"])
    other = client.get_experiment_by_name("other-experiment")
    (parent,) = session_runs(client, other.experiment_id)
    (run,) = [r for r in client.search_runs([other.experiment_id]) if r.info.run_id != parent.info.run_id]
    assert run.info.run_name == "quiet"
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.metrics["llmops.llm_calls"] == 0
    assert "llmops.latency_ms_mean" not in run.data.metrics
    assert client.search_traces(locations=[other.experiment_id]) == []


def test_terminal_summary_and_json_report(lab_session: dict[str, Any]) -> None:
    root, result = lab_session["root"], lab_session["result"]
    out = result.stdout
    section = out.split("llmops: MLflow runs", 1)[1].split("short test summary info", 1)[0]
    rows = [line for line in section.splitlines() if "test_lab.py::" in line]
    assert len(rows) == 12, section
    joke = next(line for line in rows if "test_joke[cfg-cat]" in line)
    assert joke.split()[:3] == ["passed", "1", "19"]
    assert "12 tests" in section and "tokens: 81 prompt + 31 completion" in section
    command = f"mlflow ui --backend-store-uri sqlite:///{root.resolve() / '.llmops' / 'mlflow.db'}"
    assert command in section

    report = json.loads((root / "report.json").read_text())
    assert report["totals"]["tests"] == 12
    assert report["totals"]["llm_calls"] == 6
    assert report["totals"]["outcomes"] == {
        "error": 2, "failed": 1, "passed": 7, "skipped": 1, "xfailed": 1}
    assert report["ui_command"].startswith(command)
    assert {p["experiment"] for p in report["parent_runs"]} == {"pytest-llmops", "other-experiment"}
    row = next(t for t in report["tests"] if t["nodeid"] == "test_lab.py::test_joke[cfg-cat]")
    assert (row["outcome"], row["llm_calls"], row["total_tokens"]) == ("passed", 1, 19)


# -- the other sessions ----------------------------------------------------------------

MANY = '''
import pytest


@pytest.mark.llmops
@pytest.mark.parametrize("n", range({count}))
def test_ask(azure_openai_client, n):
    reply = azure_openai_client.chat.completions.create(
        model="gpt-4o", messages=[{{"role": "user", "content": f"Question {{n}}?"}}])
    assert reply.choices[0].message.content == f"Answer {{n}}."
'''


def write_many(root: Path, count: int) -> None:
    (root / "test_many.py").write_text(MANY.format(count=count), encoding="utf-8")
    for n in range(count):
        answer = cb.chat(cb.question(f"Question {n}?"), f"Answer {n}.", 10 + n, 5)
        cb.write(root, "test_many", f"test_ask-{n}", answer)


@pytest.mark.parametrize("workers", [0, 2, 4])
def test_xdist_gives_one_session_run_and_a_child_run_per_test(tmp_path: Path, workers: int) -> None:
    """Also without xdist (0), where a helper process writes the traces and run ends."""
    count = 200
    write_many(tmp_path, count)
    report = "report.md" if workers == 2 else "report.json"
    xdist = ["-n", str(workers)] if workers else []
    result = run_pytest(tmp_path, *xdist, f"--llmops-report={report}", "test_many.py")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    assert f"{count} passed" in out
    problems = ("OperationalError", "database is locked", "Traceback", "could not write", "duplicate column")
    for problem in problems:
        assert problem not in out, out[-5000:]

    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("pytest-llmops")
    (parent,) = session_runs(client, experiment.experiment_id)
    assert parent.info.status == "FINISHED"
    tests = children(client, experiment.experiment_id, parent.info.run_id)
    assert len(tests) == count
    assert {run.info.status for run in tests} == {"FINISHED"}
    assert {run.data.tags["llmops.outcome"] for run in tests} == {"passed"}
    assert {run.data.tags["llmops.worker"] for run in tests} == ({f"gw{i}" for i in range(workers)} or {"main"})
    assert {run.data.metrics["llmops.llm_calls"] for run in tests} == {1.0}
    assert len(client.search_runs([experiment.experiment_id], max_results=1000)) == count + 1  # nothing else
    run_of = {run.data.tags["llmops.nodeid"]: run for run in tests}
    assert len(run_of) == count
    traces = client.search_traces(locations=[experiment.experiment_id], max_results=1000)
    assert len(traces) == count
    for trace in traces:
        run = run_of[trace.info.tags["llmops.nodeid"]]
        assert trace.info.tags["llmops.run_id"] == run.info.run_id
        assert trace.info.trace_metadata["mlflow.sourceRun"] == run.info.run_id
        n = int(run.data.params["n"])
        assert run.data.metrics["llmops.prompt_tokens"] == 10 + n
        assert trace.info.token_usage["input_tokens"] == 10 + n

    section = result.stdout.split("llmops: MLflow runs", 1)[1]
    assert len([line for line in section.splitlines() if "test_many.py::test_ask[" in line]) == count
    assert f"{count} tests ({count} passed)" in section
    text = (tmp_path / report).read_text()
    if workers == 2:
        assert text.startswith("# pytest-llmops: MLflow runs")
        assert text.count("| passed |") == count and "mlflow ui --backend-store-uri sqlite:///" in text
    else:
        assert json.loads(text)["totals"]["tests"] == count
    assert not list((tmp_path / ".llmops" / "tracking").glob("*.json")), "the session state is removed"


def test_an_interrupted_session_kills_the_open_runs(tmp_path: Path) -> None:
    (tmp_path / "test_stop.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.llmops\ndef test_before():\n    pass\n\n"
        "@pytest.mark.llmops\ndef test_interrupted():\n    raise KeyboardInterrupt\n\n"
        "@pytest.mark.llmops\ndef test_never():\n    pass\n",
        encoding="utf-8",
    )
    git = ["git", "-C", str(tmp_path), "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    for args in (["init", "-q"], ["add", "test_stop.py"], ["commit", "-q", "-m", "tests"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    commit = head.stdout.strip()
    result = run_pytest(tmp_path, "test_stop.py")
    assert result.returncode == pytest.ExitCode.INTERRUPTED, result.stdout + result.stderr
    client = client_for(tmp_path)
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    (parent,) = session_runs(client, experiment_id)
    assert parent.info.status == "KILLED"
    runs = runs_by_name(client, experiment_id)
    assert runs["test_stop.py::test_before"].info.status == "FINISHED"
    assert runs["test_stop.py::test_before"].data.tags["llmops.git_commit"] == commit
    assert parent.data.tags["llmops.git_commit"] == commit
    interrupted = runs["test_stop.py::test_interrupted"]
    assert (interrupted.info.status, interrupted.data.tags["llmops.outcome"]) == ("KILLED", "interrupted")
    assert "test_stop.py::test_never" not in runs


def test_wrong_marker_arguments_are_a_usage_error_naming_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.llmops(experiment="lab", param={"a": 1})
        def test_typo():
            pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_bad.py::test_typo: @pytest.mark.llmops: unknown argument(s) param*"])
    assert not (pytester.path / ".llmops" / "mlflow.db").exists()


def test_a_session_without_marked_tests_never_imports_mlflow(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "import sys\n\ndef pytest_sessionfinish(session):\n"
        "    print('MLFLOW', [m for m in sys.modules if m.split('.')[0] in ('mlflow', 'sqlalchemy')])\n",
        encoding="utf-8",
    )
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n", encoding="utf-8")
    for extra in ((), ("-n", "2")):
        result = run_pytest(tmp_path, "-s", *extra, "--llmops-report=report.json", "test_plain.py")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "MLFLOW []" in result.stdout, result.stdout
        assert "llmops: MLflow runs" not in result.stdout
        assert json.loads((tmp_path / "report.json").read_text())["totals"]["tests"] == 0
    assert not (tmp_path / ".llmops" / "mlflow.db").exists()


def test_the_summary_counts_1_test_and_is_not_printed_without_marked_tests(tmp_path: Path) -> None:
    """Issue 14.9: "1 test", never "1 tests"; a session whose tests used the store
    (``mlflow_experiment``) but were not marked prints no empty table."""
    (tmp_path / "test_one.py").write_text(
        "import pytest\n\n@pytest.mark.llmops\ndef test_one():\n    pass\n", encoding="utf-8")
    (tmp_path / "test_fixture.py").write_text(
        "def test_experiment(mlflow_experiment):\n    assert mlflow_experiment.name == 'pytest-llmops'\n",
        encoding="utf-8")
    one = run_pytest(tmp_path, "--llmops-report=one.md", "test_one.py")
    assert one.returncode == 0, one.stdout + one.stderr
    section = one.stdout.split("llmops: MLflow runs", 1)[1]
    assert "1 test (1 passed); tokens:" in section, section
    assert "1 tests" not in section and "1 tests" not in (tmp_path / "one.md").read_text()
    assert "| 1 test (1 passed) |" in (tmp_path / "one.md").read_text()

    unmarked = run_pytest(tmp_path, "test_fixture.py")
    assert unmarked.returncode == 0, unmarked.stdout + unmarked.stderr
    assert "llmops: MLflow runs" not in unmarked.stdout, unmarked.stdout
    assert "0 tests" not in unmarked.stdout


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real ``mlflow server`` on loopback (its own SQLite store), stopped with its workers."""
    import signal
    import socket
    import time
    import urllib.request

    folder = tmp_path_factory.mktemp("server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen(
        [str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", (folder / "artifacts").as_uri()],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=(folder / "server.log").open("wb"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-3000:]}")
                time.sleep(0.25)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_remote_tracking_server(tmp_path: Path, mlflow_server: str) -> None:
    (tmp_path / "test_lab.py").write_text(LAB, encoding="utf-8")
    write_lab_cassettes(tmp_path)
    selection = "joke or lab_cell or stream"
    result = run_pytest(tmp_path, f"--llmops-tracking-uri={mlflow_server}", "-k", selection, "test_lab.py")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    assert "could not write" not in out and "ReplayMiss" not in out, out[-5000:]
    assert f"open it: open {mlflow_server} in a browser" in out
    assert not (tmp_path / ".llmops" / "mlflow.db").exists()

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    (parent,) = session_runs(client, experiment_id)
    assert parent.info.status == "FINISHED"
    runs = runs_by_name(client, experiment_id)
    joke = runs["test_lab.py::test_joke[cfg-cat]"]
    assert joke.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert joke.data.metrics["llmops.total_tokens"] == 19
    lab = runs["test_lab.py::test_lab_cell"]
    (nested,) = children(client, experiment_id, lab.info.run_id)
    assert nested.data.params == {"completion_tokens": "9"}
    traces = client.search_traces(locations=[experiment_id], max_results=100)
    assert sorted(t.info.tags["llmops.nodeid"] for t in traces) == [
        "test_lab.py::test_joke[cfg-cat]", "test_lab.py::test_joke[cfg-dog]",
        "test_lab.py::test_lab_cell", "test_lab.py::test_stream"]
    assert all(len(client.get_trace(t.info.trace_id).data.spans) == 1 for t in traces)
