"""Secrets never reach disk: not the cassettes only, every file the plugin writes. A marked
test sends known secrets (environment values, a redacted header, a redacted query parameter,
a param named like a secret) through the real openai SDK against the double; the session
runs in record, live and replay, writes a report, compares for drift (in the session and with
the ``drift`` command), and the bytes of every file under the rootdir (the MLflow store with
its WAL, artifacts, reports, cassettes) are searched for the values."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import SECRET_API_KEY
from tests.disk import written_files

CLIENT_SECRET = "Cl1ent~secret.value+42"
CODE = "auth-code-0a9b8c7d6e5f"
BEARER = "eyJhbGciOi.bearer-token-value-1234567890"
PASSWORD = "hunter2-but-much-longer"
TOKEN_VALUE = "token-value-7f6e5d4c3b2a"

TRACKED = """
import os, pytest

CODE, BEARER, PASSWORD = os.environ["T_CODE"], os.environ["T_BEARER"], os.environ["T_PASSWORD"]
KEY, SECRET = os.environ["AZURE_OPENAI_API_KEY"], os.environ["AZURE_CLIENT_SECRET"]


@pytest.mark.llmops(params={"password": PASSWORD, "note": "key " + KEY}, tags={"origin": "secret " + SECRET})
def test_chat(azure_openai_client, llmops_traces):
    reply = azure_openai_client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": f"key {KEY} secret {SECRET} code {CODE} bearer {BEARER}"}],
        extra_headers={"Authorization": "Bearer " + BEARER},
        extra_query={"code": CODE},
        extra_body={"metadata": {"token_value": os.environ["T_TOKEN_VALUE"]}},
    )
    assert reply.choices[0].message.content
    assert len(llmops_traces) == 1
"""


def _forms(value: str) -> list[bytes]:
    """A secret as it could be written: raw, URL-encoded, JSON-escaped, base64."""
    forms = {value, quote(value, safe=""), json.dumps(value)[1:-1], base64.b64encode(value.encode()).decode()}
    return [form.encode() for form in forms]


def _assert_nothing_leaked(root: Path) -> None:
    written = b"\n".join(written_files(root).values())
    for value in (SECRET_API_KEY, CLIENT_SECRET, CODE, BEARER, PASSWORD, TOKEN_VALUE):
        for form in _forms(value):
            assert form not in written, f"a secret reached disk under {root}: {value[:5]}..."


def _traces(root: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.llmops' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pytest-llmops")
    return client.search_traces(locations=[experiment.experiment_id])


@pytest.fixture
def secrets_in_env(double_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    for name, value in (("T_CODE", CODE), ("T_BEARER", BEARER), ("T_PASSWORD", PASSWORD),
                        ("T_TOKEN_VALUE", TOKEN_VALUE)):
        monkeypatch.setenv(name, value)


def test_no_secret_reaches_the_store_the_report_or_drift_artifacts(
    pytester: pytest.Pytester, lab_double, secrets_in_env, capsys
):
    pytester.makepyfile(test_tracked=TRACKED)
    pytester.runpytest("--llmops-record", "--llmops-report=record.json").assert_outcomes(passed=1)
    _assert_nothing_leaked(pytester.path)
    pytester.runpytest("--llmops-live", "--llmops-report=live.md").assert_outcomes(passed=1)
    _assert_nothing_leaked(pytester.path)

    lab_double.stop()  # replay: the cassette alone, the same secrets in the environment
    baseline = f"pytest-llmops:attributes.status != '{SECRET_API_KEY}'"  # a REF quoting a secret
    result = pytester.runpytest("--llmops-report=replay.json", f"--llmops-drift-baseline={baseline}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*llmops: drift against*"])
    assert "no comparison" not in result.stdout.str()

    from pytest_llmops.cli import main

    code = main([
        "drift", "--baseline", baseline, "--current", "session:latest",
        "--tracking-uri", f"sqlite:///{pytester.path / '.llmops' / 'mlflow.db'}",
        "--json", str(pytester.path / "drift.json"), "--html", str(pytester.path / "drift.html"),
    ])
    capsys.readouterr()
    assert code == 0
    _assert_nothing_leaked(pytester.path)

    # What was written is there, with placeholders where the secrets were.
    traces = _traces(pytester.path)
    assert len(traces) == 3  # record, live, replay
    for trace in traces:
        inputs = trace.info.request_preview
        assert "<AZURE_OPENAI_API_KEY>" in inputs and "<AZURE_CLIENT_SECRET>" in inputs, inputs
        spans = json.dumps([span.to_dict() for span in trace.data.spans])
        assert "<redacted>" in spans  # the Authorization header and the code parameter
    report = json.loads((pytester.path / "replay.json").read_text())
    assert report["totals"]["tests"] == 1
    assert "<html" in (pytester.path / "drift.html").read_text().lower()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{pytester.path / '.llmops' / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("pytest-llmops").experiment_id
    runs = client.search_runs([experiment_id], "tags.`llmops.nodeid` = 'test_tracked.py::test_chat'")
    assert len(runs) == 3
    assert {run.data.params["password"] for run in runs} == {"<redacted>"}
    assert {run.data.params["note"] for run in runs} == {"key <AZURE_OPENAI_API_KEY>"}
    assert {run.data.tags["origin"] for run in runs} == {"secret <AZURE_CLIENT_SECRET>"}


def test_xdist_workers_scrub_what_they_write(pytester: pytest.Pytester, lab_double, secrets_in_env):
    """Under xdist each worker writes its own traces, with the secrets it learned."""
    four = TRACKED.replace("def test_chat(", "@pytest.mark.parametrize('n', [1, 2, 3, 4])\ndef test_chat(n, ")
    pytester.makepyfile(test_tracked=four)
    result = pytester.runpytest("--llmops-record", "-n", "2", "--llmops-report=xdist.json")
    result.assert_outcomes(passed=4)
    _assert_nothing_leaked(pytester.path)
    traces = _traces(pytester.path)
    assert len(traces) == 4
    assert all("<redacted>" in json.dumps([s.to_dict() for s in t.data.spans]) for t in traces)
    rows = json.loads((pytester.path / "xdist.json").read_text())["tests"]
    assert {row["worker"] for row in rows} == {"gw0", "gw1"}
