"""Requests from several threads at once go through the cassette, each of them.

vcrpy's connection stubs (``requests``, ``urllib3``, ``http.client``) put the real HTTP classes
back while they build, connect or send a real connection (its ``force_reset``); done for
the whole process, a request another thread starts in that moment (``httpx2`` for openai,
``requests``) would bypass the cassette: sent unrecorded while recording, sent to the
sealed network in replay. The inner test makes that moment certain, not likely: the first
connection the test's main thread builds (inside vcrpy's reset) runs another thread's
requests to completion before it goes on.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from pytest_llmops.cassettes.recorder import Recorder
from tests import cassette_builders
from tests.conftest import SECRET_API_KEY, all_bytes
from tests.double import LabDouble

PROJECT = """
import os
import threading

import openai
import pytest
import requests
import urllib3.connection

ENDPOINT = os.environ["AZURE_OPENAI_ENDPOINT"].rstrip("/")
KEY = os.environ["AZURE_OPENAI_API_KEY"]
VERSION = os.environ["AZURE_OPENAI_API_VERSION"]


def ask_with_requests(question):
    reply = requests.post(f"{ENDPOINT}/openai/deployments/gpt-4o/chat/completions", params={"api-version": VERSION},
                          headers={"api-key": KEY}, json={"messages": [{"role": "user", "content": question}]},
                          timeout=30)
    reply.raise_for_status()
    return reply.json()["choices"][0]["message"]["content"]


def ask_with_openai(question):
    client = openai.AzureOpenAI(azure_endpoint=ENDPOINT, api_key=KEY, api_version=VERSION, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": question}])
    return reply.choices[0].message.content


@pytest.mark.llmops_cassette
def test_two_threads(monkeypatch):
    answers, errors = {}, []

    def other_thread():
        try:
            answers["openai"] = ask_with_openai("Asked with openai from the other thread.")
            answers["requests"] = ask_with_requests("Asked with requests from the other thread.")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    # During the session urllib3's module names vcrpy's stub; the real class is among its bases.
    real = next(k for k in urllib3.connection.HTTPConnection.__mro__ if k.__module__ == "urllib3.connection")
    real_init = real.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        if not answers and not errors:  # the main thread's first connection, built inside vcrpy's reset
            other = threading.Thread(target=other_thread)
            other.start()
            other.join()

    monkeypatch.setattr(real, "__init__", init)
    answers["main"] = ask_with_requests("Asked with requests from the main thread.")
    assert not errors, errors
    assert sorted(answers) == ["main", "openai", "requests"] and all(answers.values())
"""

QUESTIONS = (
    "Asked with requests from the main thread.",
    "Asked with openai from the other thread.",
    "Asked with requests from the other thread.",
)


def test_every_threads_requests_are_recorded_and_replayed(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_threads=PROJECT)
    recorded = pytester.runpytest("--llmops-record", "-p", "no:cacheprovider")
    recorded.assert_outcomes(passed=1)
    assert len(lab_double.requests_to(r"/chat/completions$")) == 3
    cassette = yaml.safe_load((pytester.path / "cassettes" / "test_threads" / "test_two_threads.yaml").read_text())
    asked = sorted(json.loads(i["request"]["body"])["messages"][0]["content"] for i in cassette["interactions"])
    assert asked == sorted(QUESTIONS)
    assert SECRET_API_KEY.encode() not in all_bytes(pytester.path / "cassettes")

    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    replayed = pytester.runpytest("-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)


class _PausingCounts(collections.Counter):  # type: ignore[type-arg]
    """vcrpy's play counts; the main thread's ``pause_at``-th look at one runs ``meanwhile``."""

    def __init__(self, pause_at: int, meanwhile: Callable[[], None]) -> None:
        super().__init__()
        self.looks = 0
        self.pause_at = pause_at
        self.meanwhile = meanwhile

    def __getitem__(self, key: Any) -> int:
        value = super().__getitem__(key)
        if threading.current_thread() is threading.main_thread():
            self.looks += 1
            if self.looks == self.pause_at:
                self.meanwhile()
        return value


def test_identical_requests_from_two_threads_replay_each_interaction_once(tmp_path: Path) -> None:
    """Two threads replay the same request (two judges on equal rows, say): one gets the first
    answer, the other the second, although the other thread asks just after the first found
    its interaction and before it took it."""
    path = cassette_builders.write(
        tmp_path, "m", "t", *(cassette_builders.chat(cassette_builders.question("Same?"), f"answer {n}") for n in (1, 2))
    )
    recorder = Recorder("replay", tmp_path / "cassettes")
    cassette = recorder.cassette(path, "m.py::t")
    answers: list[str] = []
    others: list[threading.Thread] = []

    def ask() -> None:
        with httpx2.Client() as client:
            reply = client.post(cassette_builders.CHAT_URI, json={"messages": cassette_builders.question("Same?"),
                                                                 "model": "gpt-4o"})
        answers.append(reply.json()["choices"][0]["message"]["content"])

    def other_thread_asks() -> None:
        other = threading.Thread(target=ask)
        others.append(other)
        other.start()
        other.join(timeout=2.0)  # held back until the first thread took its interaction (or done)

    # vcrpy asks whether it can play (one look), then plays (the second look, then the taking).
    counts = _PausingCounts(pause_at=2, meanwhile=other_thread_asks)
    cassette._vcr.play_counts = counts
    try:
        with cassette.activate():
            ask()
            for other in others:
                other.join()
    finally:
        recorder.close()
    assert sorted(answers) == ["answer 1", "answer 2"]
