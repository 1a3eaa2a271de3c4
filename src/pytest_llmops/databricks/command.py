"""Running Python on a cluster through the Command Execution API (1.2): an execution
context per test (created at first use, destroyed at teardown), commands run in it one
after another, their output returned, and a remote exception raised as
:class:`~pytest_llmops.errors.RemoteCommandError` with the cluster's traceback.
"""

from __future__ import annotations

import contextlib
import html
import re
import textwrap
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pytest_llmops.errors import RemoteCommandError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.compute import CommandStatusResponse

DEFAULT_TIMEOUT_S = 600.0
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class CommandResult:
    """What a command returned: ``output`` is its text (a Python command's printed output)."""

    output: str
    result_type: str
    data: Any = None
    truncated: bool = False


def _plain(text: str | None, *, markup: bool = False) -> str:
    """Remote text without ANSI colours (and, for ``markup`` such as summaries, without HTML)."""
    text = _ANSI.sub("", text or "")
    return (html.unescape(_TAG.sub("", text)) if markup else text).strip()


class DatabricksCommand:
    """Runs code on one cluster in one execution context (the value of ``databricks_command``).

    Usage::

        def test_spark_is_there(databricks_command):
            assert databricks_command("print(spark.version)").startswith("3.5")

        def test_slow(databricks_command):
            result = databricks_command.run(LOGGING_CELL, timeout=900)
            assert "joke" in result.output
    """

    def __init__(
        self,
        workspace: WorkspaceClient,
        cluster_id: str,
        *,
        language: str = "python",
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.workspace = workspace
        self.cluster_id = cluster_id
        self.language = language
        self.timeout = timeout
        self.context_id: str | None = None

    def __call__(self, source: str, *, timeout: float | None = None) -> str:
        """Run ``source`` and return its output (raises RemoteCommandError if it raised)."""
        __tracebackhide__ = True
        return self.run(source, timeout=timeout).output

    def run(self, source: str, *, timeout: float | None = None) -> CommandResult:
        """Run ``source`` (dedented) in this test's context and wait at most ``timeout``
        seconds (default 600); a command still running then is cancelled."""
        __tracebackhide__ = True
        from databricks.sdk.service.compute import Language

        code = textwrap.dedent(source).strip("\n")
        limit = timedelta(seconds=self.timeout if timeout is None else timeout)
        context_id = self._context(limit)
        waiter = self.workspace.command_execution.execute(
            cluster_id=self.cluster_id, context_id=context_id, language=Language(self.language), command=code
        )
        try:
            status = waiter.result(timeout=limit)
        except TimeoutError as error:
            self._cancel(context_id, waiter.command_id)
            raise RemoteCommandError(
                f"The command did not finish on cluster {self.cluster_id} within "
                f"{limit.total_seconds():.0f} s and was cancelled: {_first_line(code)}\nGive it longer: "
                "`databricks_command.run(source, timeout=<seconds>)`."
            ) from error
        return self._result(status, code)

    def _context(self, limit: timedelta) -> str:
        from databricks.sdk.service.compute import Language

        if self.context_id is None:
            waiter = self.workspace.command_execution.create(
                cluster_id=self.cluster_id, language=Language(self.language)
            )
            self.context_id = str(waiter.context_id)
            waiter.result(timeout=limit)
        return self.context_id

    def _cancel(self, context_id: str, command_id: str) -> None:
        from databricks.sdk.errors.base import DatabricksError

        with contextlib.suppress(DatabricksError):  # it may have finished meanwhile
            self.workspace.command_execution.cancel(
                cluster_id=self.cluster_id, context_id=context_id, command_id=command_id
            )

    def _result(self, status: CommandStatusResponse, code: str) -> CommandResult:
        __tracebackhide__ = True
        from databricks.sdk.service.compute import CommandStatus, ResultType

        results = status.results
        result_type = results.result_type.value if results and results.result_type else "text"
        if status.status == CommandStatus.ERROR or result_type == ResultType.ERROR.value:
            summary = _plain(results.summary if results else None, markup=True) or "the command failed"
            cause = _plain(results.cause if results else None)
            raise RemoteCommandError(
                f"The command raised on cluster {self.cluster_id}: {summary}\n\n"
                f"Remote traceback:\n{textwrap.indent(cause or summary, '    ')}\n\n"
                f"The command began with: {_first_line(code)}\n"
                "Fix the code (the traceback above is the cluster's), then rerun the test.",
                summary=summary,
                remote_traceback=cause,
            )
        data = results.data if results else None
        output = data if isinstance(data, str) else ("" if data is None else str(data))
        return CommandResult(output, result_type, data, bool(results and results.truncated))

    def close(self) -> None:
        """Destroy the execution context, if one was created."""
        from databricks.sdk.errors import NotFound

        context_id, self.context_id = self.context_id, None
        if context_id is None:
            return
        with contextlib.suppress(NotFound):  # the cluster or context is gone already
            self.workspace.command_execution.destroy(cluster_id=self.cluster_id, context_id=context_id)


def _first_line(code: str) -> str:
    lines = code.strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(lines) <= 1 else f"{first} … ({len(lines)} lines)"
