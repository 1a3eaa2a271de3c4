"""Evaluation fixtures: ``llmops_judge`` and ``llmops_eval``. Thin: their domain is imported on first use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mlflow.entities import Run

    from pytest_llmops.azure.openai import AzureOpenAIDeployment
    from pytest_llmops.evaluation.scoring import LLMOpsEval


@pytest.fixture(scope="session")
def llmops_judge(
    pytestconfig: pytest.Config, azure_openai_deployment: AzureOpenAIDeployment, azure_credential: Any
) -> Iterator[str]:
    """The MLflow judge model URI of the session's Azure OpenAI deployment
    (``azure:/<deployment>``), with MLflow's judges configured to reach it for the session:
    ``AZURE_API_KEY``/``AZURE_API_BASE``/``AZURE_API_VERSION`` set (and restored after;
    placeholders in replay), Entra ID when the deployment has no key, and judge calls paced
    like the plugin's clients. Judge calls are recorded in the test's cassette and replayed.

    Example::

        from mlflow.genai.scorers import Guidelines, Safety

        @pytest.mark.llmops
        def test_joke(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_eval):
            reply = azure_openai_client.chat.completions.create(...)
            llmops_eval.check(
                Guidelines(name="is_a_joke", guidelines="The response is a joke.", model=llmops_judge),
                Safety(model=llmops_judge),
            )
    """
    from pytest_llmops import extras

    extras.require("llmops_judge", "mlflow")
    from pytest_llmops.evaluation import judge

    with judge.configured(pytestconfig, azure_openai_deployment, azure_credential) as uri:
        yield uri


@pytest.fixture
def llmops_eval(request: pytest.FixtureRequest, llmops_run: Run) -> LLMOpsEval:
    """Evaluate this test's answer with MLflow scorers, without a dataset.

    - ``log_inputs(**kw)``, ``log_outputs(**kw)``, ``log_expectations(**kw)``: the case, on
      the test's trace (expectations as MLflow expectations) and as ``eval.*`` tags of its run;
    - ``score(*scorers)``: runs MLflow scorers (built-in judges such as
      ``Guidelines(..., model=llmops_judge)``, or ``@scorer`` functions) on the test's trace:
      the one ``log_inputs``/``log_outputs`` describe, else the last trace the test made.
      Each result is logged with ``mlflow.log_feedback`` and returned as a ``Score`` (name,
      value, rationale, passed); values become ``eval.<scorer>.mean`` metrics of the run;
    - ``check(*scorers)``: the same, and the test fails with the rationales of those that
      did not pass (yes, True, or the scorer's ``pass_if``, as ``EvaluationResult.passed``).

    A scorer that raises, or a judge whose answer cannot be read, fails the test with a
    message naming the test and the scorer. In a repeated test each repetition starts afresh.

    Example::

        from mlflow.genai.scorers import scorer

        @scorer
        def short(outputs) -> bool:
            return len(outputs["answer"]) < 200

        @pytest.mark.llmops
        def test_answer(llmops_eval):
            llmops_eval.log_inputs(question="What is MLflow?")
            llmops_eval.log_outputs(answer=my_app("What is MLflow?"))
            llmops_eval.check(short)
    """
    from pytest_llmops import extras

    extras.require("llmops_eval", "mlflow")
    from pytest_llmops.evaluation import state as state_mod
    from pytest_llmops.evaluation.scoring import LLMOpsEval
    from pytest_llmops.tracking import hooks as tracking_hooks
    from pytest_llmops.tracking import testrun

    node = request.node
    tracked = node.stash[testrun.tracked_key]
    return LLMOpsEval(node, tracking_hooks.get(request.config), tracked, state_mod.of(node))
