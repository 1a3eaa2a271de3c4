"""What evaluation keeps about one tracked test while it runs (stashed on the item).

Scores from ``llmops_eval`` and from ``mlflow.genai.evaluate`` inside the test, judges'
costs, notes for the summary, and the repetition being run. The tracking plugin turns
:meth:`TestEvaluation.metrics` into metrics of the test's run when the test ends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest


def metric_name(name: str) -> str:
    """``guidelines/mean`` (MLflow's aggregate) -> ``eval.guidelines.mean``."""
    return "eval." + name.replace("/", ".")


@dataclass
class Repetition:
    """One run of a repeated test's body."""

    index: int
    """1-based."""
    of: int
    run_id: str
    first_trace: int
    """Index in the test's collected traces where this repetition's traces start."""
    scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class TestEvaluation:
    """Evaluation state of one tracked test."""

    __test__ = False  # not a pytest test class

    nodeid: str
    scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """``eval.<scorer>.<aggregate>`` -> every value the test produced (calls, repetitions)."""
    extra_usd: float = 0.0
    """Cost not in the test's own traces: judges, and evaluate's predict_fn calls."""
    notes: list[str] = field(default_factory=list)
    repetition: Repetition | None = None
    metrics_extra: dict[str, float] = field(default_factory=dict)

    @property
    def first_trace(self) -> int:
        return self.repetition.first_trace if self.repetition is not None else 0

    @property
    def generation(self) -> int:
        """Changes with every repetition: ``llmops_eval`` starts afresh."""
        return self.repetition.index if self.repetition is not None else 0

    def add_scores(self, values: Mapping[str, float]) -> None:
        """Record aggregate values (metric names already ``eval.*``)."""
        for name, value in values.items():
            self.scores[name].append(float(value))
            if self.repetition is not None:
                self.repetition.scores[name].append(float(value))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def metrics(self) -> dict[str, float]:
        """The test run's ``eval.*`` metrics: the mean of each over the test's scorings."""
        metrics = {name: sum(values) / len(values) for name, values in self.scores.items() if values}
        metrics.update(self.metrics_extra)
        return metrics


state_key = pytest.StashKey[TestEvaluation]()


def of(item: pytest.Item) -> TestEvaluation:
    """The evaluation state of ``item`` (created on first use)."""
    state = item.stash.get(state_key, None)
    if state is None:
        state = item.stash[state_key] = TestEvaluation(item.nodeid)
    return state
