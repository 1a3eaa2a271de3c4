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


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("llmops_cassettes = some", "*llmops_cassettes = 'some' is not one of fixtures, all. Example: `llmops_cassettes = all`*"),
        ("llmops_tokens_per_minute = lots",
         "*llmops_tokens_per_minute = 'lots' is not a whole number >= 0. Example: `llmops_tokens_per_minute = 10000`*"),
        ("llmops_requests_per_minute = 1.5", "*llmops_requests_per_minute = '1.5' is not a whole number >= 0*"),
        ("llmops_rate_limit_window = soon", "*llmops_rate_limit_window = 'soon' is not a number >= 0*"),
        ("llmops_max_429_retries = -1", "*llmops_max_429_retries = '-1' is not a whole number >= 0*"),
        ("llmops_pacing = maybe", "*llmops_pacing: *'maybe'*Use true or false, e.g. `llmops_pacing = false`*"),
    ],
)
def test_ini_values_are_checked_at_start_up(pytester: pytest.Pytester, ini: str, message: str):
    """Checked once in pytest_configure, even when no test would read them (replay, no
    pacing): a usage error naming the option, not a setup error in each test."""
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(SHOW_MODE)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str() and "passed" not in result.stdout.str()
