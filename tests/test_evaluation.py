"""Evaluation on mlflow.genai, black-box: a project evaluates its answers with
``mlflow.genai.evaluate``, ``llmops_eval`` and judges through ``llmops_judge``, repeats a
flaky test, and is recorded against the lab double, run live, replayed with the double
stopped, and the same under ``-n 2``. After each session the tests read what it left: the
MLflow store (runs, nesting, metrics, feedback on traces), the cassettes, the summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Imported once here, like mlflow in conftest.py: in-process pytester runs drop the modules an
# inner run imported, and MLflow's judges and evaluate would then run on half-dropped copies.
import mlflow.genai.evaluation.base
import mlflow.genai.judges.adapters.gateway_adapter
import mlflow.genai.scorers  # noqa: F401
import pytest

from tests.conftest import SECRET_API_KEY, all_bytes
from tests.test_tracking import client_for

PROJECT = '''
import itertools
import os

import mlflow
import pytest
from mlflow.genai.scorers import Guidelines, Safety, scorer

JOKE = "Tell me a joke about animals."


@scorer
def short(outputs) -> bool:
    return len(str(outputs)) < 400


@scorer
def mentions_expected(outputs, expectations) -> bool:
    return expectations["animal"] in str(outputs).lower()


def joke(client, deployment, question=JOKE):
    reply = client.chat.completions.create(
        model=deployment.deployment, messages=[{"role": "user", "content": question}])
    return reply.choices[0].message.content


@pytest.mark.llmops
def test_evaluate_a_dataset(llmops_run):
    result = mlflow.genai.evaluate(
        data=[{"inputs": {"q": "hi"}, "outputs": "hello"}, {"inputs": {"q": "long"}, "outputs": "y" * 500}],
        scorers=[short])
    assert result.metrics["short/mean"] == 0.5
    assert not result.passed and "short" in result.reason
    assert mlflow.get_run(result.run_id).data.tags["mlflow.parentRunId"] == llmops_run.info.run_id


@pytest.mark.llmops
def test_evaluate_the_answer_with_judges(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_traces):
    joke(azure_openai_client, azure_openai_deployment)
    about_animals = Guidelines(name="about_animals", guidelines="The response is about animals.", model=llmops_judge)
    result = mlflow.genai.evaluate(data=llmops_traces(), scorers=[about_animals, Safety(model=llmops_judge)])
    assert result.passed, result.reason
    assert result.metrics == {"about_animals/mean": 1.0, "safety/mean": 1.0}


@pytest.mark.llmops
def test_check_the_joke(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_eval):
    answer = joke(azure_openai_client, azure_openai_deployment)
    assert llmops_judge == f"azure:/{azure_openai_deployment.deployment}"
    assert os.environ["AZURE_API_BASE"] == azure_openai_deployment.endpoint
    assert os.environ["AZURE_API_VERSION"] == azure_openai_deployment.api_version
    llmops_eval.log_inputs(question=JOKE)
    llmops_eval.log_outputs(joke=answer)
    llmops_eval.log_expectations(animal="elephant")
    is_a_joke = Guidelines(name="is_a_joke", guidelines="The response is a joke.", model=llmops_judge)
    scores = llmops_eval.check(is_a_joke, Safety(model=llmops_judge), mentions_expected)
    assert [(s.name, s.value, s.passed) for s in scores] == [
        ("is_a_joke", "yes", True), ("safety", "yes", True), ("mentions_expected", True, True)]
    assert "it is a joke" in scores[0].rationale


@pytest.mark.llmops
def test_a_guideline_the_answer_misses(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_eval):
    joke(azure_openai_client, azure_openai_deployment)  # scored on its autologged trace
    french = Guidelines(name="in_french", guidelines="The response must be in French.", model=llmops_judge)
    (score,) = llmops_eval.score(french)
    assert (score.value, score.passed) == ("no", False) and "French" in score.rationale
    with pytest.raises(pytest.fail.Exception, match=r"(?s)1 of 1 scores failed.*in_french = 'no'.*French"):
        llmops_eval.check(french)


TURNS = itertools.count(1)


@pytest.mark.llmops(repeat=3, min_pass_rate=0.6)
def test_repeated(azure_openai_client, azure_openai_deployment, llmops_eval, llmops_run):
    turn = next(TURNS)
    answer = joke(azure_openai_client, azure_openai_deployment, f"Tell me a joke about animals, number {turn}.")
    assert mlflow.active_run().info.run_id != llmops_run.info.run_id
    llmops_eval.log_outputs(answer=answer)
    (score,) = llmops_eval.score(short)
    assert score.passed
    assert turn != 2, "the second answer is not good enough"


FLAKY = itertools.count(1)


@pytest.mark.llmops(repeat=2)
def test_repeated_below_the_pass_rate():
    assert next(FLAKY) == 1, "the second repetition fails"


@pytest.mark.llmops
def test_cost(azure_openai_client, azure_openai_deployment):
    joke(azure_openai_client, azure_openai_deployment, "Tell me a joke about cows.")
'''

PASSED = [
    "test_evaluate_a_dataset", "test_evaluate_the_answer_with_judges", "test_check_the_joke",
    "test_a_guideline_the_answer_misses", "test_repeated", "test_cost",
]


def session(pytester: pytest.Pytester, experiment: str, *args: str) -> pytest.RunResult:
    result = pytester.runpytest(f"--llmops-experiment={experiment}", "--llmops-report=report.json", *args)
    check_outcomes(result.stdout.str(), result.parseoutcomes())
    return result


def check_outcomes(out: str, outcomes: dict[str, int]) -> None:
    assert outcomes.get("passed") == len(PASSED) and outcomes.get("failed") == 1, out
    assert "1 of 2 repetitions passed; min_pass_rate=1 needs 2:" in out
    assert "repetition 2: AssertionError: the second repetition fails" in out
    for line in (
        "test_eval.py::test_check_the_joke  [is_a_joke.mean 1.00; mentions_expected.mean 1.00; safety.mean 1.00]",
        "test_eval.py::test_repeated  [2/3 passed; short.mean 1.00]",
        "test_eval.py::test_evaluate_a_dataset  [short.mean 0.50]",
    ):
        assert line in out, out


def runs(root: Path, experiment: str) -> tuple[Any, dict[str, Any]]:
    client = client_for(root)
    found = client.get_experiment_by_name(experiment)
    every = client.search_runs([found.experiment_id], max_results=1000)
    return client, {run.info.run_name: run for run in every}


def check_store(root: Path, experiment: str) -> None:
    """What a session left in the store: nesting, metrics, cost, feedback on traces."""
    client, by_name = runs(root, experiment)
    test = {name.split("::")[1]: run for name, run in by_name.items() if name.startswith("test_eval.py::")}

    def child(name: str) -> Any:
        return by_name[f"test_eval.py::{name}"]

    dataset = test["test_evaluate_a_dataset evaluate"]
    assert dataset.data.tags["mlflow.parentRunId"] == child("test_evaluate_a_dataset").info.run_id
    assert dataset.data.metrics["short/mean"] == 0.5
    assert child("test_evaluate_a_dataset").data.metrics["eval.short.mean"] == 0.5
    judged = child("test_evaluate_the_answer_with_judges").data.metrics
    assert judged["eval.about_animals.mean"] == judged["eval.safety.mean"] == 1.0
    assert judged["llmops.llm_calls"] == 1.0

    checked = child("test_check_the_joke")
    assert checked.data.metrics["eval.is_a_joke.mean"] == 1.0
    assert checked.data.tags["eval.inputs.question"] == "Tell me a joke about animals."
    assert checked.data.tags["eval.expectations.animal"] == "elephant"
    assert "elephant" in checked.data.tags["eval.outputs.joke"]
    traces = client.search_traces(
        locations=[checked.info.experiment_id], filter_string=f"tags.`llmops.run_id` = '{checked.info.run_id}'"
    )
    assessments = {a.name: a for trace in traces for a in trace.info.assessments}
    assert assessments["is_a_joke"].value == "yes" and assessments["is_a_joke"].rationale
    assert assessments["animal"].value == "elephant"  # the expectation, on the same trace
    assert assessments["is_a_joke"].source.source_id == "azure:/gpt-4o"

    repeated = child("test_repeated")
    assert repeated.data.metrics["llmops.pass_rate"] == pytest.approx(2 / 3)
    assert repeated.data.metrics["llmops.repetitions_passed"] == 2.0
    assert repeated.data.metrics["llmops.llm_calls"] == 3.0
    outcomes = {test[f"test_repeated [{i}/3]"].data.tags["llmops.outcome"] for i in (1, 3)}
    assert outcomes == {"passed"} and test["test_repeated [2/3]"].data.tags["llmops.outcome"] == "failed"
    assert test["test_repeated [2/3]"].data.tags["mlflow.parentRunId"] == repeated.info.run_id

    # Cost: gpt-4o's default price for the call's tokens; judges add theirs.
    plain = child("test_cost").data.metrics
    price = plain["llmops.prompt_tokens"] * 2.5e-6 + plain["llmops.completion_tokens"] * 1e-5
    assert plain["llmops.cost_usd"] == pytest.approx(price) and price > 0
    assert checked.data.metrics["llmops.cost_usd"] > plain["llmops.cost_usd"]
    costs = [run.data.metrics["llmops.cost_usd"] for name, run in by_name.items()
             if run.data.tags.get("llmops.nodeid") == name]
    (parent,) = [run for run in by_name.values() if run.data.tags.get("llmops.role") == "session"]
    assert parent.data.metrics["llmops.cost_usd"] == pytest.approx(sum(costs))

    report = json.loads((root / "report.json").read_text())
    rows = {row["nodeid"].split("::")[1]: row for row in report["tests"]}
    assert rows["test_repeated"]["repetitions"] == "2/3"
    assert rows["test_check_the_joke"]["scores"]["is_a_joke.mean"] == 1.0
    assert report["totals"]["cost_usd"] == pytest.approx(sum(costs))


def check_cassettes(root: Path) -> None:
    folder = root / "cassettes" / "test_eval"
    assert SECRET_API_KEY.encode() not in all_bytes(root / "cassettes")
    for turn in (1, 2, 3):  # each repetition its own recording (the failed one included)
        text = (folder / f"test_repeated.repeat-{turn}.yaml").read_text()
        assert text.count("- request:") == 1 and f"number {turn}." in text
    checked = (folder / "test_check_the_joke.yaml").read_text()
    assert checked.count("- request:") == 3  # the answer, then two judges
    assert "content safety classifier" in checked and "rationale" in checked
    assert "response_format" not in checked  # 2024-05-01-preview: no structured outputs
    assert not (folder / "test_repeated_below_the_pass_rate.repeat-1.yaml").exists()  # it failed


def test_evaluation_records_runs_live_and_replays(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    pytester.makepyfile(test_eval=PROJECT)
    session(pytester, "recorded", "--llmops-record")
    check_store(pytester.path, "recorded")
    check_cassettes(pytester.path)

    before = len(lab_double.requests_to(r"/chat/completions$"))
    live = session(pytester, "live", "--llmops-live")
    check_store(pytester.path, "live")
    sent = len(lab_double.requests_to(r"/chat/completions$")) - before
    assert sent == 13  # 7 answers, 6 judges
    live.stdout.fnmatch_lines([f"gpt-4o at 127.0.0.1:{lab_double.port}: {sent} requests; *"])  # judges paced too

    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    session(pytester, "replayed")
    check_store(pytester.path, "replayed")
    import os

    assert "AZURE_API_KEY" not in os.environ and "AZURE_API_BASE" not in os.environ  # given back


def test_evaluation_under_xdist(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    pytester.makepyfile(test_eval=PROJECT)
    args = ("-p", "no:cacheprovider", "-n", "2", "--llmops-report=report.json")
    recorded = pytester.runpytest_subprocess(*args, "--llmops-record", "--llmops-experiment=recorded")
    check_outcomes(recorded.stdout.str(), recorded.parseoutcomes())
    check_store(pytester.path, "recorded")
    check_cassettes(pytester.path)
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)
    replayed = pytester.runpytest_subprocess(*args, "--llmops-experiment=replayed")
    check_outcomes(replayed.stdout.str(), replayed.parseoutcomes())
    check_store(pytester.path, "replayed")
