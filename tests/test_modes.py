"""The three modes, as a user selects them: flags, LLMOPS_MODE, and their conflicts."""

from __future__ import annotations

import pytest

SHOW_MODE = """
def test_mode(llmops_mode):
    print(f"MODE={llmops_mode}")
"""


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], None, "replay"),
        (["--llmops-live"], None, "live"),
        (["--llmops-record"], None, "record"),
        ([], "live", "live"),
        ([], "RECORD", "record"),
        ([], "replay", "replay"),
        (["--llmops-live"], "record", "live"),  # the command line wins over the environment
        (["--llmops-record"], "live", "record"),
    ],
)
def test_mode_resolution(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args, env, expected):
    if env is not None:
        monkeypatch.setenv("LLMOPS_MODE", env)
    pytester.makepyfile(SHOW_MODE)
    result = pytester.runpytest("-s", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*MODE={expected}*"])


def test_live_and_record_together_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(SHOW_MODE)
    result = pytester.runpytest("--llmops-live", "--llmops-record")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llmops-live and --llmops-record contradict each other*"])


def test_unknown_llmops_mode_is_a_usage_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LLMOPS_MODE", "playback")
    pytester.makepyfile(SHOW_MODE)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*LLMOPS_MODE='playback' is not a mode*replay, live, record*"])
