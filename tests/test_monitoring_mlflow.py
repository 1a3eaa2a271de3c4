"""Drift on real MLflow traces: features of real autolog traces, REF resolution, and the
``pytest-llmops drift`` command end to end.

The store is built once per module in a subprocess, the way a user's suite builds it: the real
openai SDK (3.x, on httpx2) answered by an ``httpx2.MockTransport``, ``mlflow.openai.autolog()``
inside one child run per test under a session parent run, in a temporary SQLite store. A
subprocess keeps autolog's patches and MLflow's global tracking URI out of this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pytest_llmops.cli import main
from pytest_llmops.monitoring import (
    FEATURES,
    DriftSettings,
    compare_refs,
    extract_features,
    load_traces,
    resolve_ref,
)
from pytest_llmops.monitoring.session import baseline_ref
from pytest_llmops.monitoring.sources import RefError, StoreError, client_for
from pytest_llmops.session import session_id_key

# Latency here is the wall time of a mocked call, 2-3 ms, and moves with the machine's load and
# the first session's warm-up: real drift of the test machine, not of the model. "No drift"
# comparisons leave it out.
NOT_LATENCY = DriftSettings(features=tuple(spec.name for spec in FEATURES if spec.name != "latency_ms"))

# MLflow 3.17's SQLAlchemy store on SQLAlchemy 2.1 (see PITFALLS.md); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

BUILD_STORE = textwrap.dedent(
    r"""
    import json, os, random, sys
    import httpx2, mlflow, openai

    folder = sys.argv[1]
    uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment("drift-lab", artifact_location=f"{folder}/artifacts")
    mlflow.openai.autolog()
    WORDS = ("the cat sat on a warm keyboard and kept an eye on the mouse while the owl laughed "
             "about penguins in tuxedos who never miss a formal dinner").split()
    profile = {}

    def handler(request):
        body = json.loads(request.content)
        prompt = body["messages"][-1]["content"]
        if prompt == "fail":
            return httpx2.Response(500, json={"error": {"message": "boom", "type": "server_error"}})
        rng = random.Random(f"{profile['seed']}:{prompt}")
        words = max(3, round(rng.lognormvariate(3.2, 0.15) * profile["scale"]))
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        finish = "length" if rng.random() < profile["length_share"] else "stop"
        usage = {"prompt_tokens": 20 + len(prompt) // 4, "completion_tokens": round(words * 1.3)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = "gpt-4o-2024-08-06"
        if body.get("tools"):
            call = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
            message = {"role": "assistant", "content": None,
                       "tool_calls": [{"id": "call_1", "type": "function", "function": call}]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": text}
        if body.get("stream"):
            chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "", "choices": [],
                       "prompt_filter_results": []}]
            for index, word in enumerate(text.split()):
                delta = {"content": word + " "} | ({"role": "assistant"} if index == 0 else {})
                chunks.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            chunks.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
                           "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            chunks.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
                           "choices": [], "usage": usage})
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return httpx2.Response(200, content=data.encode(), headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json={"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage})

    client = openai.AzureOpenAI(
        azure_endpoint="https://x.openai.azure.com", api_key="k", api_version="2024-05-01-preview",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
    TOOLS = [{"type": "function", "function": {"name": "get_weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]

    def session(session_id, seed, scale, length_share, tests=25):
        profile.update(seed=seed, scale=scale, length_share=length_share)
        children = []
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"session {session_id}",
                              tags={"llmops.role": "session", "llmops.session_id": session_id}) as parent:
            for i in range(tests):
                tags = {"llmops.role": "test", "llmops.nodeid": f"tests/test_lab.py::test_joke[{i}]",
                        "llmops.outcome": "passed", "llmops.mode": "replay"}
                with mlflow.start_run(experiment_id=experiment_id, nested=True, tags=tags) as run:
                    children.append(run.info.run_id)
                    messages = [{"role": "system", "content": "Assistant is a large language model."},
                                {"role": "user", "content": f"Tell me joke number {i} about animals."}]
                    client.chat.completions.create(model="gpt-4o", messages=messages)
                    if i % 5 == 0:
                        stream = client.chat.completions.create(
                            model="gpt-4o", stream=True, stream_options={"include_usage": True},
                            messages=[{"role": "user", "content": f"Stream story {i}."}])
                        for _ in stream:
                            pass
                    if i % 7 == 3:
                        client.chat.completions.create(
                            model="gpt-4o", tools=TOOLS,
                            messages=[{"role": "user", "content": f"Weather for test {i}?"}])
                    if i == 11:
                        try:
                            client.chat.completions.create(
                                model="gpt-4o", messages=[{"role": "user", "content": "fail"}])
                        except openai.InternalServerError:
                            pass
        return {"parent": parent.info.run_id, "children": children}

    result = {
        "uri": uri,
        "experiment_id": experiment_id,
        "baseline": session("sess-base", seed=1, scale=1.0, length_share=0.05),
        "same": session("sess-same", seed=2, scale=1.0, length_share=0.05),
        "shifted": session("sess-shift", seed=3, scale=1.6, length_share=0.7),
    }
    print("RESULT " + json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A SQLite store with three pytest-llmops sessions of real autolog traces."""
    folder = tmp_path_factory.mktemp("drift-store")
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", BUILD_STORE, str(folder)],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["folder"] = folder
    return result


# --- features of real traces -----------------------------------------------------------------


def test_features_of_a_plain_completion(store: dict[str, Any]) -> None:
    run_id = store["baseline"]["children"][1]
    traces = load_traces(f"run:{run_id}", store["uri"])
    assert len(traces) == 1
    features = extract_features(traces[0])
    assert features.error is False
    assert features.finish_reason == "stop"
    assert features.model == "gpt-4o-2024-08-06"  # served model version, from the response
    assert features.deployment == "gpt-4o"  # the request's model parameter: the Azure deployment
    assert features.completion_tokens == round(features.response_words * 1.3)  # type: ignore[operator]
    assert features.total_tokens == features.prompt_tokens + features.completion_tokens  # type: ignore[operator]
    assert features.response_chars == len(features.response_text) > 0
    assert features.tool_calls == 0
    assert features.latency_ms is not None and features.latency_ms >= 0
    assert features.run_id == run_id
    assert "joke number 1" in features.prompt_text
    assert features.key is not None


def test_features_of_streamed_tool_and_failed_calls(store: dict[str, Any]) -> None:
    traces = [
        extract_features(t) for t in load_traces(f"run:{store['baseline']['children'][10]}", store["uri"])
    ]
    streamed = next(f for f in traces if "Stream story" in f.prompt_text)
    assert streamed.finish_reason == "stop"
    assert streamed.completion_tokens and streamed.response_words
    assert streamed.completion_tokens == round(streamed.response_words * 1.3)  # usage from the last chunk
    assert streamed.model == "gpt-4o-2024-08-06"  # the empty model of Azure's first chunk is ignored

    tool = next(f for f in traces if "Weather" in f.prompt_text)
    assert (tool.finish_reason, tool.tool_calls, tool.response_chars) == ("tool_calls", 1, 0)

    failed = [
        extract_features(t) for t in load_traces(f"run:{store['baseline']['children'][11]}", store["uri"])
    ]
    error = next(f for f in failed if f.error)
    assert error.completion_tokens is None and error.finish_reason is None and error.response_chars is None
    assert error.latency_ms is not None
    assert error.deployment == "gpt-4o"


def test_trace_dict_form_gives_the_same_features(store: dict[str, Any]) -> None:
    trace = load_traces(f"run:{store['baseline']['children'][0]}", store["uri"])[0]
    assert extract_features(trace.to_dict()) == extract_features(trace)
    assert extract_features(json.loads(trace.to_json())) == extract_features(trace)


# --- REF resolution -------------------------------------------------------------------------


def test_refs_resolve_to_the_right_traces(store: dict[str, Any]) -> None:
    uri = store["uri"]
    per_session = 25 + 5 + 4 + 1  # one plain call per test, 5 streamed, 4 with tools, 1 failure
    base = store["baseline"]
    assert len(load_traces(base["parent"], uri)) == per_session  # a session parent: all its tests
    assert len(load_traces(f"run:{base['parent']}", uri)) == per_session
    assert len(load_traces("session:sess-base", uri)) == per_session
    assert len(load_traces(base["children"][0], uri)) == 2  # a test run: its own traces only
    assert len(load_traces("drift-lab", uri)) == 3 * per_session
    assert len(load_traces("experiment:drift-lab", uri)) == 3 * per_session
    assert len(load_traces("drift-lab:tags.llmops.session_id = 'sess-shift'", uri)) == per_session
    assert len(load_traces("drift-lab:tags.llmops.nodeid = 'tests/test_lab.py::test_joke[0]'", uri)) == 6

    client = client_for(uri)
    latest = resolve_ref("session:latest", client)
    assert latest.runs[0].info.run_id == store["shifted"]["parent"]
    assert resolve_ref("session:latest@drift-lab", client).kind == "session"


def test_session_latest_can_exclude_a_session(store: dict[str, Any]) -> None:
    client = client_for(store["uri"])

    before_shift = resolve_ref("session:latest@drift-lab", client, exclude_session="sess-shift")

    assert before_shift.runs[0].info.run_id == store["same"]["parent"]
    assert len(before_shift.runs) == 1 + 25  # the session's parent run and its tests
    latest = resolve_ref("session:latest", client, exclude_session="sess-base")
    assert latest.runs[0].info.run_id == store["shifted"]["parent"]
    by_id = resolve_ref("session:sess-shift", client, exclude_session="sess-shift")
    assert by_id.runs[0].info.run_id == store["shifted"]["parent"]  # only session:latest looks at it
    with pytest.raises(RefError, match="session run other than session 'sess-shift'"):
        resolve_ref("session:latest@Default", client, exclude_session="sess-shift")


def test_a_sessions_baseline_latest_is_the_session_before_it(store: dict[str, Any]) -> None:
    config = cast(pytest.Config, SimpleNamespace(stash=pytest.Stash()))
    config.stash[session_id_key] = "sess-shift"  # the session running now
    uri = store["uri"]

    assert baseline_ref(config, "session:latest", uri) == "session:sess-same"
    assert baseline_ref(config, "session:latest@drift-lab", uri) == "session:sess-same@drift-lab"
    assert baseline_ref(config, "drift-lab", uri) == "drift-lab"
    # Nothing to find, or nothing but this session: never this session against itself.
    with pytest.raises(RefError, match="no experiment named 'nope'"):
        baseline_ref(config, "session:latest@nope", uri)
    with pytest.raises(RefError, match="session run other than session 'sess-shift'"):
        baseline_ref(config, "session:latest@Default", uri)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no-such-experiment", "no experiment named 'no-such-experiment'"),
        ("session:nope", "no run tagged llmops.session_id='nope'"),
        ("0" * 32, "no run '00000000000000000000000000000000'"),
        ("drift-lab:tags.llmops.mode ~ 'x'", "bad run filter"),
    ],
)
def test_bad_refs_say_what_is_wrong(store: dict[str, Any], ref: str, message: str) -> None:
    with pytest.raises(RefError, match=message.replace("[", r"\[")):
        load_traces(ref, store["uri"])


def test_missing_store_is_an_error_not_a_new_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No MLflow store"):
        load_traces("lab", f"sqlite:///{tmp_path}/absent.db")
    assert not (tmp_path / "absent.db").exists()


# --- comparisons ----------------------------------------------------------------------------


def test_compare_refs_finds_the_shift_and_only_the_shift(store: dict[str, Any]) -> None:
    same = compare_refs("session:sess-base", "session:sess-same", store["uri"], settings=NOT_LATENCY)
    assert not same.drifted, same.to_text()
    assert same.paired_prompts >= 25

    shifted = compare_refs("session:sess-base", "session:sess-shift", store["uri"])
    assert shifted.drifted
    for name in ("completion_tokens", "response_words", "response_chars", "finish_reason"):
        assert shifted.features[name].drifted, shifted.to_text()
    assert not shifted.features["prompt_tokens"].drifted
    assert not shifted.features["model"].drifted
    assert shifted.features["finish_reason"].details["share_current[length]"] > 0.2


# --- the CLI end to end ---------------------------------------------------------------------


def _drift(store: dict[str, Any], *args: str) -> int:
    return main(["drift", "--tracking-uri", store["uri"], *args])


def test_cli_no_drift_exits_0_even_with_fail_on_drift(
    store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _drift(
        store,
        "--baseline",
        "session:sess-base",
        "--current",
        "session:sess-same",
        "--features",
        ",".join(NOT_LATENCY.features or ()),
        "--fail-on-drift",
        "--no-log",
        "--json",
        str(tmp_path / "r.json"),
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "No drift detected" in out
    assert json.loads((tmp_path / "r.json").read_text())["drifted"] is False


def test_cli_drift_sets_exit_code_writes_reports_and_logs_artifacts(
    store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path, html_path = tmp_path / "out" / "drift.json", tmp_path / "out" / "drift.html"
    code = _drift(
        store,
        "--baseline",
        store["baseline"]["parent"],
        "--current",
        "session:sess-shift",
        "--fail-on-drift",
        "--json",
        str(json_path),
        "--html",
        str(html_path),
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "DRIFT in" in captured.out and "completion_tokens" in captured.out

    report = json.loads(json_path.read_text())
    assert report["schema"] == "pytest-llmops/drift/2"
    assert report["drifted"] is True
    assert "completion_tokens" in report["drifted_features"]
    assert report["baseline"] == {"ref": store["baseline"]["parent"], "traces": 35}
    feature = report["features"]["completion_tokens"]
    assert {"test", "p_value", "p_adjusted", "effect", "effect_name", "drifted", "warning"} <= set(feature)
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == len(report["features"])

    # Logged to a new run tagged llmops.role=drift in the current REF's experiment.
    client = client_for(store["uri"])
    runs = client.search_runs([store["experiment_id"]], "tags.`llmops.role` = 'drift'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["llmops.drift.drifted"] == "true"
    assert run.data.tags["llmops.drift.current"] == "session:sess-shift"
    assert run.data.metrics["drift.features_drifted"] == len(report["drifted_features"])
    assert run.info.run_id in captured.err
    artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id, "drift"))
    assert artifacts == ["drift/report.html", "drift/report.json", "drift/report.txt"]
    logged = json.loads(
        Path(client.download_artifacts(run.info.run_id, "drift/report.json", str(tmp_path))).read_text()
    )
    assert logged["drifted_features"] == report["drifted_features"]


def test_cli_without_fail_on_drift_exits_0_and_json_to_stdout(
    store: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = _drift(
        store,
        "--baseline",
        "session:sess-base",
        "--current",
        "session:sess-shift",
        "--no-log",
        "--json",
        "-",
        "--alpha",
        "0.01",
        "--features",
        "completion_tokens,error",
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["alpha"] == 0.01
    assert set(report["features"]) == {"completion_tokens", "error"}


def test_cli_bad_ref_exits_2(store: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert _drift(store, "--baseline", "nope", "--current", "session:sess-same", "--no-log") == 2
    assert "no experiment named 'nope'" in capsys.readouterr().err


def test_cli_ref_without_traces_exits_2(store: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    client = client_for(store["uri"])
    empty = client.create_run(store["experiment_id"]).info.run_id
    client.set_terminated(empty)
    assert _drift(store, "--baseline", empty, "--current", "session:sess-same", "--no-log") == 2
    assert "has no traces" in capsys.readouterr().err


def test_cli_default_tracking_uri_is_the_embedded_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["drift", "--baseline", "a", "--current", "b"]) == 3  # the store: its own exit code
    assert f"No MLflow store at {tmp_path / '.llmops' / 'mlflow.db'}" in capsys.readouterr().err


def test_cli_log_run_logs_into_an_existing_run(
    store: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    client = client_for(store["uri"])
    target = client.create_run(store["experiment_id"], run_name="nightly checks").info.run_id
    code = _drift(
        store,
        "--baseline",
        "session:sess-base",
        "--current",
        "session:sess-same",
        "--features",
        ",".join(NOT_LATENCY.features or ()),
        "--log-run",
        target,
    )
    assert code == 0
    run = client.get_run(target)
    assert run.data.tags["llmops.drift.drifted"] == "false"
    assert "llmops.role" not in run.data.tags  # an existing run keeps its role
    assert {a.path for a in client.list_artifacts(target, "drift")} == {
        "drift/report.html",
        "drift/report.json",
        "drift/report.txt",
    }
    assert target in capsys.readouterr().err


def test_a_session_in_several_experiments_is_named_with_its_experiment(tmp_path: Path) -> None:
    """One pytest session that tracked tests in two experiments has a parent run in each:
    ``session:ID@EXPERIMENT`` picks one (and so does a session's ``session:latest@EXP``)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    parents = {}
    for name in ("jokes", "facts"):
        experiment_id = client.create_experiment(name, artifact_location=(tmp_path / name).as_uri())
        tags = {"llmops.role": "session", "llmops.session_id": "s1"}
        parent = client.create_run(experiment_id, tags=tags)
        client.set_terminated(parent.info.run_id)
        parents[name] = parent.info.run_id

    for name, run_id in parents.items():
        assert resolve_ref(f"session:s1@{name}", client).runs[0].info.run_id == run_id
    assert resolve_ref("session:s1", client).runs[0].info.run_id in parents.values()
    with pytest.raises(RefError, match="no experiment named 'nope'"):
        resolve_ref("session:s1@nope", client)

    config = cast(pytest.Config, SimpleNamespace(stash=pytest.Stash()))
    config.stash[session_id_key] = "s2"
    assert baseline_ref(config, "session:latest@facts", uri) == "session:s1@facts"
    assert load_traces(baseline_ref(config, "session:latest@facts", uri), uri) == []


# --- time windows, pages, the command's one-line errors ---------------------------------------


def test_a_time_window_keeps_the_traces_that_started_in_it(store: dict[str, Any]) -> None:
    from pytest_llmops.monitoring import TimeWindow

    traces = load_traces("drift-lab", store["uri"])
    times = sorted(t.info.timestamp_ms for t in traces)
    middle = times[len(times) // 2]
    early = load_traces("drift-lab", store["uri"], window=TimeWindow(until_ms=middle))
    late = load_traces("drift-lab", store["uri"], window=TimeWindow(since_ms=middle))
    assert len(early) + len(late) == len(traces) and early and late
    assert all(t.info.timestamp_ms < middle for t in early) and all(
        t.info.timestamp_ms >= middle for t in late
    )
    session = load_traces("session:sess-base", store["uri"], window=TimeWindow(since_ms=middle))
    assert all(t.info.timestamp_ms >= middle for t in session)


def test_traces_are_read_in_pages(store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """An experiment is searched page by page (500 traces a page; 10 here), never in one call."""
    from mlflow import MlflowClient

    from pytest_llmops.monitoring import sources

    calls: list[int] = []
    original = MlflowClient.search_traces

    def counting(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["max_results"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_traces", counting)
    monkeypatch.setattr(sources, "PAGE_SIZE", 10)
    assert len(load_traces("drift-lab", store["uri"])) == 3 * 35
    assert calls == [10] * 11  # 105 traces: 10 full pages and one of 5


def test_cli_since_until_select_traces_by_time(
    store: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = _drift(
        store,
        "--baseline",
        "session:sess-base",
        "--current",
        "drift-lab",
        "--since",
        "2000-01-01",
        "--until",
        "2000-01-02",
        "--no-log",
    )
    assert code == 2
    assert "has no traces in that time window" in capsys.readouterr().err
    assert _drift(store, "--baseline", "a", "--current", "b", "--since", "yesterday-ish") == 2
    assert "is not a time" in capsys.readouterr().err
    code = _drift(
        store,
        "--baseline",
        "session:sess-base",
        "--current",
        "session:sess-same",
        "--since",
        "3650d",
        "--no-log",
        "--features",
        "completion_tokens",
    )
    assert code == 0 and "No drift detected" in capsys.readouterr().out


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err  # one line, no traceback
    assert "Traceback" not in captured.err and not captured.out
    return lines[0]


def test_cli_unreachable_tracking_server_is_one_line_with_its_own_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Port 9 on loopback refuses at once: exit 3 in well under MLflow's ~248 s of retries."""
    import time

    started = time.monotonic()
    code = main(["drift", "--tracking-uri", "http://127.0.0.1:9", "--baseline", "a", "--current", "b"])
    assert code == 3
    line = _one_line_error(capsys)
    assert "Cannot reach the MLflow tracking server http://127.0.0.1:9" in line and "--tracking-uri" in line
    assert time.monotonic() - started < 60  # not a timing benchmark: MLflow's retries take minutes


def test_cli_corrupt_store_is_one_line_with_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "mlflow.db"
    corrupt.write_bytes(b"this is not an SQLite database\n" * 100)
    code = main(["drift", "--tracking-uri", f"sqlite:///{corrupt}", "--baseline", "a", "--current", "b"])
    assert code == 3
    assert f"The MLflow store sqlite:///{corrupt} cannot be read" in _one_line_error(capsys)


def test_cli_unknown_feature_is_a_usage_error_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the store does not exist: the feature is checked first
    code = main(
        [
            "drift",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/none.db",
            "--baseline",
            "a",
            "--current",
            "b",
            "--features",
            "completion_tokens,latency",
        ]
    )
    assert code == 2
    line = _one_line_error(capsys)
    assert "unknown drift feature(s) latency" in line and "latency_ms" in line
    assert main(["drift", "--baseline", "a", "--current", "b", "--min-effect", "latency_ms=big"]) == 2
    assert "is not a number" in _one_line_error(capsys)


def test_cli_unwritable_html_is_checked_before_the_analysis(
    store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "report.html"
    # a REF that names nothing: the output is checked first, so the output's error is the one
    assert _drift(store, "--baseline", "nope", "--current", "session:sess-same", "--html", str(target)) == 4
    line = _one_line_error(capsys)
    assert f"cannot write --html {target}" in line and "writable path" in line
    assert (
        _drift(
            store,
            "--baseline",
            "session:sess-base",
            "--current",
            "session:sess-same",
            "--json",
            str(tmp_path),
        )
        == 4
    )
    assert "is a folder" in _one_line_error(capsys)


# --- examples ---------------------------------------------------------------------------------


def test_the_report_shows_the_answers_that_changed_most(store: dict[str, Any], tmp_path: Path) -> None:
    report = compare_refs("session:sess-base", "session:sess-shift", store["uri"])
    assert len(report.examples) == 5
    first = report.examples[0]
    assert first.baseline != first.current and first.prompt
    assert first.score >= report.examples[-1].score
    data = json.loads(report.to_json())
    assert (
        data["examples"][0]["baseline"] == first.baseline and data["examples"][0]["current"] == first.current
    )
    assert {"finish_reason", "completion_tokens"} <= set(data["examples"][0]["current_details"])
    html = report.to_html()
    section = html[html.index('<section id="examples">') :]
    assert escape(first.baseline[:60]) in section and escape(first.current[:60]) in section
    text = report.to_text()
    assert "Answers that changed most (5 paired prompts):" in text
    same = compare_refs("session:sess-base", "session:sess-base", store["uri"])
    assert same.examples == []  # nothing changed: nothing to show
