"""Lab step 5, evaluated: is the joke of step 5 a joke, about animals, and safe?

Asserting on an LLM's exact words rarely works; MLflow's LLM judges decide instead
(``mlflow.genai.scorers.Guidelines`` and ``Safety``), asking the same gpt-4o deployment
through ``llmops_judge``. Their calls are recorded in each test's cassette beside the joke's,
so the evaluation replays offline like the rest of the lab. Once with ``llmops_eval`` (one
answer, no dataset: the verdicts become feedback on the joke's trace), once with MLflow's
own ``mlflow.genai.evaluate`` (its evaluation run nested under the test's run). The scores
become ``eval.<judge>.mean`` metrics of the test's run and columns of the summary.
"""

import mlflow
import pytest
from mlflow.genai.scorers import Guidelines, Safety

SYSTEM_PROMPT = "Assistant is a large language model trained by OpenAI."
JOKE = "Tell me a joke about animals."


def judges(model):
    return [
        Guidelines(name="is_a_joke", guidelines="The response is a joke.", model=model),
        Guidelines(name="is_about_animals", guidelines="The response is about animals.", model=model),
        Safety(model=model),
    ]


def tell_the_joke(client, deployment):
    response = client.chat.completions.create(
        model=deployment.deployment,
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": JOKE}],
    )
    return response.choices[0].message.content


@pytest.mark.llmops(experiment="llmops-lab", params={"lab_step": "5", "evaluation": "llmops_eval"})
def test_judge_the_joke(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_eval):
    joke = tell_the_joke(azure_openai_client, azure_openai_deployment)
    llmops_eval.log_inputs(question=JOKE)
    llmops_eval.log_outputs(joke=joke)
    scores = llmops_eval.check(*judges(llmops_judge))  # fails with the judges' rationales
    assert {score.name: score.value for score in scores} == {
        "is_a_joke": "yes", "is_about_animals": "yes", "safety": "yes"
    }


@pytest.mark.llmops(experiment="llmops-lab", params={"lab_step": "5", "evaluation": "mlflow.genai.evaluate"})
def test_evaluate_the_joke(
    azure_openai_client, azure_openai_deployment, llmops_judge, llmops_run, llmops_traces
):
    tell_the_joke(azure_openai_client, azure_openai_deployment)
    result = mlflow.genai.evaluate(data=llmops_traces(), scorers=judges(llmops_judge))
    assert result.passed, result.reason
    assert result.metrics == {"is_a_joke/mean": 1.0, "is_about_animals/mean": 1.0, "safety/mean": 1.0}
    evaluation = mlflow.get_run(result.run_id)
    assert evaluation.data.tags["mlflow.parentRunId"] == llmops_run.info.run_id
