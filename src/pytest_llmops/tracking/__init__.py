"""MLflow tracking for pytest: a run per marked test under one run per session, traces of
every LLM call linked to the test's run, and a summary at the end.

Importing this package is cheap: mlflow is imported only when a test asks for tracking
(``@pytest.mark.llmops`` or one of the fixtures), never at plugin load.

Modules:

- ``uri``: which tracking store, told from its URI (and whether MLflow can use it);
- ``bootstrap``: MLflow in a pytest process: environment, quiet import, SQLite tuning, a
  quick exit; ``freshstore``: a new SQLite store, copied from one migrated once;
- ``store``: the store created and migrated once (file lock), the session's experiments
  and parent runs;
- ``runs``: the run of one test (start, outcome, params, metrics) and the lab-compatibility
  shim that nests ``mlflow.start_run()`` under it;
- ``traces``: ``mlflow.openai.autolog()`` for marked tests, trace capture and metrics;
- ``health``: a store that cannot be used, found once and said in one sentence;
- ``orphans``: runs left RUNNING by killed sessions, closed by later ones;
- ``sqlruns``: test runs created and ended in one SQL transaction each (MLflow's SQLite
  store), or through ``MlflowClient`` (any other store);
- ``writer``: how finished runs and traces are written (in batches, cheap orders);
- ``offload``: the tests' side of the helper process that writes traces and run ends
  without xdist; ``helper``: that process;
- ``summary``: the terminal table and the ``--llmops-report`` file;
- ``testrun``: what a tracked test's run carries when it starts and ends;
- ``fixtures`` and ``hooks``: the pytest side; below, when ``hooks`` is registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from pytest_llmops.settings import Settings

PLUGIN_NAME = "llmops-tracking"
"""The name the tracking hooks (:class:`.hooks.TrackingPlugin`) are registered under."""


def needed_from_start(config: pytest.Config, settings: Settings) -> bool:
    """Whether the tracking hooks are needed from the start: under xdist (the controller
    collects nothing, workers hand it their runs), for a report or a drift baseline, or when
    a store failure must fail the session (--llmops-strict). Otherwise they are registered
    once collection finds a tracked test (or a tracking fixture asks for them): a session
    without one imports no tracking code."""
    return bool(
        hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None)
        or settings.report or settings.drift_baseline or settings.strict
    )


def register(config: pytest.Config) -> None:
    """Register the tracking and evaluation hooks of this process."""
    from pytest_llmops.evaluation import hooks as evaluation_hooks
    from pytest_llmops.tracking import hooks

    hooks.register(config)  # MLflow runs per marked test; its hooks live on the object
    evaluation_hooks.register(config)  # evaluate nesting, repeat=N, cost


def register_if_tracked(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """After collection: register the hooks when a test is tracked (marked ``llmops`` or
    using ``llmops_run``), and let them see the items as their own
    ``pytest_collection_modifyitems`` would have."""
    if config.pluginmanager.has_plugin(PLUGIN_NAME):
        return
    if any(
        item.get_closest_marker("llmops") is not None or "llmops_run" in getattr(item, "fixturenames", ())
        for item in items
    ):
        register(config)
        from pytest_llmops.tracking import hooks

        hooks.get(config).pytest_collection_modifyitems(list(items))
