"""The MLflow run of one marked test, and the shim that lets the lab's own code run inside it.

A test's run is created when the test starts (its id is needed by then: traces and the
lab's nested runs point to it) and made the *active* run, so that ``mlflow.active_run()``,
``mlflow.log_metric(...)`` and autologged traces in the test use it. Everything else
(params, metrics, the outcome, the status) is written in one batch when the test ends.

The lab's cell does ``with mlflow.start_run(): ...`` and then ``mlflow.end_run()``. With the
test's run active, MLflow refuses the first ("Run ... is already active. To start a nested
run, call start_run with nested=True") and the second would end the test's run. While the
run on top of this thread's stack is a test run owned by the plugin, the shim makes
``start_run()`` nested (so the lab's run is a child of the test's run, in its experiment)
and ``end_run()`` a no-op (the plugin ends the test's run). Outside marked tests both are
MLflow's own functions, unchanged. The shim replaces the module attributes
``mlflow.start_run``/``mlflow.end_run`` (and those of ``mlflow.tracking.fluent``, which
``ActiveRun.__exit__`` calls); code that did ``from mlflow import start_run`` before the
first marked test keeps MLflow's own function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest
    from mlflow.entities import Run

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "interrupted")
STATUS_OF_OUTCOME = {
    "passed": "FINISHED",
    "skipped": "FINISHED",
    "xfailed": "FINISHED",
    "failed": "FAILED",
    "error": "FAILED",
    "interrupted": "KILLED",
}
RUN_NAME_LIMIT = 250
TAG_VALUE_LIMIT = 5000

_owned_runs: set[str] = set()


def outcome(reports: Mapping[str, pytest.TestReport]) -> str:
    """The outcome of a test from its setup and call reports (read in fixture teardown):
    passed, failed, error (setup failed), skipped, xfailed, or interrupted (no call report
    after a successful setup: KeyboardInterrupt, ``pytest.exit``)."""
    setup = reports.get("setup")
    if setup is None:
        return "interrupted"
    if setup.failed:
        return "error"
    if setup.skipped:
        return "xfailed" if hasattr(setup, "wasxfail") else "skipped"
    call = reports.get("call")
    if call is None:
        return "interrupted"
    if call.skipped:
        return "xfailed" if hasattr(call, "wasxfail") else "skipped"
    if call.failed:
        return "failed"
    return "passed"


def scalar_params(item: pytest.Item) -> dict[str, str]:
    """The test's parametrize values that are plain scalars (str, int, float, bool, None)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    return {
        name: str(value)
        for name, value in callspec.params.items()
        if value is None or isinstance(value, (str, int, float, bool))
    }


def run_name(nodeid: str) -> str:
    """The run's name: the test id (cut, keeping its end, when very long)."""
    return nodeid if len(nodeid) <= RUN_NAME_LIMIT else "…" + nodeid[-(RUN_NAME_LIMIT - 1) :]


def clip(value: Any) -> str:
    text = str(value)
    return text if len(text) <= TAG_VALUE_LIMIT else text[: TAG_VALUE_LIMIT - 1] + "…"


def activate(run: Run) -> Run:
    """Make a test's run, just created, the active run of this thread."""
    install_lab_shim()
    _owned_runs.add(run.info.run_id)
    return _push(run)


def stop(run_id: str, status: str) -> None:
    """Take a test's run off the active-run stack (without writing: the writer ends it).
    Runs the test's code started and left open above it are ended with ``status``."""
    from mlflow.tracking import fluent

    stack = _stack()
    try:
        if any(active.info.run_id == run_id for active in stack):
            while stack[-1].info.run_id != run_id:
                _original(fluent.end_run)(status)
    finally:
        _owned_runs.discard(run_id)
        if stack and stack[-1].info.run_id == run_id:
            stack.pop()


def _stack() -> list[Any]:
    from mlflow.tracking import fluent

    return fluent._active_run_stack.get()  # type: ignore[no-untyped-call,no-any-return]


def _push(run: Run) -> Run:
    from mlflow.tracking import fluent

    # Pushing the ActiveRun is what mlflow.start_run(run_id=...) does after two more round
    # trips to the store (get_run, update_run_info: ~4 ms) that a run created a moment ago
    # does not need.
    active = fluent.ActiveRun(run)  # type: ignore[no-untyped-call]
    _stack().append(active)
    return active


def _owned_on_top() -> bool:
    if not _owned_runs:
        return False
    stack = _stack()
    return bool(stack) and stack[-1].info.run_id in _owned_runs


def _original(function: Any) -> Any:
    return getattr(function, "__llmops_original__", function)


def install_lab_shim() -> None:
    """Make ``mlflow.start_run()`` nest and ``mlflow.end_run()`` wait while a test's run is
    on top (see the module docstring). Idempotent."""
    import mlflow
    from mlflow.tracking import fluent

    if hasattr(fluent.start_run, "__llmops_original__"):
        return
    original_start = fluent.start_run
    original_end = fluent.end_run
    signature = inspect.signature(original_start)

    @functools.wraps(original_start)
    def start_run(*args: Any, **kwargs: Any) -> Any:
        if _owned_on_top():
            bound = signature.bind(*args, **kwargs)
            bound.arguments["nested"] = True
            if bound.arguments.get("experiment_id") is None and bound.arguments.get("run_id") is None:
                bound.arguments["experiment_id"] = _stack()[-1].info.experiment_id
            return original_start(*bound.args, **bound.kwargs)
        return original_start(*args, **kwargs)

    @functools.wraps(original_end)
    def end_run(*args: Any, **kwargs: Any) -> None:
        if _owned_on_top():
            return  # the test's run: pytest-llmops ends it when the test ends
        original_end(*args, **kwargs)

    start_run.__llmops_original__ = original_start  # type: ignore[attr-defined]
    end_run.__llmops_original__ = original_end  # type: ignore[attr-defined]
    for module in (fluent, mlflow):
        module.start_run = start_run  # type: ignore[attr-defined]
        module.end_run = end_run  # type: ignore[attr-defined]
