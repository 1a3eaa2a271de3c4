"""The pacing section of the terminal summary: per deployment, the requests, how long the
run waited for the limit, and the 429s it met."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_llmops.traffic.ledger import held_seconds

summary_key = pytest.StashKey[list[str]]()


def collect_summary(config: pytest.Config, run_dir: Path) -> None:
    """Read every limiter's totals (controller, at the end, before the run folder goes)."""
    lines = []
    for path in sorted(run_dir.glob("pacing-*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        lines.append(summary_line(state))
    if lines:
        config.stash[summary_key] = lines


def summary_line(state: Mapping[str, Any]) -> str:
    """One deployment's pacing, for the terminal."""
    stats = state["stats"]
    line = (
        f"{state['deployment']} at {state['host']}: {stats['requests']} requests; "
        f"waited {held_seconds(state):.1f} s for the rate limit ({stats['held']} requests held, "
        f"{stats['waited']:.1f} s summed over them); "
        f"{stats['throttled']} answered 429 ({stats['retried']} sent again)"
    )
    if stats["exhausted"]:
        line += f"; {stats['exhausted']} still 429 after llmops_max_429_retries (failed)"
    return f"{line}; limits: {state.get('limits', 'none known')}"


def write_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The pacing section of the terminal summary."""
    lines = config.stash.get(summary_key, None)
    if not lines:
        return
    terminalreporter.write_sep("-", "llmops: rate limit")
    for line in lines:
        terminalreporter.write_line(line)
