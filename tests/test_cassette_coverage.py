"""Every test that talks HTTP can have a cassette: an app that builds its own ``AzureOpenAI()``
from the environment records with ``llmops_cassettes = all`` (or a module/class ``pytestmark``)
and replays offline unchanged; a test without a cassette is told how to give it one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import SECRET_API_KEY, all_bytes

APP = """
import openai


def joke(topic):
    # The app builds its own client from AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY and
    # OPENAI_API_VERSION, as apps do; no plugin fixture anywhere.
    client = openai.AzureOpenAI()
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"Tell me a joke about {topic}."}]
    )
    return reply.choices[0].message.content
"""

APP_TESTS = """
from app import joke


def test_animals():
    assert joke("animals")


def test_no_http():
    assert 1 + 1 == 2
"""


def app_env(double_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the app reads: the double's endpoint and key, and the SDK's OPENAI_API_VERSION."""
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-05-01-preview")


def forget_the_environment(lab_double, double_env, monkeypatch) -> None:
    lab_double.stop()
    for name in [*double_env, "OPENAI_API_VERSION"]:
        monkeypatch.delenv(name, raising=False)


def test_every_test_gets_a_cassette_with_the_ini_option(pytester, lab_double, double_env, monkeypatch):
    app_env(double_env, monkeypatch)
    pytester.makeini("[pytest]\nllmops_cassettes = all\n")
    pytester.makepyfile(app=APP, test_app=APP_TESTS)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=2)
    folder = pytester.path / "cassettes" / "test_app"
    assert sorted(p.name for p in folder.iterdir()) == ["test_animals.yaml"], "written only for requests"
    assert SECRET_API_KEY.encode() not in all_bytes(pytester.path / "cassettes")

    # Replay: no double, no variables: the app's own AzureOpenAI() gets the placeholders.
    forget_the_environment(lab_double, double_env, monkeypatch)
    pytester.makepyfile(test_env="""
        import os

        def test_placeholders_are_there_during_the_session():
            assert os.environ["AZURE_OPENAI_ENDPOINT"] == "https://resource.openai.azure.com/"
            assert os.environ["AZURE_OPENAI_API_KEY"] == "replay-api-key"
            assert os.environ["OPENAI_API_VERSION"] == os.environ["AZURE_OPENAI_API_VERSION"]
            assert os.environ["DATABRICKS_HOST"] == "https://adb-0000000000000000.0.azuredatabricks.net"
            assert os.environ["DATABRICKS_TOKEN"] == "replay-databricks-token"
    """)
    pytester.runpytest().assert_outcomes(passed=3)
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "OPENAI_API_VERSION", "DATABRICKS_HOST"):
        assert name not in os.environ, f"{name} is restored (unset) after the session"


def test_a_set_variable_is_left_alone_in_replay(pytester, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://mine.openai.azure.com/")
    pytester.makepyfile("""
        import os

        def test_mine():
            assert os.environ["AZURE_OPENAI_ENDPOINT"] == "https://mine.openai.azure.com/"
    """)
    pytester.runpytest().assert_outcomes(passed=1)
    assert os.environ["AZURE_OPENAI_ENDPOINT"] == "https://mine.openai.azure.com/"


@pytest.mark.parametrize(
    "marking",
    [
        "import pytest\n\npytestmark = pytest.mark.llmops_cassette\n",
        "import pytest\n\n\n@pytest.mark.llmops_cassette\nclass TestApp:\n",
    ],
    ids=["module", "class"],
)
def test_module_and_class_pytestmark(pytester, lab_double, double_env, monkeypatch, marking: str):
    app_env(double_env, monkeypatch)
    body = "from app import joke\n\n" + marking
    if "class" in marking:
        body += "    def test_animals(self):\n        assert joke('animals')\n"
        name = "TestApp.test_animals.yaml"
    else:
        body += "\n\ndef test_animals():\n    assert joke('animals')\n"
        name = "test_animals.yaml"
    pytester.makepyfile(app=APP, test_app=body)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=1)
    assert (pytester.path / "cassettes" / "test_app" / name).is_file()
    forget_the_environment(lab_double, double_env, monkeypatch)
    pytester.runpytest().assert_outcomes(passed=1)


def test_record_warns_a_test_without_cassette_that_made_requests(pytester, lab_double, double_env, monkeypatch):
    app_env(double_env, monkeypatch)
    pytester.makepyfile(app=APP, test_app=APP_TESTS)
    result = pytester.runpytest("--llmops-record")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([
        "*UnrecordedRequests: test_app.py::test_animals has no cassette, so its 1 HTTP request(s) (POST "
        "https://resource.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=*) were not "
        "recorded and replay will fail. Give it a cassette: `@pytest.mark.llmops_cassette` on the test*"
        "`llmops_cassettes = all`*then record it: pytest --llmops-record 'test_app.py::test_animals'",
    ])
    assert "test_no_http" not in result.stdout.str().split("warnings summary")[-1]
    assert not (pytester.path / "cassettes" / "test_app").exists()
    assert SECRET_API_KEY not in result.stdout.str()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a network namespace")
def test_replay_failure_of_a_test_without_cassette_says_how_to_give_it_one(pytester: pytest.Pytester):
    """The app reaches a non-loopback address in replay. The inner pytest runs in a fresh
    network namespace (``unshare -n``): even if the seal failed, no packet could leave."""
    pytester.makepyfile(test_app="""
        import openai

        def test_app():
            client = openai.AzureOpenAI(azure_endpoint="https://192.0.2.10", api_key="k",
                                        api_version="2024-05-01-preview", max_retries=0)
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    """)
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here: {probe.stderr.decode().strip()}")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_app.py"],
        cwd=pytester.path, capture_output=True, text=True, env=env, timeout=300,
    )
    out = done.stdout
    assert done.returncode == 1, out
    assert "NetworkBlocked: test_app.py::test_app has no cassette, so its requests cannot be replayed" in out
    assert "Give it a cassette: `@pytest.mark.llmops_cassette` on the test" in out
    assert "192.0.2.10:443" in out
    assert "Record it with" not in out  # the seal's generic advice is replaced
