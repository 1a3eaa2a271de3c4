"""``@pytest.mark.llmops(repeat=N, min_pass_rate=P)``: the test body N times, passing when
at least ``ceil(P * N)`` repetitions pass.

Fixtures are set up once; the body runs N times. Each repetition gets

- its own MLflow run, nested under the test's run (``<test> [i/N]``, tags
  ``llmops.repetition`` and ``llmops.outcome``, its own ``eval.*`` metrics), active while
  it runs: the body's traces, logs and ``mlflow.start_run()`` nest under it;
- its own cassette beside the test's, ``<test>.repeat-<i>.yaml``: recorded (only when the
  test as a whole passes, like every cassette) and replayed per repetition;
- a fresh ``llmops_eval`` (inputs, outputs and the trace it scores are the repetition's).

A repetition fails on any exception or pytest failure; a skip, a replay miss or another
error of the plugin's (a scorer that raises) ends the test at once: those are no answer
of the model's. The test's run gets ``llmops.repetitions``, ``llmops.repetitions_passed``
and ``llmops.pass_rate``.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops import validation
from pytest_llmops.errors import LLMOpsError
from pytest_llmops.evaluation.state import Repetition, TestEvaluation

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette
    from pytest_llmops.tracking.hooks import TrackingPlugin
    from pytest_llmops.tracking.testrun import TrackedTest


def required(repeat: int, min_pass_rate: float) -> int:
    """How many of ``repeat`` repetitions must pass."""
    return math.ceil(round(min_pass_rate * repeat, 9))


def repetition_path(cassette_path: Path, index: int) -> Path:
    """The cassette of repetition ``index`` (1-based), beside the test's own."""
    return cassette_path.with_name(f"{cassette_path.stem}.repeat-{index}{cassette_path.suffix}")


def _stale_repetitions(cassette_path: Path, repeat: int) -> list[Path]:
    stem, suffix = re.escape(cassette_path.stem), re.escape(cassette_path.suffix)
    pattern = re.compile(stem + r"\.repeat-(\d+)" + suffix + "$")
    if not cassette_path.parent.is_dir():
        return []
    return [
        path for path in cassette_path.parent.iterdir()
        if (found := pattern.match(path.name)) and int(found.group(1)) > repeat
    ]


def _body_arguments(item: pytest.Function) -> dict[str, Any]:
    names = inspect.signature(item.obj).parameters
    return {name: item.funcargs[name] for name in names if name in item.funcargs}


def _summary(exc: BaseException) -> str:
    """One line for a failed repetition (pytest.fail's message as it is, else the type too)."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, pytest.fail.Exception):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def run(
    item: pytest.Function,
    options: validation.RunOptions,
    tracking: TrackingPlugin,
    tracked: TrackedTest,
    state: TestEvaluation,
    cassette: Cassette,
) -> None:
    """Run the body of ``item`` ``options.repeat`` times (see the module docstring)."""
    if inspect.iscoroutinefunction(item.obj):
        raise LLMOpsError(
            f"{item.nodeid}: @pytest.mark.llmops(repeat=...) runs synchronous test functions only; "
            "loop inside the async test instead, or drop repeat."
        )
    cassette_options = validation.cassette_options(item.nodeid, item.get_closest_marker("llmops_cassette"))
    total = options.repeat
    needed = required(total, options.min_pass_rate)
    failures: list[str] = []
    cassettes: list[Cassette] = []
    for index in range(1, total + 1):
        path = repetition_path(Path(cassette.path), index)
        own = cassette.recorder.cassette(
            path, item.nodeid, match_on=cassette.match_on, allow_repeats=cassette_options.allow_repeats
        )
        cassettes.append(own)
        error = _one(item, index, total, tracking, tracked, state, own)
        cassette.stale.extend(own.stale)
        if error is not None:
            failures.append(f"repetition {index}: {error}")
    passed = total - len(failures)
    state.metrics_extra.update({
        "llmops.repetitions": float(total),
        "llmops.repetitions_passed": float(passed),
        "llmops.pass_rate": passed / total,
    })
    state.repetition = None
    if passed < needed:
        lines = [
            f"{passed} of {total} repetitions passed; "
            f"min_pass_rate={options.min_pass_rate:g} needs {needed}:",
            *(f"  {line}" for line in failures),
        ]
        pytest.fail("\n".join(lines), pytrace=False)
    for own in cassettes:
        own.save()
    if cassette.mode == "record":
        for stale in _stale_repetitions(Path(cassette.path), total):
            stale.unlink()


def _one(
    item: pytest.Function,
    index: int,
    total: int,
    tracking: TrackingPlugin,
    tracked: TrackedTest,
    state: TestEvaluation,
    cassette: Cassette,
) -> str | None:
    """Run repetition ``index`` in its own run and cassette; its failure, or None."""
    from pytest_llmops.tracking import runs
    from pytest_llmops.tracking.bootstrap import quiet_mlflow
    from pytest_llmops.tracking.sqlruns import RunFinish

    parent = tracked.run.info
    tags = {
        "mlflow.parentRunId": parent.run_id,
        "llmops.nodeid": item.nodeid,
        "llmops.repetition": f"{index}/{total}",
        "llmops.worker": tracking.worker,
        "llmops.session_id": tracking.session_id,
    }
    name = runs.run_name(f"{parent.run_name} [{index}/{total}]")
    with quiet_mlflow():
        child = runs.activate(tracking.writer.create_run(tracked.experiment_id, name, tags, _now_ms()))
    repetition = state.repetition = Repetition(index, total, child.info.run_id, len(tracked.collector.traces))
    error: str | None = None
    fatal: BaseException | None = None
    try:
        with cassette.activate():
            item.obj(**_body_arguments(item))
    except (pytest.skip.Exception, pytest.exit.Exception, KeyboardInterrupt, LLMOpsError) as exc:
        fatal = exc
    except (Exception, pytest.fail.Exception) as exc:
        error = _summary(exc)
    finally:
        outcome = "error" if fatal is not None else ("failed" if error else "passed")
        status = "FINISHED" if outcome == "passed" else "FAILED"
        runs.stop(child.info.run_id, status)
        metrics = {name: sum(values) / len(values) for name, values in repetition.scores.items() if values}
        with quiet_mlflow():
            tracking.writer.finish_run(
                RunFinish(child.info.run_id, status, _now_ms(), {}, metrics, {"llmops.outcome": outcome})
            )
    if cassette.misses:
        raise cassette.misses[0]
    if fatal is not None:
        raise fatal
    return error


def _now_ms() -> int:
    return int(time.time() * 1000)
