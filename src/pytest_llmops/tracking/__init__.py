"""MLflow tracking for pytest: a run per marked test under one run per session, traces of
every LLM call linked to the test's run, and a summary at the end.

Importing this package is cheap: mlflow is imported only when a test asks for tracking
(``@pytest.mark.llmops`` or one of the fixtures), never at plugin load.

Modules:

- ``uri``: which tracking store, told from its URI (and whether MLflow can use it);
- ``bootstrap``: MLflow in a pytest process: environment, quiet import, SQLite tuning, a
  new store created fast, a quick exit;
- ``store``: the store created and migrated once (file lock), the session's experiments
  and parent runs;
- ``runs``: the run of one test (start, outcome, params, metrics) and the lab-compatibility
  shim that nests ``mlflow.start_run()`` under it;
- ``traces``: ``mlflow.openai.autolog()`` for marked tests, trace capture and metrics;
- ``sqlruns``: test runs created and ended in one SQL transaction each (MLflow's SQLite
  store), or through ``MlflowClient`` (any other store);
- ``writer``: how finished runs and traces are written (in batches, cheap orders);
- ``offload``: the tests' side of the helper process that writes traces and run ends
  without xdist; ``helper``: that process;
- ``summary``: the terminal table and the ``--llmops-report`` file;
- ``fixtures`` and ``hooks``: the pytest side.
"""
