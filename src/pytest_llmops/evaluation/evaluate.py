"""``mlflow.genai.evaluate`` inside a tracked test.

MLflow's ``evaluate`` logs into the active run, or starts one. Inside a tracked test the
active run is the test's own, and the plugin holds the test's traces in memory until the
test ends (:mod:`pytest_llmops.tracking.traces`), while ``evaluate`` writes traces and
reads them back from the store as it goes. While a tracked test runs, evaluate therefore:

- starts its evaluation run nested under the test's run (or under the repetition's run of
  a repeated test; a run the test's own code started is reused, as MLflow does);
- finds the test's traces so far in the store (they are written first), so that a dataset
  made of them (``data=llmops_traces()``) can be linked, assessed and read back;
- writes the traces it makes itself straight to the store, as outside tests: they are
  tagged with the evaluation run, so the plugin's capture lets them through;
- and, when it returns, gives the test's run its aggregates as ``eval.<scorer>.<aggregate>``
  metrics, counts the LLM calls of its ``predict_fn`` and the cost of its judges in the
  test's totals, and names every scorer that failed in the session summary.

MLflow decides "active run or a new one" in ``mlflow.genai.evaluation.base`` through
``_start_run_or_reuse_active_run``, looked up by name on each call: that name is replaced
(once mlflow.genai's evaluation module is imported, through MLflow's own post-import hooks),
so ``evaluate`` is covered however the test imported it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_llmops.evaluation import cost as cost_mod
from pytest_llmops.evaluation.state import TestEvaluation, metric_name
from pytest_llmops.tracking.traces import TAG_RUN

if TYPE_CHECKING:
    import pytest

    from pytest_llmops.tracking.hooks import TrackingPlugin
    from pytest_llmops.tracking.testrun import TrackedTest

EVALUATION_MODULE = "mlflow.genai.evaluation.base"
JUDGE_PARSE_ERROR = "Failed to parse response from judge model"
SOURCE_RUN = "mlflow.assessment.sourceRunId"


@dataclass
class ActiveTest:
    """The tracked test running in this process, as evaluate's shim sees it."""

    item: pytest.Item
    tracking: TrackingPlugin
    tracked: TrackedTest
    state: TestEvaluation

    @property
    def own_runs(self) -> set[str]:
        """The test's run and the run of its current repetition."""
        owned = {self.tracked.run.info.run_id}
        if self.state.repetition is not None:
            owned.add(self.state.repetition.run_id)
        return owned


_active: ActiveTest | None = None


def set_active(test: ActiveTest | None) -> None:
    """The tracked test now running (None between tests)."""
    global _active
    _active = test


def install() -> None:
    """Patch MLflow's evaluation module now if it is imported, else when it is (through
    MLflow's post-import hooks). Cheap when done: called as every tracked test starts."""
    module = sys.modules.get(EVALUATION_MODULE)
    if module is not None:
        _patch(module)
        return
    from mlflow.utils.import_hooks import register_post_import_hook

    with contextlib.suppress(KeyError):  # MLflow's registry thinks it fired for a module since dropped
        register_post_import_hook(_patch, EVALUATION_MODULE, overwrite=True)


def _patch(module: Any) -> None:
    original = getattr(module, "_start_run_or_reuse_active_run", None)
    # Patched once per copy of this module (a test suite that runs pytest in-process may
    # import it again, and the shim must read this copy's active test).
    if original is None or getattr(original, "__llmops_patch__", None) is _patch:
        return
    original = getattr(original, "__llmops_original__", original)

    @contextlib.contextmanager
    def start_run_or_nest() -> Iterator[Any]:
        test = _active
        if test is None:
            with original() as run:
                yield run
            return
        with evaluation_run(test, original) as run:
            yield run

    start_run_or_nest.__llmops_original__ = original  # type: ignore[attr-defined]
    start_run_or_nest.__llmops_patch__ = _patch  # type: ignore[attr-defined]
    module._start_run_or_reuse_active_run = start_run_or_nest


@contextlib.contextmanager
def evaluation_run(test: ActiveTest, original: Any) -> Iterator[Any]:
    """The run one ``evaluate`` call logs into, inside ``test`` (see the module docstring)."""
    import mlflow

    from pytest_llmops.tracking.bootstrap import quiet_mlflow

    test.tracking.flush_test(test.tracked.collector)
    active = mlflow.active_run()
    nest = active is None or active.info.run_id in test.own_runs
    started_ms = int(time.time() * 1000)
    with contextlib.ExitStack() as stack:
        if nest:
            name = f"{test.tracked.run.info.run_name} evaluate"
            tags = {"llmops.nodeid": test.item.nodeid, "llmops.evaluation": "mlflow.genai.evaluate"}
            run = stack.enter_context(mlflow.start_run(run_name=name, nested=True, tags=tags))
        else:
            run = stack.enter_context(original())
        # Traces evaluate makes belong to its run: the plugin's capture lets them through to
        # the store, where evaluate reads them back.
        stack.enter_context(mlflow.tracing.context(tags={TAG_RUN: run.info.run_id}))
        try:
            yield run
        finally:
            with quiet_mlflow():
                collect(test, run.info.run_id, started_ms)


def collect(test: ActiveTest, run_id: str, started_ms: int) -> None:
    """What one evaluation left in the store, added to the test: its aggregate metrics,
    the LLM calls and cost of the traces it made, judges' costs and scorers' failures."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Feedback

    state = test.state
    try:
        run = MlflowClient().get_run(run_id)
        traces = mlflow.search_traces(
            locations=[run.info.experiment_id], run_id=run_id, return_type="list"
        )
    except Exception as exc:  # the test's own assertions decide; the summary says what is missing
        state.note(f"mlflow.genai.evaluate: its results could not be read back ({type(exc).__name__}: {exc})")
        return
    state.add_scores({metric_name(name): value for name, value in run.data.metrics.items()})
    config = test.item.config
    spent = cost_mod.Cost(cost_mod.prices(config))
    own = set(test.tracked.collector.trace_ids)
    failures: dict[str, list[str]] = {}
    for trace in traces:
        if trace.info.trace_id not in own and trace.info.request_time >= started_ms:
            test.tracked.collector.stats.add(trace)  # predict_fn's calls count as the test's
            spent.add_trace(trace)
        for assessment in trace.info.assessments:
            metadata = assessment.metadata or {}
            if not isinstance(assessment, Feedback) or metadata.get(SOURCE_RUN) != run_id:
                continue
            spent.add_judge(metadata, assessment.source.source_id if assessment.source else None)
            if assessment.error is not None:
                message = assessment.error_message or assessment.error_code or "failed"
                failures.setdefault(assessment.name, []).append(message)
    state.extra_usd += spent.usd
    if note := spent.note():
        state.note(note)
    rows = len(traces) or 1
    for name, errors in sorted(failures.items()):
        state.note(
            f"mlflow.genai.evaluate: scorer {name!r} failed on {len(errors)} of {rows} rows: "
            f"{describe_failure(errors[0])}"
        )


def describe_failure(message: str) -> str:
    """A scorer's error, with the fix when it is a judge answer MLflow could not read."""
    first = " ".join(message.split())
    if JUDGE_PARSE_ERROR in message or "'result'" in message:
        return (
            f"the judge's answer is not the JSON MLflow's judges read ({first[:300]}); in replay it comes "
            "from the test's cassette: record it again with `pytest --llmops-record`"
        )
    return first[:500]
