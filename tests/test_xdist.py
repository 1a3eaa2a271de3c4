"""Cassettes under pytest-xdist: 24 tests recorded and replayed with -n 2."""

from __future__ import annotations

import pytest

MANY = """
import pytest

@pytest.mark.parametrize("n", range(24))
def test_ask(azure_openai_client, azure_openai_deployment, n):
    reply = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": f"Question number {n}?"}])
    assert reply.choices[0].message.content
"""


def test_record_and_replay_with_two_workers(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    pytester.makepyfile(test_many=MANY)
    recorded = pytester.runpytest_subprocess("-n", "2", "--llmops-record")
    recorded.assert_outcomes(passed=24)
    files = sorted((pytester.path / "cassettes" / "test_many").iterdir())
    assert len(files) == 24
    assert not list(pytester.path.rglob("*.tmp"))
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    replayed = pytester.runpytest_subprocess("-n", "2")
    replayed.assert_outcomes(passed=24)
    assert not (pytester.path / ".llmops" / "run").exists() or not any((pytester.path / ".llmops" / "run").iterdir())
