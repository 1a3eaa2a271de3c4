"""Drift inside pytest: --llmops-drift-baseline prints a drift section at the end of the
session, and llmops_drift lets a test assert on the comparison."""

from __future__ import annotations

import pytest

SUITE = """
import pytest

ANIMALS = ["otter", "heron", "badger", "lynx", "walrus", "gecko", "ibis", "marmot", "narwhal", "okapi",
           "puffin", "quokka", "raven", "salamander", "tapir", "vole"]

@pytest.mark.llmops(experiment="drift-demo")
@pytest.mark.parametrize("animal", ANIMALS)
def test_ask(azure_openai_client, azure_openai_deployment, animal):
    azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment,
        messages=[{"role": "user", "content": f"What does a {animal} eat?"}], **OPTIONS)
"""


def test_drift_section_and_fixture(pytester: pytest.Pytester, lab_double, double_env):
    pytester.makepyfile(test_suite="OPTIONS = {}\n" + SUITE)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=16)

    # Same answers, replayed: compared with the recording session, nothing drifted.
    same = pytester.runpytest_subprocess("--llmops-drift-baseline=session:latest@drift-demo")
    same.assert_outcomes(passed=16)
    same.stdout.fnmatch_lines(["*llmops: drift against session:latest@drift-demo*"])
    same.stdout.fnmatch_lines(["No drift detected (* features tested at alpha 0.05)."])

    # The same suite live, answers capped at 5 tokens: flagged.
    pytester.makepyfile(test_suite="OPTIONS = {'max_tokens': 5}\n" + SUITE)
    capped = pytester.runpytest_subprocess("--llmops-live", "--llmops-drift-baseline=session:latest@drift-demo")
    capped.assert_outcomes(passed=16)
    capped.stdout.fnmatch_lines(["DRIFT in * of * tested features: *completion_tokens*"])
    verdict = next(line for line in capped.stdout.lines if line.startswith("DRIFT in"))
    assert "finish_reason" in verdict

    # A test asserts on the comparison through the fixture.
    pytester.makepyfile(test_check="""
        import pytest

        def test_compare(llmops_drift):
            report = llmops_drift(baseline="session:latest@drift-demo", current="drift-demo:tags.`llmops.mode` = 'replay'")
            assert report.n_baseline == 16
            assert report.drifted and {"completion_tokens", "finish_reason"} <= set(report.drifted_features)

        def test_needs_a_baseline(llmops_drift):
            with pytest.raises(pytest.UsageError, match="needs a baseline"):
                llmops_drift()
    """)
    pytester.runpytest_subprocess("test_check.py").assert_outcomes(passed=2)


def test_a_first_session_has_no_latest_session_to_compare_with(pytester: pytest.Pytester) -> None:
    """``session:latest`` is the latest session *before* this one: on the first there is
    none, and the section says so instead of comparing the session with itself."""
    pytester.makepyfile(test_first="import pytest\n\n@pytest.mark.llmops\ndef test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--llmops-drift-baseline=session:latest")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*llmops: drift against session:latest*",
        "no comparison: RefError: REF 'session:latest': no finished pytest-llmops session run other than session *",
    ])
    assert "No drift detected" not in result.stdout.str()
