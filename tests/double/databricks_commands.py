"""Command execution API 1.2 on the lab double: contexts, and Python that really runs.

Each command runs as ``sys.executable -c <dedented command>`` in its context's own temporary
folder (files persist across the commands of one context, like a driver's local disk;
Python variables do not, unlike a real REPL). Commands of one context run one at a time
in submission order on a worker thread, so a command waiting behind another is ``Queued``.

A command's environment is the cluster's (``spark_env_vars``, secrets resolved; see
``databricks_api``) over the runtime's own variables (``double.databricks.command_env``).

Results follow the real API: a command whose Python raises still has status ``Finished``,
with ``results.resultType == "error"``, an HTML ``summary`` (``<span class='ansi-red-fg'>
ZeroDivisionError</span>: division by zero``, which the SDK's dbutils proxy strips) and the
traceback as ``cause``. Status ``Error`` is kept for commands the double could not finish
(timeout). Only stdout becomes ``data``; stderr is kept in the ``commands`` audit.
"""

from __future__ import annotations

import hashlib
import html
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .routing import Request, Response, json_response

if TYPE_CHECKING:
    from .databricks_api import DatabricksDouble

# Variables of the parent worth passing on so the interpreter and TLS work; nothing else leaks.
_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SYSTEMROOT",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
)
# MLflow would otherwise fetch a telemetry config over the network from the "cluster".
_COMMAND_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
}


def error_1_2(message: str) -> Response:
    """API 1.2 errors are ``{"error": "..."}``; the SDK reads that field as the message."""
    return json_response(400, {"error": message})


def _not_running(cluster_id: str, state: str | None) -> Response:
    # databricks-sdk retries any error that mentions ClusterNotReadyException (for up to 5 min),
    # which is right while a cluster starts and wrong once it is stopping or stopped.
    if state in ("PENDING", "RESTARTING"):
        return error_1_2(f"ClusterNotReadyException: Cluster {cluster_id} is {state}, not RUNNING yet")
    return error_1_2(f"InvalidStateException: Cluster {cluster_id} is {state}; start it to run commands")


@dataclass
class _Context:
    id: str
    cluster_id: str
    language: str
    created_at: float
    workdir: str
    queue: queue.Queue[_Command | None] = field(default_factory=queue.Queue)
    destroyed: bool = False


@dataclass
class _Command:
    id: str
    context_id: str
    cluster_id: str
    language: str
    command: str
    status: str = "Queued"
    results: dict[str, Any] | None = None
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    process: subprocess.Popen[str] | None = None


class CommandExecution:
    """Contexts and commands of ``double.databricks`` (reached through its audits)."""

    def __init__(self, owner: DatabricksDouble) -> None:
        self.owner = owner
        self.lock = owner.lock
        self._contexts: dict[str, _Context] = {}
        self._commands: dict[str, _Command] = {}
        self._sequence = 0

    def reset(self) -> None:
        """Stop every context and forget them."""
        self.close()
        with self.lock:
            self._contexts = {}
            self._commands = {}
            self._sequence = 0

    def close(self) -> None:
        """Kill running commands, stop the workers, remove the working folders."""
        with self.lock:
            contexts = list(self._contexts.values())
            commands = list(self._commands.values())
            for command in commands:
                if command.status == "Queued":  # its worker must not start it after we stop
                    command.status = "Cancelled"
        for command in commands:
            if command.process is not None and command.process.poll() is None:
                command.process.kill()
        for context in contexts:
            context.queue.put(None)
            shutil.rmtree(context.workdir, ignore_errors=True)

    # -- audits ------------------------------------------------------------------------------

    def _context_status(self, context: _Context) -> str:
        if self.owner.cluster_state(context.cluster_id) != "RUNNING":
            return "Error"
        if self.owner.now() - context.created_at < self.owner.transition_seconds:
            return "Pending"
        return "Running"

    def contexts(self) -> dict[str, dict[str, Any]]:
        """Snapshot of every context."""
        with self.lock:
            return {
                c.id: {
                    "id": c.id,
                    "cluster_id": c.cluster_id,
                    "language": c.language,
                    "status": self._context_status(c),
                    "destroyed": c.destroyed,
                }
                for c in self._contexts.values()
            }

    def commands(self) -> dict[str, dict[str, Any]]:
        """Snapshot of every command."""
        with self.lock:
            return {
                c.id: {
                    "id": c.id,
                    "context_id": c.context_id,
                    "cluster_id": c.cluster_id,
                    "language": c.language,
                    "command": c.command,
                    "status": c.status,
                    "results": c.results,
                    "stdout": c.stdout,
                    "stderr": c.stderr,
                    "returncode": c.returncode,
                }
                for c in self._commands.values()
            }

    # -- handlers ----------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._sequence += 1
        return self._sequence

    def _find_context(self, cluster_id: Any, context_id: Any) -> _Context | Response:
        context = self._contexts.get(str(context_id))
        if context is None or context.destroyed or context.cluster_id != cluster_id:
            return error_1_2(f"ContextNotFound: Context {context_id} not found on cluster {cluster_id}")
        return context

    def create_context(self, request: Request) -> Response:
        """``POST contexts/create`` on a RUNNING cluster -> ``{"id"}``."""
        body = request.json()
        cluster_id = body.get("clusterId")
        state = self.owner.cluster_state(str(cluster_id))
        if state is None:
            return error_1_2(f"ClusterNotFoundException: Cluster {cluster_id} does not exist")
        if state != "RUNNING":
            return _not_running(str(cluster_id), state)
        with self.lock:
            context_id = str(1_000_000_000_000_000_000 + self._next_id())
            workdir = tempfile.mkdtemp(prefix="lab-double-context-")
            context = _Context(
                context_id, cluster_id, body.get("language", "python"), self.owner.now(), workdir
            )
            self._contexts[context_id] = context
        threading.Thread(
            target=self._work, args=(context,), name=f"context-{context_id}", daemon=True
        ).start()
        return json_response(200, {"id": context_id})

    def context_status(self, request: Request) -> Response:
        """``GET contexts/status?clusterId&contextId`` -> Pending | Running | Error."""
        with self.lock:
            found = self._find_context(request.query.get("clusterId"), request.query.get("contextId"))
            if isinstance(found, Response):
                return found
            return json_response(200, {"id": found.id, "status": self._context_status(found)})

    def destroy_context(self, request: Request) -> Response:
        """``POST contexts/destroy``: stop its worker, remove its folder."""
        body = request.json()
        with self.lock:
            found = self._find_context(body.get("clusterId"), body.get("contextId"))
            if isinstance(found, Response):
                return found
            found.destroyed = True
        found.queue.put(None)
        shutil.rmtree(found.workdir, ignore_errors=True)
        return json_response(200, {"id": found.id})

    def execute(self, request: Request) -> Response:
        """``POST commands/execute`` -> ``{"id"}``; the command queues on its context."""
        body = request.json()
        with self.lock:
            found = self._find_context(body.get("clusterId"), body.get("contextId"))
            if isinstance(found, Response):
                return found
            state = self.owner.cluster_state(found.cluster_id)
            if state != "RUNNING":
                return _not_running(found.cluster_id, state)
            command_id = hashlib.sha256(f"command-{self._next_id()}".encode()).hexdigest()[:32]
            language = body.get("language", found.language)
            command = _Command(command_id, found.id, found.cluster_id, language, body.get("command", ""))
            self._commands[command_id] = command
        found.queue.put(command)
        return json_response(200, {"id": command_id})

    def command_status(self, request: Request) -> Response:
        """``GET commands/status?clusterId&contextId&commandId``."""
        query = request.query
        with self.lock:
            command = self._commands.get(query.get("commandId", ""))
            if command is None or command.context_id != query.get("contextId"):
                return error_1_2(f"CommandNotFound: Command {query.get('commandId')} not found")
            return json_response(
                200, {"id": command.id, "status": command.status, "results": command.results}
            )

    def cancel(self, request: Request) -> Response:
        """``POST commands/cancel``: kill it if running, skip it if queued."""
        body = request.json()
        with self.lock:
            command = self._commands.get(str(body.get("commandId")))
            if command is None:
                return error_1_2(f"CommandNotFound: Command {body.get('commandId')} not found")
            if command.status in ("Queued", "Running"):
                command.status = "Cancelled"
                command.results = {
                    "resultType": "error",
                    "summary": "Command cancelled",
                    "cause": "Cancelled",
                }
                if command.process is not None and command.process.poll() is None:
                    command.process.kill()
            return json_response(200, {"id": command.id})

    # -- execution ---------------------------------------------------------------------------

    def _work(self, context: _Context) -> None:
        """A context's worker: runs its commands one at a time, in order."""
        while True:
            command = context.queue.get()
            if command is None:
                return
            with self.lock:
                if command.status != "Queued":
                    continue  # cancelled while waiting
                command.status = "Running"
            self._run(command, context.workdir)

    def _env(self, cluster_id: str) -> dict[str, str]:
        """Exactly what the cluster was given (its resolved ``spark_env_vars``) over what the
        runtime sets: nothing of the double's own process leaks in but the interpreter's
        basics, as nothing of the user's machine reaches a real cluster."""
        env = {name: os.environ[name] for name in _PASSTHROUGH if name in os.environ}
        env.update(_COMMAND_DEFAULTS)
        env.update(self.owner.command_env)
        env.update(self.owner.cluster_environment(cluster_id))
        return env

    def _run(self, command: _Command, workdir: str) -> None:
        if command.language != "python":
            summary = f"The lab double only runs Python, not {command.language}."
            self._finish(command, "Finished", {"resultType": "error", "summary": summary, "cause": summary})
            return
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(command.command)],
                cwd=workdir,
                env=self._env(command.cluster_id),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as error:  # workdir removed by destroy/reset while queued
            self._finish(
                command, "Error", {"resultType": "error", "summary": str(error), "cause": str(error)}
            )
            return
        with self.lock:
            command.process = process
        timed_out = False
        try:
            stdout, stderr = process.communicate(timeout=self.owner.command_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            timed_out = True
        with self.lock:
            command.stdout, command.stderr, command.returncode = stdout, stderr, process.returncode
            if command.status == "Cancelled":
                return
        if timed_out:
            message = f"CommandTimeoutException: the command ran longer than {self.owner.command_timeout} s"
            self._finish(
                command, "Error", {"resultType": "error", "summary": message, "cause": stderr or message}
            )
        elif process.returncode == 0:
            self._finish(command, "Finished", {"resultType": "text", "data": stdout.rstrip("\n")})
        else:
            self._finish(command, "Finished", _error_results(stderr, process.returncode))

    def _finish(self, command: _Command, status: str, results: dict[str, Any]) -> None:
        with self.lock:
            if command.status != "Cancelled":
                command.status, command.results = status, results


def _error_results(stderr: str, returncode: int) -> dict[str, Any]:
    """Error results: the exception line as the REPL's HTML summary, the traceback as cause."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"SystemExit: {returncode}"
    name, sep, message = last.partition(":")
    summary = html.escape(last)
    if sep and name.replace(".", "").replace("_", "").isalnum():
        summary = f"<span class='ansi-red-fg'>{html.escape(name)}</span>:{html.escape(message)}"
    return {"resultType": "error", "summary": summary, "cause": stderr or last}
