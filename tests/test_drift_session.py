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
    capped = pytester.runpytest_subprocess(
        "--llmops-live", "--llmops-drift-baseline=session:latest@drift-demo"
    )
    capped.assert_outcomes(passed=16)
    capped.stdout.fnmatch_lines(["DRIFT in * of * tested features: *completion_tokens*"])
    verdict = next(line for line in capped.stdout.lines if line.startswith("DRIFT in"))
    assert "finish_reason" in verdict

    # A test asserts on the comparison through the fixture.
    pytester.makepyfile(
        test_check="""
        import pytest

        def test_compare(llmops_drift):
            report = llmops_drift(baseline="session:latest@drift-demo", current="drift-demo:tags.`llmops.mode` = 'replay'")
            assert report.n_baseline == 16
            assert report.drifted and {"completion_tokens", "finish_reason"} <= set(report.drifted_features)

        def test_needs_a_baseline(llmops_drift):
            with pytest.raises(pytest.UsageError, match="needs a baseline"):
                llmops_drift()
    """
    )
    pytester.runpytest_subprocess("test_check.py").assert_outcomes(passed=2)


def test_a_first_session_has_no_latest_session_to_compare_with(pytester: pytest.Pytester) -> None:
    """``session:latest`` is the latest session *before* this one: on the first there is
    none, and the section says so instead of comparing the session with itself."""
    pytester.makepyfile(test_first="import pytest\n\n@pytest.mark.llmops\ndef test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--llmops-drift-baseline=session:latest")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*llmops: drift against session:latest*",
            "no comparison: NoEarlierSession: REF 'session:latest': no finished pytest-llmops session run other than session *",
        ]
    )
    assert "No drift detected" not in result.stdout.str()


def _store(pytester: pytest.Pytester):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{pytester.path / '.llmops' / 'mlflow.db'}")


def _session_runs(pytester: pytest.Pytester, mode: str) -> list:  # type: ignore[type-arg]
    client = _store(pytester)
    experiment = client.get_experiment_by_name("drift-demo")
    return client.search_runs(
        [experiment.experiment_id],
        f"tags.`llmops.role` = 'session' and tags.`llmops.mode` = '{mode}'",
        order_by=["attributes.start_time DESC"],
    )


def test_the_drift_gate_html_report_and_latest_live(
    pytester: pytest.Pytester, lab_double, double_env
) -> None:
    pytester.makepyfile(test_suite="OPTIONS = {}\n" + SUITE)
    # A first session has nothing before it: the gate lets it pass.
    first = pytester.runpytest_subprocess(
        "--llmops-record", "--llmops-drift-baseline=session:latest-live@drift-demo", "--llmops-fail-on-drift"
    )
    assert first.ret == 0
    first.stdout.fnmatch_lines(
        ["no comparison: NoEarlierSession: *no finished live (or record) pytest-llmops session*"]
    )

    # Replayed: the same answers as the recording, no drift; the HTML is written and the
    # comparison is logged to this session's run.
    replay = pytester.runpytest_subprocess(
        "--llmops-drift-baseline=session:latest-live@drift-demo",
        "--llmops-fail-on-drift",
        "--llmops-drift-html=out/drift.html",
    )
    assert replay.ret == 0
    replay.stdout.fnmatch_lines(["No drift detected (*", "HTML report: */out/drift.html"])
    assert "<h1>Drift report</h1>" in (pytester.path / "out" / "drift.html").read_text()
    (replayed,) = _session_runs(pytester, "replay")
    logged = {a.path for a in _store(pytester).list_artifacts(replayed.info.run_id, "drift")}
    assert logged == {"drift/report.html", "drift/report.json", "drift/report.txt"}
    assert _store(pytester).get_run(replayed.info.run_id).data.tags["llmops.drift.drifted"] == "false"

    # Live, answers capped, under xdist: drifted, so exit status 1 although every test passed.
    # session:latest-live is the recording session, not the replayed one that ran last.
    (recorded,) = _session_runs(pytester, "record")
    record_id = recorded.data.tags["llmops.session_id"]
    pytester.makepyfile(test_suite="OPTIONS = {'max_tokens': 5}\n" + SUITE)
    capped = pytester.runpytest_subprocess(
        "--llmops-live",
        "-n",
        "2",
        "--llmops-drift-baseline=session:latest-live@drift-demo",
        "--llmops-fail-on-drift",
    )
    capped.assert_outcomes(passed=16)
    assert capped.ret == 1
    capped.stdout.fnmatch_lines(
        [
            f"Drift: baseline 'session:{record_id}@drift-demo' *",
            "DRIFT in * of * tested features: *completion_tokens*",
            "exit status 1: the session drifted (--llmops-fail-on-drift)",
        ]
    )
    (live, *_) = _session_runs(pytester, "live")
    assert _store(pytester).get_run(live.info.run_id).data.tags["llmops.drift.drifted"] == "true"


def test_failing_tests_keep_their_exit_status_and_drift_options_are_checked(
    pytester: pytest.Pytester, lab_double, double_env
) -> None:
    pytester.makepyfile(test_suite="OPTIONS = {}\n" + SUITE)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=16)
    pytester.makepyfile(
        test_suite="OPTIONS = {'max_tokens': 5}\n" + SUITE + "\n\ndef test_broken():\n    assert False\n"
    )
    failing = pytester.runpytest_subprocess(
        "--llmops-live", "--llmops-drift-baseline=session:latest@drift-demo", "--llmops-fail-on-drift"
    )
    failing.assert_outcomes(passed=16, failed=1)
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    failing.stdout.fnmatch_lines(["DRIFT in *"])
    assert "exit status 1: the session drifted" not in failing.stdout.str()  # the tests' own status stands

    usage = pytester.runpytest_subprocess("--llmops-fail-on-drift")
    assert usage.ret == pytest.ExitCode.USAGE_ERROR
    usage.stderr.fnmatch_lines(["*--llmops-fail-on-drift and --llmops-drift-html need a baseline*"])
    (pytester.path / "blocker").write_text("a file, not a folder")
    html = pytester.runpytest_subprocess(
        "--llmops-drift-baseline=session:latest", "--llmops-drift-html=blocker/x.html"
    )
    assert html.ret == pytest.ExitCode.USAGE_ERROR
    html.stderr.fnmatch_lines(["*--llmops-drift-html cannot be written: *blocker/x.html*"])
    effect = pytester.runpytest_subprocess(
        "--llmops-drift-baseline=session:latest", "--llmops-min-effect=latency_ms"
    )
    assert effect.ret == pytest.ExitCode.USAGE_ERROR
    effect.stderr.fnmatch_lines(["*--llmops-min-effect: --min-effect 'latency_ms': use FEATURE=VALUE*"])
