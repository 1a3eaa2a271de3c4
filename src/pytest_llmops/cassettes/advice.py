"""The commands and settings that fix a cassette problem, worded once for every message.
Imported by the plugin's hooks, so nothing heavy here."""

from __future__ import annotations

GIVE_A_CASSETTE = (
    "Give it a cassette: `@pytest.mark.llmops_cassette` on the test, `pytestmark = "
    "pytest.mark.llmops_cassette` in its module or class, or `llmops_cassettes = all` in the "
    "[pytest] ini section (every test then gets one)"
)


def record_command(nodeid: str | None) -> str:
    """The command that records a test's cassette (or the whole suite's)."""
    return f"pytest --llmops-record '{nodeid}'" if nodeid and "::" in nodeid else "pytest --llmops-record"


def no_cassette(nodeid: str, what: str) -> str:
    """Why a test without a cassette cannot replay, and how to give it one."""
    return (
        f"{nodeid} has no cassette, so {what}. {GIVE_A_CASSETTE}; then record it: "
        f"{record_command(nodeid)}"
    )
