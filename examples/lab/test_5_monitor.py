"""Lab step 6: monitor the model. Traces of different runs are compared with statistical
tests to detect drift: a changed input or output distribution, or changed performance.

Three batches of questions are asked, each in its own MLflow run: a baseline, a second
batch from the same distribution, and the same batch after a configuration change that
caps answers at 12 tokens (answers get cut: fewer completion tokens, another finish
reason). The monitoring must flag the change and only the change.
"""

import mlflow
import pytest

from pytest_llmops.monitoring import FEATURES, DriftSettings, compare_refs

# 15 questions a batch: 45 calls keep the whole lab under the deployment's 60 requests per
# minute, so a live run never waits for the rate limit.
ANIMALS = [
    "otter", "heron", "badger", "lynx", "walrus", "gecko", "ibis", "marmot", "narwhal", "okapi",
    "puffin", "quokka", "raven", "salamander", "tapir",
    "axolotl", "bison", "capybara", "dingo", "egret", "ferret", "gazelle", "hedgehog", "iguana", "jackal",
    "koala", "lemur", "meerkat", "newt", "ocelot",
]
TOPICS = ["eat", "sleep", "raise its young"]


def questions(animals):
    return [f"What does a {animal} {TOPICS[i % len(TOPICS)]}?" for i, animal in enumerate(animals)]


BASELINE = questions(ANIMALS[:15])
LATER = questions(ANIMALS[15:])


def ask(client, deployment, batch, **options):
    for question in batch:
        client.chat.completions.create(
            model=deployment.deployment, messages=[{"role": "user", "content": question}], **options
        )


@pytest.mark.llmops(experiment="llmops-lab", params={"lab_step": "6"})
def test_monitor_the_model_for_drift(azure_openai_client, azure_openai_deployment, llmops_traces):
    runs = {}
    for name, batch, options in (
        ("baseline", BASELINE, {}),
        ("same-distribution", LATER, {}),
        ("answers-capped", LATER, {"max_tokens": 12}),
    ):
        with mlflow.start_run(run_name=name, nested=True) as run:
            mlflow.log_param("max_tokens", options.get("max_tokens", "default"))
            ask(azure_openai_client, azure_openai_deployment, batch, **options)
        runs[name] = run.info.run_id

    assert len(llmops_traces()) == 45  # every call traced, and flushed to the store
    uri = mlflow.get_tracking_uri()
    # Latency is left out here: replayed calls take the plugin's time, not the model's, and
    # batches asked seconds apart differ in warm-up (connections, caches) more than in the
    # model. Compare latency across sessions instead (`pytest-llmops drift`).
    settings = DriftSettings(features=tuple(f.name for f in FEATURES if f.name != "latency_ms"))
    unchanged = compare_refs(runs["baseline"], runs["same-distribution"], uri, settings=settings)
    changed = compare_refs(runs["baseline"], runs["answers-capped"], uri, settings=settings)

    assert unchanged.n_baseline == unchanged.n_current == 15
    assert not unchanged.drifted, unchanged.to_text()
    assert changed.drifted, changed.to_text()
    assert {"completion_tokens", "finish_reason"} <= set(changed.drifted_features), changed.to_text()
    print(changed.to_text())
