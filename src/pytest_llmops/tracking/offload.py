"""Traces and run ends written by a helper process, so that a pytest session without
xdist uses a second core for them.

Writing one trace to MLflow's SQLite store is ~5 ms of Python in MLflow's ORM (its
info, tags and metadata rows, then its spans), measured. It is the largest part of what a
marked test costs, and it need not delay the next test: :class:`TraceProcess` hands each
finished trace, in MLflow's own JSON form, and each run's end (:class:`.sqlruns.RunFinish`)
to ``python -m pytest_llmops.tracking.helper URI`` (:mod:`.helper`), which writes them in
order with a :class:`~pytest_llmops.tracking.writer.StoreWriter`, the traces of each burst
together.
Runs are still created by the tests' process: their row must exist before the test's code
may log into them (one short transaction, :mod:`.sqlruns`).

The helper is started with the first write of a session with at least :data:`MIN_TESTS`
tracked tests, and takes over once it has imported mlflow (~2 s): until then, and in
shorter sessions, the tests' process writes itself.

Correct and complete:

- :meth:`TraceProcess.flush` returns once every trace handed over so far is in the store
  (the helper acknowledges it), with the helper's write errors;
- a helper that cannot start, dies or stops answering: the traces it has not acknowledged
  come back to the tests' process, which writes them, and every later one, itself;
- Ctrl-C reaches the tests' process only (the helper has its own session and ignores
  SIGINT); at session end the helper is flushed, its input closed, and it exits. If the
  tests' process dies, the helper reads the end of its input, writes what it has, exits.

Under xdist the workers already keep the cores busy: each writes its own traces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pytest_llmops.tracking.sqlruns import RunFinish
from pytest_llmops.tracking.uri import sqlite_path

if TYPE_CHECKING:
    from mlflow.entities import Trace

_logger = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 300.0
"""How long a flush waits for the helper's answer before writing the traces itself."""
EXIT_TIMEOUT_S = 30.0
DISABLE_ENV = "LLMOPS_TRACE_PROCESS"
"""``LLMOPS_TRACE_PROCESS=0`` keeps trace writing in the tests' process; ``=1`` uses the
helper whatever the number of tracked tests."""
MIN_TESTS = 200
"""Tracked tests a session needs for the helper to pay off: at ~11 ms per marked test
written in-process, ~250 of them go by while the helper starts (``benchmarks/bench_marker.py``)."""


def wanted(uri: str, under_xdist: bool, tracked_tests: int) -> bool:
    """Whether a session writes its traces through a helper: a SQLite store (the others
    are a server's work, or Databricks'), no xdist, more than one core, POSIX, and at least
    :data:`MIN_TESTS` tracked tests (``LLMOPS_TRACE_PROCESS=1``: whatever their number;
    ``=0``: never).

    The helper imports mlflow on the other core (~2-3 s of CPU) and only takes over once it
    has: a shorter session would pay for it and never use it.
    """
    setting = os.environ.get(DISABLE_ENV, "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if sys.platform == "win32":  # select() on pipes is POSIX
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    enough = tracked_tests >= MIN_TESTS or setting in ("1", "true", "yes", "on")
    return sqlite_path(uri) is not None and not under_xdist and cores > 1 and enough


class HelperGone(Exception):
    """The helper process died, did not start, or stopped answering."""


class TraceProcess:
    """The tests' side of the helper: sends traces, waits for acknowledgements.

    ``send`` never blocks the test: a feeder thread writes to the helper's pipe (the pipe
    holds 64 KiB; the helper may still be importing mlflow). Called from one thread (the
    tests'), like the writer it serves.
    """

    def __init__(self, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        self._process = process
        self._stderr = stderr
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._unacknowledged: list[Trace | RunFinish] = []
        self._flushes = 0
        self._ready = False
        self._broken = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="llmops-trace-feeder", daemon=True)
        self._feeder.start()

    @classmethod
    def start(cls, uri: str) -> TraceProcess:
        """Start ``python -m pytest_llmops.tracking.helper URI`` (it imports mlflow while
        the tests go on)."""
        import pytest_llmops

        env = dict(os.environ)
        env.pop("PYTEST_CURRENT_TEST", None)  # MLflow adds checks to every session under it
        source = str(Path(pytest_llmops.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest_llmops.tracking.helper", uri],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
        return cls(process, stderr)

    @property
    def ready(self) -> bool:
        """Whether the helper has started (imported mlflow, opened the store: ~2 s). Until
        then the tests' process writes everything itself: it never waits for the helper to
        start, and a short session never does."""
        stdout = self._process.stdout
        waiting = not self._ready and stdout is not None and not stdout.closed
        if waiting and stdout is not None and select.select([stdout], [], [], 0)[0]:
            line = stdout.readline()
            self._ready = line.startswith(b'{"ready"')
            if not self._ready:  # it died while starting: stays not ready
                _logger.warning("pytest-llmops: writing traces in this process: %s", self._why())
                self.stop()
        return self._ready

    # -- sending ------------------------------------------------------------------------
    def send(self, trace: Trace) -> None:
        """Hand a finished trace over (written soon, by the helper)."""
        self._unacknowledged.append(trace)
        self._outbox.put(b'{"op":"trace","trace":' + trace.to_json().encode() + b"}\n")

    def send_finish(self, finish: RunFinish) -> None:
        """Hand a run's end over (written in order with the traces)."""
        self._unacknowledged.append(finish)
        self._outbox.put(json.dumps({"op": "finish", "finish": dataclasses.asdict(finish)}).encode() + b"\n")

    def _feed(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        while True:
            line = self._outbox.get()
            if line is None:
                break
            try:
                stdin.write(line)
                if self._outbox.empty():
                    stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._broken.set()
                break
        with contextlib.suppress(OSError):
            stdin.close()

    # -- waiting ------------------------------------------------------------------------
    def flush(self) -> list[str]:
        """Wait until the helper has written every trace sent so far; its error messages.
        Raises :class:`HelperGone` (see :meth:`take_back`) if it cannot answer."""
        self._flushes += 1
        sent = len(self._unacknowledged)
        self._outbox.put(json.dumps({"op": "flush", "id": self._flushes}).encode() + b"\n")
        answer = self._answer(self._flushes)
        del self._unacknowledged[:sent]
        return list(answer.get("errors", []))

    def _answer(self, flush_id: int) -> dict[str, Any]:
        stdout = self._process.stdout
        assert stdout is not None
        while True:
            if self._broken.is_set():
                raise HelperGone(self._why())
            ready, _, _ = select.select([stdout], [], [], ANSWER_TIMEOUT_S)
            if not ready:
                raise HelperGone(f"no answer in {ANSWER_TIMEOUT_S:.0f} s")
            line = stdout.readline()
            if not line:
                raise HelperGone(self._why())
            try:
                answer = json.loads(line)
            except ValueError:
                continue  # not an answer
            if isinstance(answer, dict) and answer.get("ack") == flush_id:
                return answer

    def take_back(self) -> list[Trace | RunFinish]:
        """After :class:`HelperGone`: stop the helper, and the traces and run ends it did not
        acknowledge, in order (the caller writes them)."""
        self.stop()
        items, self._unacknowledged = self._unacknowledged, []
        return items

    def close(self) -> list[str]:
        """Flush, end the helper; its error messages."""
        try:
            return self.flush()
        finally:
            self.stop()

    def stop(self) -> None:
        """Close the helper's input and wait for it to exit (killed if it does not; at once
        if it has not started: it holds nothing)."""
        if not self._ready:
            self._process.kill()
        self._outbox.put(None)
        self._feeder.join(EXIT_TIMEOUT_S)
        try:
            self._process.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def _why(self) -> str:
        try:
            code: int | None = self._process.wait(timeout=2)  # its output ended: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        state = "still running" if code is None else f"exit code {code}"
        return f"the trace writer process stopped answering ({state}){': ' + tail if tail else ''}"
