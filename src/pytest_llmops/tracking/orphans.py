"""Runs left RUNNING: closed as KILLED, at the end of their own session, or by a later
session once theirs is dead.

A session that ends (even interrupted) ends its parent runs and the test runs still open
under them (:func:`close_open_runs`). A session that is killed (SIGKILL, the machine going
down, a CI job cancelled) cannot: its runs would stay RUNNING forever. So every session's
parent run carries its owner, :data:`OWNER_TAG` = ``"<host> <pid> <start>"`` of the pytest
process that runs the session (the xdist controller, not a worker), where ``<start>`` tells
that process apart from a later one with the same pid (the boot id and the process's start
time, on Linux). When a session first uses an experiment, it looks for parent runs still
RUNNING there whose owner is on this host and no longer alive, and closes them and their
open test runs as KILLED (:func:`close_dead_sessions`). Sessions of other hosts (a shared
tracking server) are left alone: whether they live cannot be told from here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

OWNER_TAG = "llmops.owner"
ROLE_TAG = "llmops.role"
SESSION_ROLE = "session"
"""``llmops.role=session`` tells a session's parent run from a test's."""
CLOSED_BY_TAG = "llmops.closed_by"


def owner(pid: int | None = None) -> str:
    """``"<host> <pid> <start>"`` of a process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()} {pid} {_start(pid) or '-'}"


def is_dead(owner_tag: str) -> bool:
    """Whether the process named by an :data:`OWNER_TAG` value is known to be gone: on this
    host, and its pid is free or now another process's. False when that cannot be told."""
    parts = owner_tag.split()
    if len(parts) != 3 or not parts[1].isdigit() or parts[0] != socket.gethostname():
        return False
    pid, start = int(parts[1]), parts[2]
    if not _alive(pid):
        return True
    current = _start(pid)
    return start != "-" and current is not None and current != start


def close_open_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, end_ms: int) -> int:
    """End the test runs still RUNNING under a session's parent run as KILLED (outcome
    ``interrupted``); how many."""
    where = f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'"
    open_runs = client.search_runs([experiment_id], filter_string=where, max_results=1000)
    for run in open_runs:
        client.set_tag(run.info.run_id, "llmops.outcome", "interrupted")
        client.set_terminated(run.info.run_id, "KILLED", end_time=end_ms)
    return len(open_runs)


def close_dead_sessions(client: MlflowClient, experiment_id: str, closed_by: str) -> list[str]:
    """Close the sessions of ``experiment_id`` left RUNNING by a pytest process of this host
    that is gone: their open test runs, then their parent run, as KILLED. The ids closed."""
    where = f"tags.`{ROLE_TAG}` = '{SESSION_ROLE}' and attributes.status = 'RUNNING'"
    closed = []
    for parent in client.search_runs([experiment_id], filter_string=where, max_results=1000):
        tag = parent.data.tags.get(OWNER_TAG)
        if tag is None or not is_dead(tag):
            continue
        now = int(time.time() * 1000)
        close_open_runs(client, experiment_id, parent.info.run_id, now)
        client.set_tag(parent.info.run_id, CLOSED_BY_TAG, closed_by)
        client.set_terminated(parent.info.run_id, "KILLED", end_time=now)
        closed.append(parent.info.run_id)
    return closed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rpartition(")")[2].split()[0] != "Z"  # a zombie has exited
    return True


def _start(pid: int) -> str | None:
    """``<boot id>:<start time in clock ticks>`` of a process (Linux), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    boot = _boot_id()
    return f"{boot}:{fields[19]}" if boot and len(fields) > 19 else None


@cache
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip()[:8]
    except OSError:
        return None
