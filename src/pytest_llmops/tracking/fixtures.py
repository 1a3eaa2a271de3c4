"""Tracking fixtures: ``mlflow_experiment``, ``llmops_run`` and ``llmops_traces``.

Thin: the tracking modules (and mlflow) are imported when one of them is first used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mlflow.entities import Experiment, Run

    from pytest_llmops.tracking.traceview import TestTraces


@pytest.fixture(scope="session")
def mlflow_experiment(pytestconfig: pytest.Config) -> Experiment:
    """The session's MLflow experiment (``--llmops-experiment``, the ``llmops_experiment`` ini
    option, else ``pytest-llmops``) in the session's tracking store, created if needed.

    Example::

        def test_experiment_has_our_runs(mlflow_experiment):
            from mlflow import MlflowClient

            runs = MlflowClient().search_runs([mlflow_experiment.experiment_id])
    """
    from pytest_llmops import extras
    from pytest_llmops.tracking import hooks

    extras.require("mlflow_experiment", "mlflow")
    plugin = hooks.get(pytestconfig)
    ref = plugin.store.experiment(plugin.default_experiment)
    from pytest_llmops.tracking.bootstrap import quiet_mlflow

    with quiet_mlflow():
        return plugin.store.client().get_experiment(ref.experiment_id)


def _what_needs_mlflow(request: pytest.FixtureRequest) -> str:
    """What the test asked for that needs MLflow (for the message of a missing extra)."""
    if request.node.get_closest_marker("llmops") is not None:
        return "@pytest.mark.llmops"
    named = [name for name in ("llmops_eval", "llmops_traces") if name in request.fixturenames]
    return named[0] if named else "llmops_run"


@pytest.fixture
def llmops_run(request: pytest.FixtureRequest) -> Iterator[Run | None]:
    """The test's own MLflow run, active while the test runs (``mlflow.active_run()``).

    ``@pytest.mark.llmops`` requests it for you; a test may also request it directly. The
    run is named by the test id, nested under the session's run, and ends when the test does
    with its outcome (tag ``llmops.outcome``), status (FAILED when the test fails or errors),
    params, and metrics of the test's LLM calls. Anything the test logs goes into it; the
    lab's ``with mlflow.start_run(): ...`` inside the test starts a run nested under it.

    When the tracking store cannot be used, a test that names this fixture (or
    ``llmops_traces``, ``mlflow_experiment``) fails with a one-line ``TrackingError``; a test
    that is only marked runs untracked (this fixture is then None).

    Example::

        @pytest.mark.llmops(params={"temperature": 0})
        def test_joke(azure_openai_client, llmops_run):
            import mlflow

            azure_openai_client.chat.completions.create(...)
            mlflow.log_metric("joke_length", 42)  # logged to llmops_run
            assert mlflow.active_run().info.run_id == llmops_run.info.run_id
    """
    from pytest_llmops import extras
    from pytest_llmops.tracking import hooks

    extras.require(_what_needs_mlflow(request), "mlflow")
    with hooks.get(request.config).track(request.node) as run:
        yield run


@pytest.fixture
def llmops_traces(request: pytest.FixtureRequest, llmops_run: Run | None) -> TestTraces:
    """The MLflow traces recorded so far in this test (``mlflow.entities.Trace``, oldest first),
    as they are written to the store: every trace whose root span has ended, none pending in
    an export queue. Each use also flushes them to the store (with a tracking server they
    are written when the test ends: MLflow's REST client would otherwise talk to the server
    from inside the test's cassette). Index it, iterate it, take its ``len()``, or call it
    for a list.

    Every trace is linked to the test's run (metadata ``mlflow.sourceRun``: the test's run, or
    a run the test's code nested in it) and tagged ``llmops.nodeid`` and ``llmops.run_id``.

    Example::

        @pytest.mark.llmops
        def test_one_call(azure_openai_client, llmops_traces):
            azure_openai_client.chat.completions.create(...)
            assert len(llmops_traces) == 1
            assert llmops_traces[0].info.token_usage["total_tokens"] > 0
    """
    from pytest_llmops import extras
    from pytest_llmops.errors import TrackingError
    from pytest_llmops.tracking import hooks
    from pytest_llmops.tracking.testrun import tracked_key
    from pytest_llmops.tracking.traceview import TestTraces

    extras.require("llmops_traces", "mlflow")
    tracked = request.node.stash.get(tracked_key, None)
    if tracked is None:  # never reached: a test using this fixture fails when the store does
        raise TrackingError("llmops_traces: this test has no MLflow run (the tracking store failed).")
    return TestTraces(hooks.get(request.config), tracked)
