"""No cassette lost to another test: tests sharing a file merge into it (also under xdist), a
test without requests leaves it alone, ids that differ only in characters a file name cannot
hold get files of their own; and re-recording an unchanged test changes no byte."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.test_record_replay import CHAT, record

ASK = """
import pytest


def ask(client, deployment, question):
    reply = client.chat.completions.create(
        model=deployment.deployment, messages=[{"role": "user", "content": question}])
    return reply.choices[0].message.content
"""

SHARED = ASK + """

@pytest.mark.llmops_cassette(name="shared/x")
def test_first(azure_openai_client, azure_openai_deployment):
    assert ask(azure_openai_client, azure_openai_deployment, "What is MLflow?")


@pytest.mark.llmops_cassette(name="shared/x")
def test_second(azure_openai_client, azure_openai_deployment):
    assert ask(azure_openai_client, azure_openai_deployment, "What is Databricks?")
    assert ask(azure_openai_client, azure_openai_deployment, "What is MLflow?")


@pytest.mark.llmops_cassette(name="shared/x")
def test_no_request():
    pass
"""

IDS = ASK + """

@pytest.mark.parametrize("topic", ["a/b", "a_b", "a b", "a?b"], ids=str)
@pytest.mark.llmops_cassette(match_on=["method", "path"])
def test_topic(azure_openai_client, azure_openai_deployment, topic):
    assert ask(azure_openai_client, azure_openai_deployment, f"Tell me a joke about {topic}.")


@pytest.mark.parametrize("question", ["What is MLflow?"], ids=str)
def test_alone(azure_openai_client, azure_openai_deployment, question):
    assert ask(azure_openai_client, azure_openai_deployment, question)
"""


def questions(path) -> list[str]:
    """The user questions of a cassette, in order."""
    data = yaml.safe_load(path.read_text())
    import json

    return [json.loads(i["request"]["body"])["messages"][-1]["content"] for i in data["interactions"]]


def offline(lab_double, double_env, monkeypatch) -> None:
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)


def test_tests_sharing_a_cassette_merge_into_it(pytester, lab_double, double_env, monkeypatch):
    pytester.makepyfile(test_shared=SHARED)
    record(pytester).assert_outcomes(passed=3)
    shared = pytester.path / "cassettes" / "shared" / "x.yaml"
    assert questions(shared) == ["What is MLflow?", "What is Databricks?"], "ordered, without duplicates"

    # A test that makes no request leaves the shared file alone.
    before = (shared.read_bytes(), shared.stat().st_mtime_ns)
    record(pytester, "-k", "test_no_request").assert_outcomes(passed=1)
    assert (shared.read_bytes(), shared.stat().st_mtime_ns) == before

    # Re-recorded in another session, the file is rebuilt from that session's tests only.
    record(pytester, "-k", "test_first").assert_outcomes(passed=1)
    assert questions(shared) == ["What is MLflow?"]
    record(pytester).assert_outcomes(passed=3)

    offline(lab_double, double_env, monkeypatch)
    pytester.runpytest().assert_outcomes(passed=3)


def test_sharing_across_xdist_workers(pytester, lab_double, double_env, monkeypatch):
    many = SHARED + "".join(
        f"""

@pytest.mark.llmops_cassette(name="shared/x")
def test_more_{n}(azure_openai_client, azure_openai_deployment):
    assert ask(azure_openai_client, azure_openai_deployment, "Question {n}?")
"""
        for n in range(6)
    )
    pytester.makepyfile(test_shared=many)
    record(pytester, "-n", "2").assert_outcomes(passed=9)
    shared = pytester.path / "cassettes" / "shared" / "x.yaml"
    assert sorted(questions(shared)) == sorted(
        ["What is MLflow?", "What is Databricks?", *(f"Question {n}?" for n in range(6))]
    )
    assert not list(shared.parent.glob("*.tmp"))
    offline(lab_double, double_env, monkeypatch)
    pytester.runpytest("-n", "2").assert_outcomes(passed=9)


def test_ids_that_differ_only_in_unsafe_characters_get_distinct_files(
    pytester, lab_double, double_env, monkeypatch
):
    pytester.makepyfile(test_ids=IDS)
    record(pytester).assert_outcomes(passed=5)
    folder = pytester.path / "cassettes" / "test_ids"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 5
    # Names without a collision stay as they always were (shipped cassettes keep their paths).
    assert "test_topic-a_b.yaml" in names and "test_alone-What_is_MLflow.yaml" in names
    by_topic = {questions(folder / name)[0]: name for name in names if name.startswith("test_topic")}
    assert sorted(by_topic) == sorted(f"Tell me a joke about {t}." for t in ["a/b", "a_b", "a b", "a?b"])
    assert by_topic["Tell me a joke about a_b."] == "test_topic-a_b.yaml"

    offline(lab_double, double_env, monkeypatch)
    pytester.runpytest().assert_outcomes(passed=5)
    # The name does not depend on which tests were selected.
    pytester.runpytest("test_ids.py::test_topic[a b]").assert_outcomes(passed=1)
    pytester.runpytest("test_ids.py::test_topic[a?b]").assert_outcomes(passed=1)


def test_rerecording_an_unchanged_test_changes_no_byte(pytester, lab_double, double_env):
    pytester.makepyfile(test_chat=CHAT)
    record(pytester).assert_outcomes(passed=2)
    folder = pytester.path / "cassettes" / "test_chat"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    text = (folder / "test_joke.yaml").read_text()
    assert "date:" in text and '"created":' in text  # volatile, different on every answer
    record(pytester).assert_outcomes(passed=2)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before

    # A real change is written.
    pytester.makepyfile(test_chat=CHAT.replace("about animals", "about cats"))
    record(pytester, "-k", "test_joke").assert_outcomes(passed=1)
    assert "about cats" in (folder / "test_joke.yaml").read_text()


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640)])
def test_cassette_files_get_umask_permissions(pytester, lab_double, double_env, umask, expected):
    pytester.makepyfile(test_chat=CHAT)
    old = os.umask(umask)
    try:
        record(pytester, "-k", "test_joke").assert_outcomes(passed=1)
    finally:
        os.umask(old)
    path = pytester.path / "cassettes" / "test_chat" / "test_joke.yaml"
    assert path.stat().st_mode & 0o777 == expected
