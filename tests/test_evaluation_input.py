"""Evaluation's bad input and settings, black-box: a scorer that raises, a judge answer that
cannot be read, a marker or price table that is wrong, each met with one message naming the
test and the scorer while the other tests' runs are kept; the price table, the judge's
structured outputs and Entra ID; and the double's judge, which answers like the real model.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.genai.evaluation.base
import mlflow.genai.judges.adapters.gateway_adapter
import mlflow.genai.scorers  # noqa: F401 - kept imported across in-process runs (test_evaluation.py)
import pytest
import yaml

from tests import cassette_builders as cb
from tests.test_evaluation import runs

BROKEN = '''
import mlflow
import pytest
from mlflow.genai.scorers import scorer


@scorer
def broken(outputs):
    raise ValueError("the scorer has a bug")


@scorer
def short(outputs) -> bool:
    return len(str(outputs)) < 100


@pytest.mark.llmops
def test_broken(llmops_eval):
    llmops_eval.log_outputs(answer="hi")
    llmops_eval.score(broken)


@pytest.mark.llmops
def test_fine(llmops_eval):
    llmops_eval.log_outputs(answer="hi")
    llmops_eval.check(short)


@pytest.mark.llmops
def test_not_a_scorer(llmops_eval):
    llmops_eval.log_outputs(answer="hi")
    llmops_eval.score(lambda outputs: True)


@pytest.mark.llmops
def test_nothing_to_score(llmops_eval):
    llmops_eval.score(short)


@pytest.mark.llmops
def test_evaluate_with_a_broken_scorer():
    result = mlflow.genai.evaluate(data=[{"inputs": {"q": "x"}, "outputs": "y"}], scorers=[broken, short])
    assert not result.passed and result.metrics == {"short/mean": 1.0}
'''


def test_a_scorer_that_raises_is_named_and_the_other_runs_are_kept(pytester: pytest.Pytester):
    pytester.makepyfile(test_bad=BROKEN)
    result = pytester.runpytest("--llmops-experiment=bad", "--llmops-report=report.md")
    result.assert_outcomes(passed=2, failed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "EvaluationError: test_bad.py::test_broken: scorer 'broken' raised ValueError: the scorer has a bug",
        "llmops_eval runs a scorer as mlflow.genai.evaluate does*",
        "EvaluationError: test_bad.py::test_not_a_scorer: llmops_eval.score(): argument 1 is <function *<lambda>*"
        "not an MLflow scorer. Pass a built-in scorer*@mlflow.genai.scorers.scorer.",
        "EvaluationError: test_bad.py::test_nothing_to_score: llmops_eval has no trace to score*log_inputs*",
        "note: test_bad.py::test_evaluate_with_a_broken_scorer: mlflow.genai.evaluate: scorer 'broken' failed on "
        "1 of 1 rows: the scorer has a bug",
    ])
    assert "Traceback" not in out and "def test_broken" not in out
    _, by_name = runs(pytester.path, "bad")
    fine = by_name["test_bad.py::test_fine"]
    assert fine.info.status == "FINISHED" and fine.data.metrics["eval.short.mean"] == 1.0
    assert by_name["test_bad.py::test_broken"].data.tags["llmops.outcome"] == "failed"
    report = (pytester.path / "report.md").read_text()
    assert "scorer 'broken' failed on 1 of 1 rows" in report
    assert "| mean latency (ms) | cost (USD) | short.mean | test | run |" in report
    assert "| 0.000000 | 1.00 | `test_bad.py::test_fine` |" in report


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ("repeat=3, min_pass_rate=1.5", "min_pass_rate must be a number from 0 to 1 (the share of repetitions that "
         "must pass, e.g. min_pass_rate=0.8 with repeat=5), got 1.5"),
        ("repeat=3, min_pass_rate=-0.1", "min_pass_rate must be a number from 0 to 1*got -0.1"),
        ("repeat=0", "repeat must be a whole number >= 1, got 0"),
        ("repeat='3'", "repeat must be a whole number >= 1, got '3'"),
    ],
)
def test_repeat_arguments_are_checked_at_collection(pytester: pytest.Pytester, arguments, problem):
    pytester.makepyfile(test_flaky=f"""
        import pytest

        @pytest.mark.llmops({arguments})
        def test_flaky():
            pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: test_flaky.py::test_flaky: @pytest.mark.llmops: {problem}. Signature: *"])


JUDGED = '''
import mlflow
import pytest
from mlflow.genai.scorers import Guidelines


def joke(client, deployment):
    client.chat.completions.create(
        model=deployment.deployment, messages=[{"role": "user", "content": "Tell me a joke about animals."}])


@pytest.mark.llmops
def test_judged(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_eval):
    joke(azure_openai_client, azure_openai_deployment)
    llmops_eval.check(Guidelines(name="is_a_joke", guidelines="The response is a joke.", model=llmops_judge))


@pytest.mark.llmops
def test_evaluated(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_traces):
    joke(azure_openai_client, azure_openai_deployment)
    judge = Guidelines(name="about_animals", guidelines="The response is about animals.", model=llmops_judge)
    print(mlflow.genai.evaluate(data=llmops_traces(), scorers=[judge]).reason)


@pytest.mark.llmops
def test_unjudged(azure_openai_client, azure_openai_deployment):
    joke(azure_openai_client, azure_openai_deployment)
'''


def garble_judge_answers(cassette: Path) -> int:
    """Make the judge's recorded answers prose instead of JSON, as a model may answer."""
    data = yaml.safe_load(cassette.read_text())
    garbled = 0
    for interaction in data["interactions"]:
        if "<guidelines>" not in interaction["request"]["body"]:
            continue
        body = json.loads(interaction["response"]["body"]["string"])
        body["choices"][0]["message"]["content"] = "I think it is quite funny, really."
        interaction["response"]["body"]["string"] = json.dumps(body)
        garbled += 1
    cassette.write_text(yaml.safe_dump(data, sort_keys=False))
    return garbled


def test_a_judge_answer_that_cannot_be_read(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    pytester.makepyfile(test_judge=JUDGED)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=3)
    folder = pytester.path / "cassettes" / "test_judge"
    assert garble_judge_answers(folder / "test_judged.yaml") == 1
    assert garble_judge_answers(folder / "test_evaluated.yaml") == 1
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name)

    result = pytester.runpytest("--llmops-experiment=garbled")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "EvaluationError: test_judge.py::test_judged: the judge of scorer 'is_a_joke' (azure:/gpt-4o) answered "
        "something that is not the JSON MLflow's judges read *I think it is quite funny*",
        "In replay this answer comes from the test's cassette: record it again with "
        "`pytest --llmops-record 'test_judge.py::test_judged'`*",
        "note: test_judge.py::test_evaluated: mlflow.genai.evaluate: scorer 'about_animals' failed on 1 of 1 rows: "
        "the judge's answer is not the JSON MLflow's judges read*record it again with `pytest --llmops-record`",
    ])
    assert "Traceback" not in result.stdout.str()
    _, by_name = runs(pytester.path, "garbled")
    assert by_name["test_judge.py::test_unjudged"].info.status == "FINISHED"


PRICED = '''
import mlflow
import pytest


def ask(client, question, deployment="gpt-4o"):
    client.chat.completions.create(model=deployment, messages=[{"role": "user", "content": question}])


@pytest.mark.llmops
def test_table(azure_openai_client):
    ask(azure_openai_client, "Priced by the table.")


@pytest.mark.llmops
def test_unknown(azure_openai_client):
    ask(azure_openai_client, "Priced by nobody.", "mystery-deployment")


@pytest.mark.llmops
def test_mlflow_cost():
    with mlflow.start_span(name="call", span_type="LLM") as span:
        span.set_attribute("mlflow.llm.cost", {"input_cost": 0.1, "output_cost": 0.2, "total_cost": 0.3})
'''


def priced_chat(question: str, model: str, deployment: str = "gpt-4o") -> dict:
    """A chat answered by ``model`` (the name the answer gives), asked of ``deployment``."""
    interaction = cb.chat(cb.question(question), "An answer.", 1000, 500, model=deployment)
    interaction["request"]["uri"] = cb.CHAT_URI.replace("/gpt-4o/", f"/{deployment}/")
    body = json.loads(interaction["response"]["body"]["string"])
    body["model"] = model
    interaction["response"]["body"]["string"] = json.dumps(body)
    return interaction


def test_cost_from_mlflow_else_the_price_table(pytester: pytest.Pytester):
    pytester.makeini("""
        [pytest]
        llmops_prices =
            llmops-finetune = 1.00 2.00
    """)
    pytester.makepyfile(test_priced=PRICED)
    table = priced_chat("Priced by the table.", "llmops-finetune-2024-06-01")
    cb.write(pytester.path, "test_priced", "test_table", table)
    unknown = priced_chat("Priced by nobody.", "mystery-model", "mystery-deployment")
    cb.write(pytester.path, "test_priced", "test_unknown", unknown)
    result = pytester.runpytest("--llmops-experiment=priced")
    result.assert_outcomes(passed=3)
    _, by_name = runs(pytester.path, "priced")
    cost = {name.split("::")[-1]: run.data.metrics.get("llmops.cost_usd") for name, run in by_name.items()}
    assert cost["test_table"] == pytest.approx(1000 * 1e-6 + 500 * 2e-6)  # the date suffix ignored
    assert cost["test_unknown"] == 0.0
    assert cost["test_mlflow_cost"] == pytest.approx(0.3)
    session = next(run for run in by_name.values() if run.data.tags.get("llmops.role") == "session")
    assert session.data.metrics["llmops.cost_usd"] == pytest.approx(0.302)
    result.stdout.fnmatch_lines([
        "*0.002000  test_priced.py::test_table",
        "note: test_priced.py::test_unknown: no price for mystery-model: llmops.cost_usd leaves those calls out; "
        "add `mystery-model = INPUT OUTPUT` (US dollars per million tokens) to llmops_prices",
    ])


def test_a_bad_price_line_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makeini("""
        [pytest]
        llmops_prices =
            gpt-4o: 2.50 per million
    """)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: llmops_prices: 'gpt-4o: 2.50 per million' is not `MODEL = INPUT OUTPUT` (US dollars per million "
        "input and output tokens, numbers >= 0). Example: llmops_prices = [\"gpt-4o = 2.50 10.00\"]",
    ])


ENTRA = '''
import pytest
from mlflow.genai.scorers import Guidelines


@pytest.fixture(scope="session")
def azure_credential():
    from azure.core.credentials import AccessToken

    class Static:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("double-bearer-token", 2**31)

    return Static()


@pytest.mark.llmops
def test_judged(azure_openai_client, azure_openai_deployment, llmops_judge, llmops_eval):
    assert azure_openai_deployment.api_key is None
    azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": "Tell me a joke about animals."}])
    llmops_eval.check(Guidelines(name="is_a_joke", guidelines="The response is a joke.", model=llmops_judge))
'''


def test_judges_with_entra_id_and_structured_outputs(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    """No key: the judge authenticates like the plugin's clients. A recent API version: the
    judge asks for structured outputs, and the double answers in the schema's shape."""
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2024-10-21")
    pytester.makepyfile(test_entra=ENTRA)
    pytester.runpytest("--llmops-live").assert_outcomes(passed=1)
    judged = [r for r in lab_double.requests_to(r"/chat/completions$") if b"<guidelines>" in r.body]
    assert len(judged) == 1
    headers = judged[0].headers
    assert headers["authorization"] == "Bearer double-bearer-token" and "api-key" not in headers
    body = json.loads(judged[0].body)
    assert body["response_format"]["type"] == "json_schema"
    assert set(body["response_format"]["json_schema"]["schema"]["properties"]) == {"result", "rationale"}


def test_the_doubles_judge_answers_like_the_model():
    """What a judge reads from the double: JSON verdicts in the shape MLflow's prompts ask for."""
    from mlflow.genai.judges.prompts.guidelines import get_prompt
    from mlflow.genai.judges.prompts.safety import get_prompt as safety_prompt

    from tests.double.openai_content import ANIMAL_JOKE, complete

    def verdict(prompt: str, **body: object) -> dict[str, str]:
        answer = complete({"messages": [{"role": "user", "content": prompt}], **body})
        assert answer.finish_reason == "stop" and answer.completion_tokens > 0
        return json.loads(answer.content or "")

    context = {"request": "Tell me a joke about animals.", "response": ANIMAL_JOKE}
    yes = verdict(get_prompt(["The response is a joke.", "The response is about animals."], context))
    assert yes["result"] == "yes" and yes["rationale"].startswith("Let's think step by step.")
    assert "elephants" in yes["rationale"]
    french = verdict(get_prompt("The response must be in French.", context))
    assert french["result"] == "no"
    assert "written in English, not French" in french["rationale"]
    quoted = verdict(get_prompt("The response must mention 'computers'.", context))
    assert quoted["result"] == "yes"
    assert verdict(get_prompt("The response must mention 'giraffe'.", context))["result"] == "no"
    assert verdict(safety_prompt(content=ANIMAL_JOKE))["result"] == "yes"
    assert verdict(safety_prompt(content="How to build a bomb"))["result"] == "no"
    schema = {"type": "json_schema", "json_schema": {"name": "JudgeEvaluation", "schema": {
        "properties": {"result": {"type": "string"}, "rationale": {"type": "string"}}}}}
    structured = verdict(safety_prompt(content=ANIMAL_JOKE), response_format=schema)
    assert list(structured) == ["result", "rationale"] and structured["result"] == "yes"
    plain = complete({"messages": [{"role": "user", "content": "Tell me a joke about animals."}]})
    assert plain.content == ANIMAL_JOKE  # no judge: answered as before
