"""Record modes (``--llmops-record-mode=all|missing|new``, ``LLMOPS_RECORD_MODE``): what reaches
the lab double, what is written, and what is kept byte for byte."""

from __future__ import annotations

import pytest

from tests import test_azure_support as support
from tests.test_azure_support import CONFTEST, account_puts, unset
from tests.test_record_replay import CHAT, record

arm_double = support.arm_double
azure_env = support.azure_env

SHOW = """
from pytest_llmops import settings

def test_show(pytestconfig):
    chosen = settings.get(pytestconfig)
    print(f"MODE={chosen.mode} RECORD_MODE={chosen.record_mode}")
"""

ONE_MORE_QUESTION = CHAT.replace(
    "    assert reply.usage.completion_tokens > 0\n",
    "    assert reply.usage.completion_tokens > 0\n"
    "    ask(azure_openai_client, azure_openai_deployment, 'And one about birds?')\n",
    1,
)


def chats(double) -> int:
    return len(double.requests_to(r"/chat/completions$", "POST"))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--llmops-record-mode=missing"], {}, "MODE=record RECORD_MODE=missing"),
        (["--llmops-record-mode", "new"], {}, "MODE=record RECORD_MODE=new"),
        ([], {"LLMOPS_RECORD_MODE": "missing"}, "MODE=record RECORD_MODE=missing"),
        ([], {"LLMOPS_MODE": "record", "LLMOPS_RECORD_MODE": "NEW"}, "MODE=record RECORD_MODE=new"),
        (["--llmops-record"], {}, "MODE=record RECORD_MODE=all"),
        # the command line wins over the environment; --llmops-record is the short form of `all`
        (["--llmops-record-mode=all"], {"LLMOPS_RECORD_MODE": "missing"}, "MODE=record RECORD_MODE=all"),
        (["--llmops-record"], {"LLMOPS_RECORD_MODE": "new"}, "MODE=record RECORD_MODE=all"),
        (["--llmops-live"], {"LLMOPS_RECORD_MODE": "missing"}, "MODE=live*"),
        (["--llmops-record-mode=missing"], {"LLMOPS_MODE": "live"}, "MODE=record RECORD_MODE=missing"),
    ],
)
def test_record_mode_resolution(pytester: pytest.Pytester, monkeypatch, args, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(SHOW)
    result = pytester.runpytest("-s", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{expected}*"])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--llmops-record-mode=sometimes"], {},
         "*--llmops-record-mode='sometimes' is not one of all, missing, new. Example: `pytest --llmops-record-mode=missing`*"),
        (["--llmops-live", "--llmops-record-mode=new"], {}, "*--llmops-live and --llmops-record-mode contradict*"),
        ([], {"LLMOPS_RECORD_MODE": "once"}, "*LLMOPS_RECORD_MODE='once' is not a record mode. Use one of: all, missing, new*"),
        ([], {"LLMOPS_MODE": "live", "LLMOPS_RECORD_MODE": "new"},
         "*LLMOPS_MODE=live and LLMOPS_RECORD_MODE=new contradict each other*"),
    ],
)
def test_wrong_record_modes_are_usage_errors(pytester: pytest.Pytester, monkeypatch, args, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(SHOW)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_record_flag_still_takes_no_value(pytester: pytest.Pytester, lab_double, double_env):
    pytester.makepyfile(test_chat=CHAT)
    record(pytester, "test_chat.py").assert_outcomes(passed=2)  # test_chat.py is a path, not a mode


def test_missing_replays_existing_cassettes_sealed_and_records_the_others(
    pytester: pytest.Pytester, lab_double, double_env
):
    pytester.makepyfile(test_chat=CHAT)
    record(pytester, "-k", "test_joke").assert_outcomes(passed=1)
    folder = pytester.path / "cassettes" / "test_chat"
    joke = folder / "test_joke.yaml"
    session = pytester.path / "cassettes" / "_session" / "azure_openai_deployment.yaml"
    kept = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (joke, session)}

    sent = chats(lab_double)
    pytester.runpytest("--llmops-record-mode=missing").assert_outcomes(passed=2)
    assert chats(lab_double) == sent + 2, "only test_two_questions (two questions) reached the service"
    assert (folder / "test_two_questions.yaml").is_file()
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in kept} == kept

    # Sealed: a test whose cassette exists never reaches the service, even with a new request.
    pytester.makepyfile(test_chat=CHAT.replace("about animals", "about cats"))
    sent = chats(lab_double)
    result = pytester.runpytest("--llmops-record-mode=missing", "-k", "test_joke")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "ReplayMiss: test_chat.py::test_joke made a request that its cassette has no recording for.",
        '*messages[[]1[]].content: recorded "Tell me a joke about animals." != sent "Tell me a joke about cats."',
        "*--llmops-record-mode=new adds the requests they lack*",
    ])
    assert chats(lab_double) == sent
    assert joke.read_bytes() == kept[joke][0]


def test_new_appends_what_a_cassette_lacks_and_keeps_the_rest_byte_for_byte(
    pytester: pytest.Pytester, lab_double, double_env, monkeypatch
):
    pytester.makepyfile(test_chat=CHAT)
    record(pytester, "-k", "test_joke").assert_outcomes(passed=1)
    joke = pytester.path / "cassettes" / "test_chat" / "test_joke.yaml"
    before = joke.read_text()

    pytester.makepyfile(test_chat=ONE_MORE_QUESTION)
    sent = chats(lab_double)
    pytester.runpytest("--llmops-record-mode=new", "-k", "test_joke").assert_outcomes(passed=1)
    assert chats(lab_double) == sent + 1, "only the question the cassette lacked reached the service"
    after = joke.read_text()
    assert after.count("- request:") == 2
    recorded_before = before.split("\nversion: 1")[0]
    assert after.startswith(recorded_before), "the interaction recorded before is kept byte for byte"
    assert "And one about birds?" in " ".join(after[len(recorded_before):].split())  # YAML folds long lines

    # Nothing new: the file is not touched at all.
    mtime = joke.stat().st_mtime_ns
    pytester.runpytest("--llmops-record-mode=new", "-k", "test_joke").assert_outcomes(passed=1)
    assert joke.stat().st_mtime_ns == mtime and joke.read_text() == after

    lab_double.stop()
    unset(monkeypatch, double_env)
    pytester.runpytest("-k", "test_joke").assert_outcomes(passed=1)


def test_missing_replays_a_recorded_provisioning_and_refuses_new_tests_its_placeholder(
    pytester: pytest.Pytester, arm_double, azure_env
):
    """A provisioning session cassette that exists replays under missing/new (creating the
    resources again would cost minutes): tests with a cassette replay, nothing is created,
    and a test without one is told why it cannot be recorded against a replayed resource."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lab=support.CHAT)
    pytester.runpytest("--llmops-record", "--llmops-provision").assert_outcomes(passed=1)
    assert len(account_puts(arm_double)) == 1
    session = pytester.path / "cassettes" / "_session" / "azure_openai_deployment.yaml"
    kept = session.read_bytes()

    pytester.makepyfile(test_new=support.CHAT.replace("def test_chat", "def test_new_chat"))
    requests_before = len(arm_double.requests)
    result = pytester.runpytest("--llmops-record-mode=missing", "--llmops-provision")
    result.assert_outcomes(passed=1, failed=1)
    assert len(account_puts(arm_double)) == 1, "nothing was created again"
    assert len(arm_double.requests) == requests_before, "the replayed session and test sent nothing"
    result.stdout.fnmatch_lines([
        "*test_new.py::test_new_chat sent a request to resource.openai.azure.com, the placeholder host of a "
        "replayed session fixture*--llmops-record-mode=all --llmops-provision*",
    ])
    assert session.read_bytes() == kept
    assert not (pytester.path / "cassettes" / "test_new").exists()
