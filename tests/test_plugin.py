"""The plugin as pytest sees it: entry point, options, markers, import cost, validation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("mlflow", "openai", "databricks", "azure", "vcr", "httpx", "httpx2", "requests", "yaml", "scipy")


def test_plugin_import_pulls_in_no_heavy_module():
    code = (
        "import json, sys, pytest_llmops.plugin; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_collect_only_session_imports_no_heavy_module(pytester: pytest.Pytester):
    pytester.makepyfile(
        f"import sys\nHEAVY = {HEAVY!r}\n\n"
        "def test_nothing_heavy():\n"
        "    loaded = sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))\n"
        "    assert loaded == []\n"
    )
    # respx's (and pytest-recording's) own plugins import httpx: measure ours alone.
    result = pytester.runpytest_subprocess("-p", "no:respx", "-p", "no:recording")
    result.assert_outcomes(passed=1)


START_UP = {
    "pytest_llmops", "pytest_llmops.plugin", "pytest_llmops.hookspecs", "pytest_llmops.settings",
    "pytest_llmops.stash", "pytest_llmops.fixtures", "pytest_llmops.fixtures.azure",
    "pytest_llmops.fixtures.cassettes", "pytest_llmops.fixtures.databricks",
    "pytest_llmops.fixtures.evaluation", "pytest_llmops.fixtures.monitoring",
    "pytest_llmops.fixtures.tracking", "pytest_llmops.fixtures.traffic",
    # replay (the default mode): the seal's installer and the placeholder environment
    "pytest_llmops.seal", "pytest_llmops.seal.sockets", "pytest_llmops.cassettes",
    "pytest_llmops.cassettes.replay_env",
}
"""What pytest imports from the plugin to start a replay session (issue 17: without bytecode
caches pytest parses, rewrites and compiles each of them on every run). The seal's checks,
the errors, the domains and the report annotations come on first use."""


def test_a_replay_session_starts_with_the_wiring_alone(pytester: pytest.Pytester):
    """... and pytest does not rewrite it (``PYTEST_DONT_REWRITE``): a rewritten module has
    the rewriter's ``@py_builtins`` import."""
    pytester.makepyfile(
        "import json, sys\n\n"
        "def test_start_up():\n"
        "    ours = sorted(m for m in sys.modules if m.startswith('pytest_llmops'))\n"
        "    print('LOADED', json.dumps(ours))\n"
        "    print('REWRITTEN', json.dumps([m for m in ours if '@py_builtins' in vars(sys.modules[m])]))\n"
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    printed = {key: json.loads(line.split(f"{key} ", 1)[1])
               for line in result.outlines for key in ("LOADED", "REWRITTEN") if f"{key} " in line}
    assert set(printed["LOADED"]) == START_UP
    assert printed["REWRITTEN"] == []


def test_options_live_in_one_group(pytester: pytest.Pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["pytest-llmops: LLM tests on Azure OpenAI and Databricks:"])
    text = result.stdout.str()
    group = text.split("pytest-llmops: LLM tests on Azure OpenAI and Databricks:")[1]
    for option in (
        "--llmops-live", "--llmops-record", "--llmops-provision", "--llmops-keep-resources",
        "--llmops-strict", "--llmops-tracking-uri", "--llmops-experiment", "--llmops-report",
        "--llmops-drift-baseline",
    ):
        assert option in group
    for ini in ("llmops_cassette_dir", "llmops_tracking_uri", "llmops_experiment"):
        assert ini in text


def test_markers_are_registered_with_descriptions(pytester: pytest.Pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines([
        "@pytest.mark.llmops(experiment=None, run_name=None, params=None, tags=None, autolog=True, repeat=1, min_pass_rate=1.0):*",
        "@pytest.mark.llmops_cassette(name=None, match_on=None, allow_repeats=False):*",
    ])


def test_strict_markers_pass(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmops_cassette(name="x")
        def test_a():
            pass
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_disabled_with_no_llmops(pytester: pytest.Pytester):
    pytester.makepyfile("def test_a(request):\n    assert 'llmops_cassette' not in request.fixturenames\n")
    result = pytester.runpytest("-p", "no:llmops")
    result.assert_outcomes(passed=1)
    assert "--llmops-live" not in pytester.runpytest("-p", "no:llmops", "--help").stdout.str()


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("llmops_cassette(nam='x')", "*test_bad.py::test_a: @pytest.mark.llmops_cassette: unknown argument(s) nam*"),
        ("llmops_cassette(match_on='body')", "*match_on must be a list of fields*"),
        ("llmops_cassette(match_on=['body', 'headers'])", "*match_on fields must be among method, host, path*"),
        ("llmops_cassette(allow_repeats='yes')", "*allow_repeats must be True or False*"),
        ("llmops_cassette(name='../outside')", "*name must be relative to the cassette folder*"),
        ("llmops(params=['a'])", "*test_bad.py::test_a: @pytest.mark.llmops: params must be a dict*"),
        ("llmops('exp')", "*llmops: takes keyword arguments only*"),
        ("llmops(autolog='no')", "*autolog must be True or False*"),
        ("llmops(experment='x')", "*unknown argument(s) experment*Signature: llmops(experiment=None*"),
    ],
)
def test_wrong_marker_arguments_are_usage_errors(pytester: pytest.Pytester, marker: str, message: str):
    pytester.makepyfile(test_bad=f"import pytest\n\n@pytest.mark.{marker}\ndef test_a():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
