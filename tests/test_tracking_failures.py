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

import pytest

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
