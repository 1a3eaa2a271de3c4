"""Evaluation of LLM answers in tests, built on ``mlflow.genai``: its scorers, judges,
assessments and evaluation runs, with the judges' calls recorded in the tests' cassettes.

Importing this package is cheap: mlflow is imported only when a tracked test runs.

Modules:

- ``evaluate``: ``mlflow.genai.evaluate`` inside a tracked test (nested run, metrics);
- ``scoring``: ``llmops_eval``, scorers on one test's own trace;
- ``judge``: ``llmops_judge``, MLflow's judges on the session's Azure OpenAI deployment;
- ``repeat``: ``@pytest.mark.llmops(repeat=N, min_pass_rate=P)``;
- ``cost``: ``llmops.cost_usd`` and the ``llmops_prices`` table;
- ``state``: what evaluation keeps about a running test;
- ``access``: the body of the ``llmops_eval`` fixture (the fixtures themselves are in
  :mod:`pytest_llmops.fixtures.evaluation`); ``hooks``: the pytest side.
"""
