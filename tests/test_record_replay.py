"""Record against the lab double, replay with it stopped: the core loop a user lives in."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests import sleeps
from tests.conftest import SECRET_API_KEY, all_bytes

CHAT = """
import pytest

def ask(client, deployment, question):
    reply = client.chat.completions.create(
        model=deployment.deployment,
        messages=[{"role": "system", "content": "Assistant is a large language model trained by OpenAI."},
                  {"role": "user", "content": question}],
    )
    return reply

def test_joke(azure_openai_client, azure_openai_deployment):
    reply = ask(azure_openai_client, azure_openai_deployment, "Tell me a joke about animals.")
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0

def test_two_questions(azure_openai_client, azure_openai_deployment):
    first = ask(azure_openai_client, azure_openai_deployment, "What is MLflow?")
    second = ask(azure_openai_client, azure_openai_deployment, "What is Databricks?")
    assert first.choices[0].message.content != second.choices[0].message.content
"""


def record(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--llmops-record", *args)


def test_record_then_replay_with_the_server_gone(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    pytester.makepyfile(test_chat=CHAT)
    record(pytester).assert_outcomes(passed=2)
    cassettes = pytester.path / "cassettes"
    assert (cassettes / "test_chat" / "test_joke.yaml").is_file()
    assert (cassettes / "test_chat" / "test_two_questions.yaml").is_file()
    assert (cassettes / "_session" / "azure_openai_deployment.yaml").is_file()
    assert SECRET_API_KEY.encode() not in all_bytes(cassettes)
    assert lab_double.port and str(lab_double.port).encode() not in all_bytes(cassettes)

    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_changed_prompt_fails_with_a_readable_diff(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    pytester.makepyfile(test_chat=CHAT)
    record(pytester).assert_outcomes(passed=2)
    lab_double.stop()
    pytester.makepyfile(test_chat=CHAT.replace("Tell me a joke about animals.", "Tell me a joke about cats."))
    result = pytester.runpytest("test_chat.py::test_joke")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "ReplayMiss: test_chat.py::test_joke made a request that its cassette has no recording for.",
        "*POST https://resource.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=*",
        "*Nearest recorded request, interaction #1:",
        "*method: same",
        "*path: same",
        "*body differs:",
        '*messages[[]1[]].content: recorded "Tell me a joke about animals." != sent "Tell me a joke about cats."',
        "To record it: pytest --llmops-record 'test_chat.py::test_joke'",
        "*(raised at *test_chat.py:*)",
    ])
    assert "Traceback" not in result.stdout.str()


def test_missing_cassette_says_which_file_and_how_to_record(pytester: pytest.Pytester):
    pytester.makepyfile(test_chat=CHAT)
    result = pytester.runpytest("test_chat.py::test_joke")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "ReplayMiss: test_chat.py::test_joke made a request that its cassette has no recording for.",
        f"The cassette {pytester.path / 'cassettes' / 'test_chat' / 'test_joke.yaml'} does not exist*",
        "To record it: pytest --llmops-record 'test_chat.py::test_joke'",
    ])


def test_a_request_made_more_often_than_recorded_is_explained(pytester, lab_double, double_env):
    pytester.makepyfile(test_chat=CHAT)
    record(pytester, "-k", "test_joke").assert_outcomes(passed=1)
    pytester.makepyfile(test_chat=CHAT.replace(
        "    assert reply.choices[0].message.content\n",
        "    assert reply.choices[0].message.content\n"
        "    ask(azure_openai_client, azure_openai_deployment, 'Tell me a joke about animals.')\n",
    ))
    result = pytester.runpytest("-k", "test_joke")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*matches interaction #1, which was already played*more often than when it was recorded*"])


OUTCOMES = CHAT + textwrap.dedent("""
    @pytest.fixture
    def broken_setup():
        raise RuntimeError("the fixture is broken")

    def test_fails_after_a_call(azure_openai_client, azure_openai_deployment):
        reply = ask(azure_openai_client, azure_openai_deployment, "Tell me a joke about animals.")
        assert reply.choices[0].message.content == "the joke the app expected"

    @pytest.mark.xfail(reason="the app does not count yet", strict=True)
    def test_known_bug(azure_openai_client, azure_openai_deployment):
        reply = ask(azure_openai_client, azure_openai_deployment, "Count to three.")
        assert reply.choices[0].message.content == "1 2 3"

    def test_setup_error(broken_setup, azure_openai_client, azure_openai_deployment):
        ask(azure_openai_client, azure_openai_deployment, "Never asked.")
""")


def test_every_test_whose_body_ran_is_recorded_and_replays_its_outcome(
    pytester, lab_double, double_env, monkeypatch
):
    pytester.makepyfile(test_chat=OUTCOMES)
    record(pytester).assert_outcomes(passed=2, failed=1, xfailed=1, errors=1)
    folder = pytester.path / "cassettes" / "test_chat"
    assert sorted(p.name for p in folder.iterdir()) == [
        "test_fails_after_a_call.yaml", "test_joke.yaml", "test_known_bug.yaml", "test_two_questions.yaml",
    ], "a setup error writes nothing"
    assert not list(pytester.path.rglob("*.tmp")), "no temporary file is left behind"

    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    result = pytester.runpytest("-rxX")
    result.assert_outcomes(passed=2, failed=1, xfailed=1, errors=1)
    out = result.stdout.str()
    assert "ReplayMiss" not in out and "never recorded" not in out
    result.stdout.fnmatch_lines([
        "*RuntimeError: the fixture is broken*",
        "E       assert * == 'the joke the app expected'",  # the real assertion, replayed
        "XFAIL test_chat.py::test_known_bug - the app does not count yet",
    ])


def test_rerecording_replaces_the_cassette_and_drops_stale_ones(pytester, lab_double, double_env):
    pytester.makepyfile(test_chat=CHAT)
    record(pytester).assert_outcomes(passed=2)
    joke = pytester.path / "cassettes" / "test_chat" / "test_joke.yaml"
    before = joke.read_text()
    record(pytester).assert_outcomes(passed=2)
    assert joke.read_text().count("interactions") == before.count("interactions") == 1
    assert joke.read_text().count("- request:") == 1
    # A test that no longer makes requests leaves no stale cassette behind.
    pytester.makepyfile(test_chat="def test_joke(llmops_cassette):\n    pass\n")
    record(pytester).assert_outcomes(passed=1)
    assert not joke.exists()


def test_parametrised_and_long_ids_give_short_stable_names(pytester, lab_double, double_env):
    pytester.makepyfile(test_ids="""
        import pytest

        LONG_ID = "what-does-the-model-answer-to-a-long-question-" * 4

        @pytest.mark.parametrize("question", ["What is MLflow?", "x" * 300], ids=["What is MLflow?", LONG_ID])
        def test_ask(azure_openai_client, azure_openai_deployment, question):
            azure_openai_client.chat.completions.create(
                model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": question}])

        class TestGroup:
            def test_in_class(self, azure_openai_client, azure_openai_deployment):
                azure_openai_client.chat.completions.create(
                    model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": "hi"}])
    """)
    record(pytester).assert_outcomes(passed=3)
    names = sorted(p.name for p in (pytester.path / "cassettes" / "test_ids").iterdir())
    assert "test_ask-What_is_MLflow.yaml" in names
    assert "TestGroup.test_in_class.yaml" in names
    long_name = next(n for n in names if n.startswith("test_ask-what-does"))
    assert len(long_name) <= 85  # cut, with a stable hash of the full id
    assert len(names) == 3
    pytester.runpytest().assert_outcomes(passed=3)  # and the names are found again


def test_identical_requests_replay_in_recorded_order(pytester: pytest.Pytester):
    cassette = pytester.path / "cassettes" / "test_order" / "test_polls.yaml"
    cassette.parent.mkdir(parents=True)
    interaction = """
    - request:
        body: null
        headers: {{}}
        method: GET
        uri: https://adb-0000000000000000.0.azuredatabricks.net/api/2.1/clusters/get?cluster_id=c1
      response:
        body: {{string: '{{"cluster_id": "c1", "state": "{state}"}}'}}
        headers: {{content-type: [application/json]}}
        status: {{code: 200, message: OK}}"""
    body = "".join(interaction.format(state=s) for s in ("PENDING", "PENDING", "RUNNING"))
    cassette.write_text("interactions:" + textwrap.dedent(body) + "\nversion: 1\n")
    pytester.makepyfile(test_order="""
        import pytest, requests

        @pytest.mark.llmops_cassette
        def test_polls():
            url = "https://adb-1234567890123456.7.azuredatabricks.net/api/2.1/clusters/get?cluster_id=c1"
            states = [requests.get(url).json()["state"] for _ in range(3)]
            assert states == ["PENDING", "PENDING", "RUNNING"]
    """)
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_recorded_429_then_200_replays_without_sleeping(pytester, lab_double, double_env, monkeypatch):
    pytester.makeconftest(sleeps.CONFTEST)
    pytester.makepyfile(test_retry="""
        def test_retried(azure_openai_client, azure_openai_deployment):
            reply = azure_openai_client.chat.completions.create(
                model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": "hello"}])
            assert reply.choices[0].message.content
    """)
    lab_double.openai.fail_next(status=429, count=1, retry_after=3)
    result = record(pytester)
    result.assert_outcomes(passed=1)
    text = (pytester.path / "cassettes" / "test_retry" / "test_retried.yaml").read_text()
    assert text.count("- request:") == 2 and "code: 429" in text
    # Recording waited out the 429's Retry-After of 3 s (less what had passed already)...
    assert sum(seconds for seconds, _ in sleeps.slept(pytester.path, "openai", "pytest_llmops.")) > 2.5
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    # ...the replay waits for nothing.
    assert sleeps.slept(pytester.path, "openai", "pytest_llmops.") == []


def test_a_cassette_written_by_plain_vcrpy_replays(pytester, lab_double, tmp_path: Path):
    import openai
    import vcr

    path = pytester.path / "cassettes" / "test_vcr" / "test_from_vcrpy.yaml"
    client = openai.AzureOpenAI(
        azure_endpoint=lab_double.url, api_key=SECRET_API_KEY, api_version="2024-05-01-preview"
    )
    with vcr.use_cassette(str(path), filter_headers=["api-key"]):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi vcrpy"}])
    url = lab_double.url
    lab_double.stop()
    pytester.makepyfile(test_vcr=f"""
        import openai, pytest

        def test_from_vcrpy(llmops_cassette):
            client = openai.AzureOpenAI(azure_endpoint={url!r}, api_key="x",
                                        api_version="2024-05-01-preview")
            reply = client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "Hi vcrpy"}}])
            assert reply.choices[0].message.content
    """)
    pytester.runpytest().assert_outcomes(passed=1)


def test_cassette_dir_ini_option(pytester, lab_double, double_env):
    pytester.makeini("[pytest]\nllmops_cassette_dir = recorded/llm\n")
    pytester.makepyfile(test_chat=CHAT)
    record(pytester, "-k", "test_joke").assert_outcomes(passed=1)
    assert (pytester.path / "recorded" / "llm" / "test_chat" / "test_joke.yaml").is_file()


def test_a_miss_on_long_prompts_shows_where_each_differs(pytester: pytest.Pytester):
    from tests import cassette_builders as build

    system = "You are a careful assistant. " * 20 + "Answer in English."
    user = "Here is a long document. " * 30 + "Summarise it for a manager."
    build.write(pytester.path, "test_long", "test_summary", build.chat(
        [{"role": "system", "content": system}, {"role": "user", "content": user}], "A summary."))
    changed_system = system.replace("in English", "in French")
    changed_user = user.replace("for a manager", "for an engineer")
    pytester.makepyfile(test_long=f"""
        import openai, pytest

        @pytest.mark.llmops_cassette
        def test_summary():
            client = openai.AzureOpenAI(azure_endpoint="https://resource.openai.azure.com", api_key="k",
                                        api_version="2024-05-01-preview")
            client.chat.completions.create(model="gpt-4o", messages=[
                {{"role": "system", "content": {changed_system!r}}},
                {{"role": "user", "content": {changed_user!r}}}])
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*body differs:",
        f"*messages[[]0[]].content: first difference at character {system.index('English')} "
        f"(recorded {len(system)} characters, sent {len(changed_system)}): recorded \"…*Answer in English.\" "
        "!= sent \"…*Answer in French.\"",
        f"*messages[[]1[]].content: first difference at character {user.index('manager') - 1} *"
        "recorded \"…*Summarise it for a manager.\" != sent \"…*Summarise it for an engineer.\"",
    ])
