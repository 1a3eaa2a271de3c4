"""How a test reaches its tracking: the bodies of the tracking fixtures (the session's
experiment, the test's run, its traces). Imported when one of them first runs; mlflow with
the tracking hooks (:mod:`.hooks`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_llmops import extras

if TYPE_CHECKING:
    from mlflow.entities import Experiment, Run

    from pytest_llmops.tracking.traceview import TestTraces


def experiment(config: pytest.Config) -> Experiment:
    """The session's experiment in the session's store, created if needed."""
    extras.require("mlflow_experiment", "mlflow")
    from pytest_llmops.tracking import hooks
    from pytest_llmops.tracking.bootstrap import quiet_mlflow

    plugin = hooks.get(config)
    ref = plugin.store.experiment(plugin.default_experiment)
    with quiet_mlflow():
        return plugin.store.client().get_experiment(ref.experiment_id)


def test_run(request: pytest.FixtureRequest) -> Iterator[Run | None]:
    """The test's own run, active while the test runs (None when the store failed)."""
    extras.require(_what_needs_mlflow(request), "mlflow")
    from pytest_llmops.tracking import hooks

    with hooks.get(request.config).track(request.node) as run:
        yield run


def _what_needs_mlflow(request: pytest.FixtureRequest) -> str:
    """What the test asked for that needs MLflow (for the message of a missing extra)."""
    if request.node.get_closest_marker("llmops") is not None:
        return "@pytest.mark.llmops"
    named = [name for name in ("llmops_eval", "llmops_traces") if name in request.fixturenames]
    return named[0] if named else "llmops_run"


def test_traces(request: pytest.FixtureRequest) -> TestTraces:
    """The traces of the test's run so far."""
    extras.require("llmops_traces", "mlflow")
    from pytest_llmops.errors import TrackingError
    from pytest_llmops.tracking import hooks
    from pytest_llmops.tracking.testrun import tracked_key
    from pytest_llmops.tracking.traceview import TestTraces

    tracked = request.node.stash.get(tracked_key, None)
    if tracked is None:  # never reached: a test using this fixture fails when the store does
        raise TrackingError("llmops_traces: this test has no MLflow run (the tracking store failed).")
    return TestTraces(hooks.get(request.config), tracked)
