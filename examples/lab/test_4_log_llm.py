"""Lab step 5: log the LLM with MLflow. The lab's notebook cell runs verbatim in a test
marked ``llmops`` (its own MLflow run, with ``mlflow.openai.autolog()`` traces), then the
same cell runs on the cluster through ``databricks_command``.
"""

import mlflow
import pytest
from openai import AzureOpenAI

JOKE = "Tell me a joke about animals."


@pytest.mark.llmops(experiment="llmops-lab", params={"lab_step": "5"})
def test_log_the_llm_with_mlflow(azure_openai_deployment, llmops_run, llmops_traces, capsys):
    # Step 5.1-5.2: the client from the environment's endpoint, key and version.
    client = AzureOpenAI(
        azure_endpoint=azure_openai_deployment.endpoint,
        api_key=azure_openai_deployment.api_key,
        api_version=azure_openai_deployment.api_version,
    )

    # Step 5.3: the lab's cell, verbatim.
    system_prompt = "Assistant is a large language model trained by OpenAI."
    mlflow.openai.autolog()
    with mlflow.start_run():
        response = client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "system", "content": system_prompt},
                      {"role": "user", "content": "Tell me a joke about animals."}])
        print(response.choices[0].message.content)
        mlflow.log_param("completion_tokens", response.usage.completion_tokens)
    mlflow.end_run()

    # What MLflow holds now: the cell's run, nested under this test's run, with its param...
    joke = capsys.readouterr().out.strip()
    assert joke == response.choices[0].message.content.strip() and len(joke.split()) >= 5
    tracking = mlflow.MlflowClient()
    nested = tracking.search_runs(
        [llmops_run.info.experiment_id], f"tags.mlflow.parentRunId = '{llmops_run.info.run_id}'"
    )
    assert len(nested) == 1
    assert nested[0].data.params["completion_tokens"] == str(response.usage.completion_tokens)

    # ...and one trace of the chat completion: inputs, outputs and token usage.
    (trace,) = llmops_traces()
    assert JOKE in trace.data.request and system_prompt in trace.data.request
    assert joke.split()[0] in trace.data.response
    assert trace.info.token_usage["output_tokens"] == response.usage.completion_tokens
    assert trace.info.token_usage["input_tokens"] == response.usage.prompt_tokens
    assert trace.info.state.value == "OK"


# The same cell as a notebook on the cluster runs it: the endpoint and key come from the
# cluster's environment. A cluster gets environment variables only from its configuration
# (spark_env_vars): one created with --llmops-provision has AZURE_OPENAI_ENDPOINT and
# AZURE_OPENAI_API_VERSION there, and AZURE_OPENAI_API_KEY as {{secrets/<scope>/<key>}}, a
# reference into a secret scope created (and removed) with it. An attached cluster must have
# them set by its owner.
CLUSTER_CELL = """
import os
import mlflow
from openai import AzureOpenAI

client = AzureOpenAI(
    azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"],
    api_key=os.environ["AZURE_OPENAI_API_KEY"],
    api_version=os.environ.get("AZURE_OPENAI_API_VERSION", "2024-05-01-preview"),
)
system_prompt = "Assistant is a large language model trained by OpenAI."
mlflow.openai.autolog()
with mlflow.start_run() as run:
    response = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": system_prompt},
                  {"role": "user", "content": "Tell me a joke about animals."}])
    print(response.choices[0].message.content)
    mlflow.log_param("completion_tokens", response.usage.completion_tokens)
mlflow.end_run()
logged = mlflow.get_run(run.info.run_id).data.params["completion_tokens"]
print(f"completion_tokens={logged}")
"""


@pytest.mark.llmops(experiment="llmops-lab", params={"lab_step": "5", "where": "cluster"})
def test_log_the_llm_on_the_cluster(databricks_cluster, databricks_command):
    databricks_cluster.require_environment("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")
    output = databricks_command(CLUSTER_CELL, timeout=600)
    *joke, last = output.strip().splitlines()
    assert " ".join(joke).strip(), "the cell printed the model's joke"
    assert last.startswith("completion_tokens=")
    assert int(last.split("=", 1)[1]) > 0
