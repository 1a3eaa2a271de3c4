"""One tracked test: whether a test is tracked, what it needs of tracking, and what its run
carries when it starts (:func:`start_tags`) and when it ends (:func:`run_end`: outcome,
status, params, metrics, tags, and the test's summary row)."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_llmops.stash import cassette_key
from pytest_llmops.tracking import runs
from pytest_llmops.tracking.summary import TestRecord
from pytest_llmops.tracking.traces import Collector
from pytest_llmops.validation import RunOptions

if TYPE_CHECKING:
    from mlflow.entities import Run

    from pytest_llmops.settings import Settings
    from pytest_llmops.tracking.sqlruns import RunFinish

TRACKING_FIXTURES = frozenset({"llmops_run", "llmops_traces", "mlflow_experiment"})
DEFAULT_EXPERIMENT = "pytest-llmops"
"""The experiment of marked tests when neither ``--llmops-experiment``, the ini option, nor the
marker names one."""


def is_tracked(item: pytest.Item) -> bool:
    """Whether a test runs inside its own MLflow run."""
    return item.get_closest_marker("llmops") is not None or "llmops_run" in getattr(item, "fixturenames", ())


def needs_tracking(item: pytest.Item) -> bool:
    """Whether the test uses its run, its traces or the experiment itself (by name, or
    through a fixture of its own), not only through the marker: it cannot run untracked."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    if TRACKING_FIXTURES.intersection(info.initialnames):
        return True
    return any(
        TRACKING_FIXTURES.intersection(definition.argnames)
        for name, definitions in info.name2fixturedefs.items()
        if name not in TRACKING_FIXTURES
        for definition in definitions
    )


@dataclass
class TrackedTest:
    """A test while its run is open (stashed on the item)."""

    run: Run
    collector: Collector
    experiment_id: str
    experiment: str = ""
    options: RunOptions = field(default_factory=RunOptions)
    outcome: str | None = None
    """Set when the run's end was handed to the writer."""
    traces_at_end: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    """Metrics other parts of the plugin add to the run before it ends (evaluation scores,
    ``llmops.cost_usd``, repetitions); they reach the summary row too."""
    notes: list[str] = field(default_factory=list)
    """What the summary should say about the test (a scorer that failed in an evaluation)."""


tracked_key = pytest.StashKey[TrackedTest]()


def parent_tags(command: str, owner: str, settings: Settings) -> dict[str, str]:
    """Tags of a session's parent run (before scrubbing)."""
    from pytest_llmops.tracking import orphans

    tags = {"llmops.mode": settings.mode, "llmops.command": runs.clip(command), orphans.OWNER_TAG: owner}
    commit = git_commit(str(settings.rootdir))
    if commit:
        tags.update({"llmops.git_commit": commit, "mlflow.source.git.commit": commit})
    return tags


def start_tags(
    item: pytest.Item,
    parent_run_id: str,
    options: RunOptions,
    settings: Settings,
    worker: str,
    session_id: str,
) -> dict[str, str]:
    """Tags known when the test starts (written with the run, in one insert)."""
    tags = {
        "mlflow.parentRunId": parent_run_id,
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": item.nodeid.split("::", 1)[0],
        "llmops.nodeid": item.nodeid,
        "llmops.mode": settings.mode,
        "llmops.worker": worker,
        "llmops.session_id": session_id,
    }
    commit = git_commit(str(settings.rootdir))
    if commit:
        tags.update({"llmops.git_commit": commit, "mlflow.source.git.commit": commit})
    tags.update({key: runs.clip(value) for key, value in (options.tags or {}).items()})
    return tags


def run_end(
    item: pytest.Item,
    tracked: TrackedTest,
    reports: dict[str, pytest.TestReport],
    outcome: str | None,
    rootdir: Path,
    worker: str,
) -> tuple[RunFinish, TestRecord]:
    """The end of the test's run (its outcome from ``reports`` unless given) and its
    summary row; ``tracked`` remembers the outcome and how many traces it counted."""
    from pytest_llmops.tracking.sqlruns import RunFinish

    result = outcome or runs.outcome(reports)
    status = runs.STATUS_OF_OUTCOME[result]
    run, collector = tracked.run, tracked.collector
    tracked.outcome, tracked.traces_at_end = result, len(collector.traces)
    call = reports.get("call")
    duration = float(call.duration) if call is not None else 0.0
    added = dict(tracked.metrics)
    metrics = {"llmops.duration_s": duration, **collector.stats.metrics(), **added}
    options = tracked.options
    params = {**runs.scalar_params(item), **{k: str(v) for k, v in (options.params or {}).items()}}
    tags = {"llmops.outcome": result}
    cassette = item.stash.get(cassette_key, None)
    if cassette is not None:
        tags["llmops.cassette"] = relative(Path(cassette.path), rootdir)
    finish = RunFinish(run.info.run_id, status, now_ms(), params, metrics, tags)
    stats = collector.stats
    record = TestRecord(
        nodeid=item.nodeid,
        outcome=result,
        run_id=run.info.run_id,
        experiment=tracked.experiment,
        worker=worker,
        duration_s=duration,
        llm_calls=stats.llm_calls,
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        total_tokens=stats.total_tokens,
        latency_ms_mean=metrics.get("llmops.latency_ms_mean"),
        latency_ms_max=metrics.get("llmops.latency_ms_max"),
        metrics=added,
        notes=list(tracked.notes),
    )
    return finish, record


@cache
def git_commit(rootdir: str) -> str | None:
    """The commit checked out in ``rootdir``, None outside a git work tree."""
    try:
        command = ["git", "-C", rootdir, "rev-parse", "HEAD"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def now_ms() -> int:
    return int(time.time() * 1000)


def relative(path: Path, rootdir: Path) -> str:
    try:
        return str(path.resolve().relative_to(rootdir.resolve()))
    except ValueError:
        return str(path)
