"""Cloud resources a session creates: tags, provision-once across xdist workers, teardown
after the last worker, and progress on the terminal.

Under xdist every worker runs session fixtures itself. :func:`shared` makes the first
worker that needs a resource create it (under a file lock) and every other worker attach
to it; the creator removes it only once every worker has finished its tests (each worker
says so before tearing down its own session fixtures, so two creators never wait on
each other).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_llmops import session
from pytest_llmops import settings as settings_mod

CREATED_BY = "pytest-llmops"
TAG_CREATED_BY = "CreatedBy"
TAG_REMOVE_AFTER = "RemoveAfter"
TAG_SESSION = "LLMOpsSession"
REMOVE_AFTER_FORMAT = "%Y%m%d%H"
DEFAULT_LIFETIME = dt.timedelta(hours=2)
WAIT_FOR_WORKERS_S = 3600.0


def remove_after(now: dt.datetime | None = None, lifetime: dt.timedelta = DEFAULT_LIFETIME) -> str:
    """The UTC hour after which a sweep may delete a resource, as ``YYYYMMDDHH``."""
    now = now or dt.datetime.now(dt.UTC)
    return (now + lifetime).strftime(REMOVE_AFTER_FORMAT)


def parse_remove_after(value: str) -> dt.datetime | None:
    """The time of a ``RemoveAfter`` tag, or None if it is not one of ours."""
    try:
        return dt.datetime.strptime(value, REMOVE_AFTER_FORMAT).replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        return None


def tags(config: pytest.Config) -> dict[str, str]:
    """The tags of every resource this session creates."""
    return {
        TAG_CREATED_BY: CREATED_BY,
        TAG_REMOVE_AFTER: remove_after(),
        TAG_SESSION: session.session_id(config),
    }


def state_dir(config: pytest.Config) -> Path:
    """A folder shared by the controller and workers of this invocation."""
    root = _run_dir(config)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run_dir(config: pytest.Config) -> Path:
    return settings_mod.get(config).rootdir / ".llmops" / "run" / session.session_id(config)


def progress(config: pytest.Config, message: str) -> None:
    """Show a progress line on the terminal now, even while output is captured (and on
    stderr in xdist workers, whose terminal is the controller's)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and not session.is_worker(config):
        ctx = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with ctx:
            reporter.write_line(f"[llmops] {message}")
    else:
        print(f"[llmops {session.worker_id(config)}] {message}", file=sys.__stderr__, flush=True)


def creation_line(what: str, *, replaying: bool, detail: str = "", duration: str = "") -> str:
    """The progress line announcing a creation: live, what is created (and how long that
    takes); in replay, that the recorded creation is replayed (nothing waits then)."""
    details = f" ({detail})" if detail else ""
    if replaying:
        return f"replaying the recorded creation of {what}{details}"
    return f"creating {what}{details}" + (f"; {duration}" if duration else "")


def removal_line(what: str, *, replaying: bool, detail: str = "") -> str:
    """The progress line announcing a removal, live or replayed."""
    details = f" ({detail})" if detail else ""
    return f"replaying the recorded removal of {what}{details}" if replaying else f"removing {what}{details}"


def remove_shared_state(config: pytest.Config, settings: settings_mod.Settings) -> None:
    """At the end of the session, in the controller (or a run without xdist): remove what
    this invocation shared through files (after adding the workers' pacing totals)."""
    if session.is_worker(config):
        return
    import shutil

    run_dir = _run_dir(config)
    if settings.network:
        from pytest_llmops.traffic import summary

        summary.collect_summary(config, run_dir)  # the workers' totals, before their files go
    shutil.rmtree(run_dir, ignore_errors=True)


def worker_done(config: pytest.Config) -> None:
    """Mark this worker as finished with its tests (called before its session teardown)."""
    (state_dir(config) / f"done-{session.worker_id(config)}").touch()


def _all_workers_done(config: pytest.Config) -> bool:
    return len(list(state_dir(config).glob("done-*"))) >= session.worker_count(config)


@dataclass
class Shared:
    """A resource descriptor and whether this process created it."""

    value: dict[str, Any]
    created: bool


@contextlib.contextmanager
def shared(
    config: pytest.Config,
    name: str,
    create: Callable[[], dict[str, Any]],
    remove: Callable[[dict[str, Any]], None],
    *,
    describe: Callable[[dict[str, Any]], str] = lambda value: json.dumps(value),
) -> Iterator[Shared]:
    """Create a resource once for the whole invocation, share it, and remove it after the
    last worker. ``create`` returns a JSON-able descriptor; ``remove`` gets it back.

    A failed ``create`` is not shared: every worker that needs the resource sees its own
    error. With ``--llmops-keep-resources`` nothing is removed and the descriptor is
    printed.
    """
    from filelock import FileLock

    directory = state_dir(config)
    record = directory / f"{name}.json"
    with FileLock(str(directory / f"{name}.lock")):
        if record.is_file():
            resource = Shared(json.loads(record.read_text()), created=False)
        else:
            value = create()
            tmp = record.with_suffix(".tmp")
            tmp.write_text(json.dumps(value))
            os.replace(tmp, record)
            resource = Shared(value, created=True)
    try:
        yield resource
    finally:
        if resource.created:
            if settings_mod.get(config).keep_resources:
                progress(config, f"kept {name} ({describe(resource.value)}): remove it yourself, or run "
                         "`pytest-llmops sweep` after its RemoveAfter tag passed")
            else:
                _wait_for_workers(config, name)
                remove(resource.value)


def _wait_for_workers(config: pytest.Config, name: str) -> None:
    if not session.is_worker(config):
        return
    worker_done(config)
    started = time.monotonic()
    announced = False
    while not _all_workers_done(config):
        waited = time.monotonic() - started
        if waited > WAIT_FOR_WORKERS_S:
            progress(config, f"gave up waiting for the other workers after {waited:.0f} s; removing {name}")
            return
        if not announced and waited > 2:
            progress(config, f"{name}: waiting for the other workers to finish before removing it")
            announced = True
        time.sleep(0.2)
