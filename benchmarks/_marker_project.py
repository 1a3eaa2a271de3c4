"""Throw-away projects for ``bench_marker.py``: tests that each replay one chat completion
from their own cassette, marked with ``@pytest.mark.llmops`` or not."""

from __future__ import annotations

import json
from pathlib import Path

URI = (
    "https://resource.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
    "?api-version=2024-05-01-preview"
)

TESTS = """
import pytest

N = {n}


def ask(client, i):
    messages = [{{"role": "user", "content": f"Question {{i}}"}}]
    reply = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert reply.choices[0].message.content == f"Answer {{i}}"
"""

PLAIN = """
{mark}@pytest.mark.parametrize("i", range(N))
def test_ask(azure_openai_client, i):
    ask(azure_openai_client, i)
"""


def completion(i: int) -> str:
    return json.dumps({
        "id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1700000000,
        "model": "gpt-4o-2024-05-13",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": f"Answer {i}"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    })


def cassette(i: int) -> str:
    import yaml

    request = {"messages": [{"role": "user", "content": f"Question {i}"}], "model": "gpt-4o"}
    return yaml.safe_dump({
        "version": 1,
        "interactions": [{
            "request": {"method": "POST", "uri": URI, "body": json.dumps(request),
                        "headers": {"content-type": ["application/json"]}},
            "response": {"status": {"code": 200, "message": "OK"},
                         "headers": {"content-type": ["application/json"]},
                         "body": {"string": completion(i)}},
        }],
    })


def build_plain(root: Path, n: int, marked: bool) -> None:
    """``n`` tests in one module (``test_ask[0]`` ...), all marked or none, with cassettes."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")  # its own rootdir
    mark = "@pytest.mark.llmops\n" if marked else "@pytest.mark.llmops_cassette\n"
    (root / "test_bench.py").write_text(TESTS.format(n=n) + PLAIN.format(mark=mark))
    folder = root / "cassettes" / "test_bench"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"test_ask-{i}.yaml").write_text(cassette(i))
