"""The provisioned deployment's lifecycle across processes: Ctrl-C, xdist workers, and a
recorded provisioning replayed offline without waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import sleeps
from tests import test_azure_support as support
from tests.test_azure_support import (
    CHAT,
    CONFTEST,
    account_puts,
    unset,
    verbs,
)

arm_double = support.arm_double
azure_env = support.azure_env
WAITERS = ("azure.", "openai", "pytest_llmops.")
"""The modules whose sleeps are waits for the service: Azure's pollers, openai's retries, the
plugin's readiness checks and limiter."""

SLOW = """
import pathlib
import time

def test_slow(azure_openai_deployment):
    pathlib.Path("ready").write_text(azure_openai_deployment.region)
    time.sleep(120)
"""


def start_pytest(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_ctrl_c_during_the_tests_removes_and_purges(pytester: pytest.Pytester, arm_double, azure_env):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_slow=SLOW)
    process = start_pytest(pytester.path, "--llmops-live", "--llmops-provision")
    try:
        wait_for(lambda: (pytester.path / "ready").exists() or process.poll() is not None)
        assert process.poll() is None, process.communicate()[0]
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert "KeyboardInterrupt" in output
    [name] = account_puts(arm_double)
    assert verbs(arm_double, name) == ["created", "deleted", "purged"], output
    assert arm_double.arm.leaks() == []


def test_ctrl_c_while_creating_the_account_removes_it(pytester: pytest.Pytester, arm_double, azure_env):
    arm_double.arm.polls = 1000  # the account's creation never finishes by itself
    arm_double.arm.retry_after = "0.05"
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_slow=SLOW)
    process = start_pytest(pytester.path, "--llmops-live", "--llmops-provision")
    try:
        wait_for(
            lambda: len(arm_double.requests_to(r"/operationStatuses/")) >= 3 or process.poll() is not None
        )
        arm_double.arm.polls = 0  # removal operations finish at once
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert "KeyboardInterrupt" in output
    assert not (pytester.path / "ready").exists()
    [name] = account_puts(arm_double)
    assert verbs(arm_double, name) == ["created", "deleted", "purged"], output
    assert arm_double.arm.leaks() == []


WORKERS = """
import time
import pytest

@pytest.mark.parametrize("seconds", [0.0, 0.1, 0.5, 1.0])
def test_chat_late(azure_openai_client, azure_openai_deployment, seconds):
    time.sleep(seconds)
    reply = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": "Still there?"}])
    assert reply.choices[0].message.content
"""


def test_two_workers_share_one_deployment_removed_after_the_last(
    pytester: pytest.Pytester, arm_double, azure_env
):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_workers=WORKERS)
    result = pytester.runpytest_subprocess("-n", "2", "--llmops-live", "--llmops-provision")
    result.assert_outcomes(passed=4)
    [name] = account_puts(arm_double)  # provisioned once
    assert verbs(arm_double, name) == ["created", "deleted", "purged"]
    requests = arm_double.requests
    last_chat = max(i for i, r in enumerate(requests) if r.path.split("?")[0].endswith("/chat/completions"))
    removal = next(i for i, r in enumerate(requests) if r.method == "DELETE")
    assert removal > last_chat
    assert arm_double.arm.leaks() == []


def test_recorded_provisioning_replays_offline_without_waiting(
    pytester: pytest.Pytester, arm_double, azure_env, monkeypatch
):
    arm_double.arm.polls = 1  # every operation is in progress once: the client waits Retry-After
    arm_double.arm.retry_after = "1"
    arm_double.openai.fail_next(429, count=2, retry_after=1.0)  # the new deployment is not ready at once
    pytester.makeconftest(CONFTEST + sleeps.CONFTEST)
    pytester.makepyfile(test_lab="def test_deployment(azure_openai_deployment):\n    pass\n" + CHAT)
    recorded = pytester.runpytest("--llmops-record", "--llmops-provision")
    recorded.assert_outcomes(passed=2)
    # 4 operations (the account's creation needs none) and 2 readiness checks waited their
    # Retry-After of 1 s each.
    assert sum(seconds for seconds, _ in sleeps.slept(pytester.path, *WAITERS)) >= 6
    assert arm_double.arm.leaks() == []

    arm_double.stop()
    unset(monkeypatch, azure_env)
    replayed = pytester.runpytest_subprocess()
    replayed.assert_outcomes(passed=2)
    # The replay provisioned and removed, as the recording did, without a flag or variable,
    # and says that it replays (issue 14.9): nothing is created, nobody waits...
    replayed.stdout.fnmatch_lines(
        [
            "*[[]llmops] replaying the recorded creation of Azure OpenAI account llmops-*",
            "*[[]llmops] replaying the recorded creation of deployment gpt-4o of gpt-4o *",
            "*[[]llmops] replaying the recorded wait for deployment gpt-4o to answer (HTTP 429*",
            "*[[]llmops] replaying the recorded removal of Azure OpenAI account*",
        ]
    )
    assert "[llmops] creating" not in replayed.stdout.str() and "waiting for" not in replayed.stdout.str()
    # ...and without waiting for the recorded Retry-After (6 s): no waiter slept at all.
    assert sleeps.slept(pytester.path, *WAITERS) == []
