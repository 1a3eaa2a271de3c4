"""Stale cassettes: in live mode each live answer is compared with the recorded one, and
the summary lists recordings that no longer match what the service answers."""

from __future__ import annotations

import pytest

SUITE = """
def test_joke(azure_openai_client, azure_openai_deployment):
    azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment,
        messages=[{"role": "user", "content": "Tell me a joke about animals."}], **OPTIONS)

def test_stream(azure_openai_client, azure_openai_deployment):
    chunks = list(azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, stream=True,
        messages=[{"role": "user", "content": "What does an otter eat?"}]))
    assert chunks
"""


def test_live_answers_are_compared_with_the_recordings(
    pytester: pytest.Pytester, lab_double, double_env, monkeypatch: pytest.MonkeyPatch
):
    pytester.makepyfile(test_app="OPTIONS = {}\n" + SUITE)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=2)
    joke = pytester.path / "cassettes" / "test_app" / "test_joke.yaml"
    recorded = joke.read_text()

    # The service still answers as recorded: nothing is stale.
    fresh = pytester.runpytest("--llmops-live")
    fresh.assert_outcomes(passed=2)
    assert "llmops: stale cassettes" not in fresh.stdout.str()

    # The model behind the deployment changed: the same requests get other answers.
    from tests.double import openai_content

    monkeypatch.setattr(openai_content, "answer_text", lambda user_text: "No.")
    stale = pytester.runpytest("--llmops-live")
    stale.assert_outcomes(passed=2)
    stale.stdout.fnmatch_lines([
        "*llmops: stale cassettes*",
        "2 recorded answer(s) no longer match the live service*",
        f"  {joke}: POST /openai/deployments/gpt-4o/chat/completions: completion tokens * -> 2; answer text *% similar",
        "*test_stream.yaml: POST /openai/deployments/gpt-4o/chat/completions: answer text *% similar",
    ])
    assert joke.read_text() == recorded, "live mode never writes cassettes"
