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
- ``access``: the bodies of the tracking fixtures (the fixtures themselves are in
  :mod:`pytest_llmops.fixtures.tracking`); ``hooks``: the pytest side, registered when a
  session needs it.
"""

PLUGIN_NAME = "llmops-tracking"
"""The name the tracking hooks (:class:`.hooks.TrackingPlugin`) are registered under (by
the plugin's wiring, ``pytest_llmops.plugin``, when a session needs them)."""
