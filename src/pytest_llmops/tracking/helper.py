"""The helper process of :mod:`.offload`: ``python -m pytest_llmops.tracking.helper URI``.

It reads traces (MLflow's JSON form), run ends and flush requests, one JSON object a line,
on its standard input; writes them with a :class:`~pytest_llmops.tracking.writer.StoreWriter`,
the traces of each burst together; and answers each flush on its standard output, with the
write errors met since the last answer. Its first line says it is ready (mlflow imported,
the store opened). It ignores Ctrl-C (that is the tests' process's to handle); when its
input ends (the session closed it, or died), it writes what it has and exits.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import signal
import sys
from collections.abc import Sequence
from typing import IO

from pytest_llmops.tracking.sqlruns import RunFinish
from pytest_llmops.tracking.writer import StoreWriter


class _Lines:
    """Complete lines from a pipe, and whether more are waiting right now."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""
        self._lines: collections.deque[bytes] = collections.deque()
        self.ended = False

    def _read(self, timeout: float | None) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.ended = True
            return
        *complete, self._buffer = (self._buffer + chunk).split(b"\n")
        self._lines.extend(complete)

    def next(self, wait: bool) -> bytes | None:
        """The next line; None when none is waiting (``wait=False``) or the input ended."""
        while not self._lines and not self.ended:
            self._read(None if wait else 0)
            if not wait:
                break
        return self._lines.popleft() if self._lines else None


def serve(uri: str, lines: _Lines, out: IO[str]) -> None:
    """Read traces and flush requests; write the traces of each burst together."""
    from mlflow.entities import Trace

    writer = StoreWriter(uri)
    reported = 0

    def answer(flush_id: int) -> None:
        nonlocal reported
        writer.flush()
        out.write(json.dumps({"ack": flush_id, "errors": writer.errors[reported:]}) + "\n")
        out.flush()
        reported = len(writer.errors)

    while True:
        line = lines.next(wait=True)
        if line is None:  # the tests' process closed our input (or died): write what is left
            writer.flush()
            return
        while line is not None:
            message = json.loads(line)
            if message["op"] == "trace":
                writer.log_trace(Trace.from_dict(message["trace"]))
            elif message["op"] == "finish":
                writer.finish_run(RunFinish(**message["finish"]))
            elif message["op"] == "flush":
                answer(int(message["id"]))
            line = lines.next(wait=False)
        writer.flush()  # nothing more waiting: write this burst now


def main(argv: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from pytest_llmops.tracking import bootstrap

    bootstrap.import_mlflow()
    uri = argv[0]
    from mlflow import MlflowClient

    # The answers get their own copy of stdout; anything else printed goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with bootstrap.quiet_mlflow():
        bootstrap.tune_sqlite(MlflowClient(uri), uri)
        answers.write(json.dumps({"ready": True}) + "\n")
        answers.flush()
        serve(uri, _Lines(sys.stdin.fileno()), answers)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
