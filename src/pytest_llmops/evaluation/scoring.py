"""``llmops_eval``: MLflow scorers on one test's own trace, without a dataset.

The test's trace is the trace ``log_inputs``/``log_outputs`` describe (made when first
scored: one span with those inputs and outputs), else the last trace the test made (its
LLM call, autologged). Scorers run as ``mlflow.genai.evaluate`` runs them
(``scorer.run(inputs=, outputs=, expectations=, trace=)``), and whether a result passed is
decided as MLflow's ``EvaluationResult.passed`` decides it (yes, True, or ``pass_if``).

Each result is MLflow feedback on the trace (expectations are MLflow expectations). A trace
already in the store gets it through ``mlflow.log_feedback``; a trace the plugin still holds
(traces are written when the test ends: :mod:`pytest_llmops.tracking.traces`) carries it in
its ``info.assessments``, written with the trace in the same insert. Writing the trace early
to log feedback the usual way cost ~50 ms a test, measured (``benchmarks/bench_eval.py``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops.errors import EvaluationError
from pytest_llmops.evaluation import cost as cost_mod
from pytest_llmops.evaluation.evaluate import JUDGE_PARSE_ERROR
from pytest_llmops.evaluation.state import TestEvaluation, metric_name
from pytest_llmops.tracking.runs import clip

if TYPE_CHECKING:
    from mlflow.entities import Assessment, Feedback, Trace

    from pytest_llmops.tracking.hooks import TrackingPlugin
    from pytest_llmops.tracking.testrun import TrackedTest


@dataclass(frozen=True)
class Score:
    """One scorer's result on the test's trace."""

    name: str
    value: Any
    rationale: str | None
    passed: bool
    feedback: Feedback
    """The MLflow ``Feedback`` as logged on the trace."""

    def describe(self) -> str:
        text = f"{self.name} = {self.value!r}"
        return f"{text}: {' '.join(self.rationale.split())}" if self.rationale else text


def _as_float(value: Any) -> float | None:
    """An assessment value as MLflow aggregates it (numbers, bools, yes/no)."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("yes", "no"):
        return float(value.strip().lower() == "yes")
    return None


def _root(trace: Trace) -> Any:
    return next((span for span in trace.data.spans if span.parent_id is None), None)


class LLMOpsEval:
    """The value of the ``llmops_eval`` fixture (see its docstring)."""

    def __init__(
        self, item: pytest.Item, tracking: TrackingPlugin, tracked: TrackedTest, state: TestEvaluation
    ) -> None:
        self._item = item
        self._tracking = tracking
        self._tracked = tracked
        self._state = state
        self._reset()

    def _reset(self) -> None:
        self._generation = self._state.generation
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.expectations: dict[str, Any] = {}
        self._trace: Trace | None = None
        self._logged_expectations: set[tuple[str, str]] = set()

    def _sync(self) -> None:
        if self._generation != self._state.generation:  # a new repetition starts afresh
            self._reset()

    # -- logging ------------------------------------------------------------------------
    def log_inputs(self, **inputs: Any) -> None:
        """The inputs of the case under test (a scorer's ``inputs``; the trace's inputs)."""
        self._sync()
        self._log("inputs", self.inputs, inputs)
        self._trace = None

    def log_outputs(self, **outputs: Any) -> None:
        """What the application answered (a scorer's ``outputs``; the trace's outputs)."""
        self._sync()
        self._log("outputs", self.outputs, outputs)
        self._trace = None

    def log_expectations(self, **expectations: Any) -> None:
        """Ground truth for the case (a scorer's ``expectations``), logged on the test's trace
        as MLflow expectations when it is scored."""
        self._sync()
        self._log("expectations", self.expectations, expectations)

    def _log(self, kind: str, into: dict[str, Any], values: Mapping[str, Any]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import RunTag

        into.update(values)
        import mlflow

        active = mlflow.active_run()
        run_id = active.info.run_id if active is not None else self._tracked.run.info.run_id
        tags = [RunTag(f"eval.{kind}.{name}", clip(_text(value))) for name, value in values.items()]
        if tags:
            MlflowClient().log_batch(run_id, tags=tags)

    # -- scoring ------------------------------------------------------------------------
    def score(self, *scorers: Any) -> list[Score]:
        """Run MLflow scorers (built-in judges such as ``Guidelines(..., model=llmops_judge)``,
        or ``@scorer`` functions) on the test's trace; log and return their results."""

        self._sync()
        if not scorers:
            raise EvaluationError(f"{self._item.nodeid}: llmops_eval.score() needs at least one scorer.")
        checked = [self._scorer(position, scorer) for position, scorer in enumerate(scorers, 1)]
        trace = self._test_trace()
        root = _root(trace)
        inputs = self.inputs or (root.inputs if root is not None else None)
        outputs = self.outputs or (root.outputs if root is not None else None)
        self._log_expectations(trace, root)
        results: list[Score] = []
        spent = cost_mod.Cost(cost_mod.prices(self._item.config))
        for scorer in checked:
            for feedback in self._run(scorer, trace, inputs, outputs):
                feedback.trace_id = trace.info.trace_id
                if root is not None:
                    feedback.span_id = root.span_id
                self._keep(feedback)
                spent.add_judge(feedback.metadata, feedback.source.source_id if feedback.source else None)
                passed, _ = _passes(feedback, getattr(scorer, "pass_if", None))
                value = _plain(feedback.value)
                results.append(Score(feedback.name, value, feedback.rationale, passed, feedback))
                number = _as_float(value)
                if number is not None:
                    self._state.add_scores({metric_name(f"{feedback.name}/mean"): number})
        self._state.extra_usd += spent.usd
        if note := spent.note():
            self._state.note(note)
        return results

    def check(self, *scorers: Any) -> list[Score]:
        """:meth:`score`, then fail the test with the rationales of the scores that failed."""
        results = self.score(*scorers)
        failed = [score for score in results if not score.passed]
        if failed:
            lines = [
                f"llmops_eval.check: {len(failed)} of {len(results)} scores failed for {self._item.nodeid}:"
            ]
            lines += [f"  {score.describe()}" for score in failed]
            pytest.fail("\n".join(lines), pytrace=False)
        return results

    # -- the parts --------------------------------------------------------------------------
    def _scorer(self, position: int, scorer: Any) -> Any:
        from mlflow.genai.scorers import Scorer

        if not isinstance(scorer, Scorer):
            raise EvaluationError(
                f"{self._item.nodeid}: llmops_eval.score(): argument {position} is {scorer!r}, not an "
                "MLflow scorer. Pass a built-in scorer (mlflow.genai.scorers.Guidelines(...), Safety(), ...) "
                "or a function decorated with @mlflow.genai.scorers.scorer."
            )
        return scorer

    def _test_trace(self) -> Trace:
        """The trace the scorers judge (see the module docstring)."""
        if self._trace is not None:
            return self._trace
        collector = self._tracked.collector
        if self.inputs or self.outputs:
            import mlflow

            name = self._item.name if isinstance(self._item, pytest.Function) else self._item.nodeid
            with mlflow.start_span(name=name, span_type="CHAIN") as span:
                span.set_inputs(self.inputs)
                span.set_outputs(self.outputs)
            collector.take_deferred()
            made = [t for t in collector.traces if t.info.trace_id == span.trace_id]
            if made:
                self._trace = made[-1]
                return self._trace
        collector.take_deferred()
        own = collector.traces[self._state.first_trace :]
        if not own:
            raise EvaluationError(
                f"{self._item.nodeid}: llmops_eval has no trace to score: the test made no traced call "
                "(or tracing is off). Log what to judge first, e.g. llmops_eval.log_inputs(question=q) "
                "and llmops_eval.log_outputs(answer=a), or make the LLM call before scoring."
            )
        self._trace = own[-1]
        return self._trace

    def _log_expectations(self, trace: Trace, root: Any) -> None:
        from mlflow.entities import Expectation

        for name, value in self.expectations.items():
            key = (trace.info.trace_id, name)
            if key in self._logged_expectations:
                continue
            self._logged_expectations.add(key)
            span_id = root.span_id if root is not None else None
            self._keep(Expectation(name=name, value=value, trace_id=trace.info.trace_id, span_id=span_id))

    def _run(self, scorer: Any, trace: Trace, inputs: Any, outputs: Any) -> list[Feedback]:
        from mlflow.genai.evaluation.utils import standardize_scorer_value

        try:
            value = scorer.run(
                inputs=inputs, outputs=outputs, expectations=self.expectations or None, trace=trace
            )
            return list(standardize_scorer_value(scorer.name, value))
        except Exception as exc:
            raise EvaluationError(self._failure(scorer, exc)) from exc

    def _failure(self, scorer: Any, exc: Exception) -> str:
        name = getattr(scorer, "name", type(scorer).__name__)
        said = " ".join(f"{type(exc).__name__}: {exc}".split())
        model = getattr(scorer, "model", None)
        if JUDGE_PARSE_ERROR in str(exc) or (isinstance(exc, KeyError) and model):
            return (
                f"{self._item.nodeid}: the judge of scorer {name!r} ({model}) answered something that is not "
                f"the JSON MLflow's judges read ({{\"rationale\": ..., \"result\": ...}}): {said[:400]}\n"
                "In replay this answer comes from the test's cassette: record it again with "
                f"`pytest --llmops-record '{self._item.nodeid}'`. Live, the deployment did not follow the "
                "judge's format: use a model that does (gpt-4o), or an API version with structured "
                "outputs (2024-08-01-preview or later)."
            )
        return (
            f"{self._item.nodeid}: scorer {name!r} raised {said[:500]}\n"
            "llmops_eval runs a scorer as mlflow.genai.evaluate does: scorer.run(inputs=..., outputs=..., "
            "expectations=..., trace=...). Fix the scorer, or call it on its own to debug it."
        )

    def _keep(self, assessment: Assessment) -> None:
        """Put an assessment on its trace: with the trace when the plugin still holds it,
        else through MLflow (``log_feedback`` / ``log_expectation``)."""
        import mlflow
        from mlflow.entities import Feedback

        trace_id = assessment.trace_id or ""
        held = self._tracked.collector.pending(trace_id)
        if held is not None:
            held.info.assessments.append(assessment)
        elif isinstance(assessment, Feedback):
            mlflow.log_feedback(
                trace_id=trace_id,
                name=assessment.name,
                value=assessment.value,
                source=assessment.source,
                error=assessment.error,
                rationale=assessment.rationale,
                metadata=assessment.metadata,
                span_id=assessment.span_id,
            )
        else:
            mlflow.log_assessment(trace_id=trace_id, assessment=assessment)


def _passes(feedback: Feedback, pass_if: Any) -> tuple[bool, str | None]:
    """Pass or fail as ``EvaluationResult.passed`` decides it."""
    from mlflow.genai.evaluation.entities import _assertion_outcome

    outcome: tuple[bool, str | None] = _assertion_outcome(
        feedback.value, feedback.error_message, feedback.rationale, pass_if
    )
    return outcome


def _plain(value: Any) -> Any:
    """A judge's rating (MLflow's ``CategoricalRating``, a string enum) as its plain string."""
    return value.value if isinstance(value, enum.Enum) else value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)
