"""A small app tested with the base install only (``pip install pytest-llmops``, no extras):
the Azure OpenAI fixtures and cassettes. CI replays it from ``cassettes/`` in a fresh venv."""

from __future__ import annotations

from typing import Any


def one_line_summary(client: Any, deployment: str, text: str) -> str:
    """The app under test: summarise ``text`` in one line."""
    reply = client.chat.completions.create(
        model=deployment,
        messages=[
            {"role": "system", "content": "Summarise the user's text in one line."},
            {"role": "user", "content": text},
        ],
        temperature=0,
    )
    return str(reply.choices[0].message.content).strip()


def test_summary_is_one_line(azure_openai_client, azure_openai_deployment):
    summary = one_line_summary(
        azure_openai_client, azure_openai_deployment.deployment,
        "pytest-llmops records the HTTP traffic of LLM tests once and replays it offline.",
    )
    assert summary
    assert "\n" not in summary


def test_streamed_answer_arrives_in_pieces(azure_openai_client, azure_openai_deployment):
    stream = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment,
        messages=[{"role": "user", "content": "Tell me a joke about animals."}],
        stream=True,
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1
    assert "".join(pieces).strip()
