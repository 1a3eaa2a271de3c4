"""A cassette recorded by pytest-recording replays unchanged through the plugin. The cassette
is the project's own (tests/data/pytest_recording/, made by record_app.py there), so this
holds without ../shared: a plain chat completion and a stream, as pytest-recording writes
them, in its layout (``tests/cassettes/<module>/<test>.yaml``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HELD = Path(__file__).parent / "data" / "pytest_recording" / "cassettes" / "record_app" / "test_chat_and_stream.yaml"

APP_TEST = """
import openai
import pytest


@pytest.mark.llmops_cassette(name="test_app/test_chat_and_stream")
def test_chat_and_stream(llmops_cassette):
    client = openai.AzureOpenAI(azure_endpoint="https://contoso-openai.openai.azure.com", api_key="any",
                                api_version="2024-10-21")
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Name a colour of the rainbow."}])
    assert reply.choices[0].message.content
    chunks = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Count to three."}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert llmops_cassette.played == llmops_cassette.recorded == 2
"""


def test_a_pytest_recording_cassette_replays_unchanged(pytester: pytest.Pytester):
    target = pytester.path / "tests" / "cassettes" / "test_app" / "test_chat_and_stream.yaml"
    target.parent.mkdir(parents=True)
    shutil.copy(HELD, target)
    pytester.makeini("[pytest]\nllmops_cassette_dir = tests/cassettes\n")
    (pytester.path / "tests" / "test_app.py").write_text(APP_TEST)
    result = pytester.runpytest("-p", "no:recording", "tests/test_app.py")
    result.assert_outcomes(passed=1)
    assert target.read_bytes() == HELD.read_bytes()


def test_the_held_cassette_is_pytest_recordings_format():
    """What makes it a pytest-recording cassette and not one of ours: vcrpy's plain layout
    with no plugin metadata, the key header filtered out, and the host as recorded."""
    text = HELD.read_text()
    assert text.startswith("interactions:\n- request:") and text.endswith("version: 1\n")
    assert "metadata:" not in text and "api-key" not in text and "<redacted>" not in text
    assert text.count("uri: https://contoso-openai.openai.azure.com/openai/deployments/gpt-4o/chat/completions") == 2
