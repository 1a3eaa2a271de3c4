"""A missing optional extra: one line naming the `pip install` that fixes it, never at load.

Each inner run is a subprocess whose ``-p blocker`` plugin (loaded before the entry-point
plugins) installs a ``sys.meta_path`` finder refusing the blocked top-level packages, as if
the extra were not installed. The outer process's mlflow/numpy cannot leak into it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCKER = """
import importlib.abc
import sys

BLOCKED = {blocked!r}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED or any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


for module in list(sys.modules):
    if any(module == b or module.startswith(b + ".") for b in BLOCKED):
        del sys.modules[module]
sys.meta_path.insert(0, Blocker())
"""

MLFLOW = ("mlflow",)
DRIFT = ("numpy", "scipy", "matplotlib")
AZURE_MGMT = ("azure.mgmt",)
DATABRICKS = ("databricks",)
EVERY_EXTRA = (*MLFLOW, *DRIFT, *AZURE_MGMT, *DATABRICKS, "pyspark", "pyarrow")


def fix(extras: str) -> str:
    return f"pip install 'pytest-llmops[{extras}]'"


def run(pytester: pytest.Pytester, blocked: tuple[str, ...], *args: str) -> pytest.RunResult:
    pytester.makepyfile(blocker=BLOCKER.format(blocked=set(blocked)))
    return pytester.runpytest_subprocess("-p", "blocker", "-p", "no:cacheprovider", *args)


def assert_one_line(result: pytest.RunResult, line: str) -> None:
    """The message is printed as one line, and nothing of the import machinery is."""
    output = result.stdout.str() + result.stderr.str()
    assert any(text.strip().endswith(line) for text in output.splitlines()), output
    for noise in ("Traceback", "ModuleNotFoundError", "blocked by the test", "importlib"):
        assert noise not in output, output


def test_base_install_replays_without_error_or_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app="""
        def test_client(azure_openai_client, azure_openai_deployment):
            assert azure_openai_deployment.deployment
            assert azure_openai_client.base_url
    """)
    result = run(pytester, EVERY_EXTRA, "-W", "error", "-rw")
    result.assert_outcomes(passed=1)
    assert "warnings summary" not in result.stdout.str()
    assert result.stderr.str().strip() == ""


@pytest.mark.parametrize(("test", "what"), [
    ("import pytest\n\n@pytest.mark.llmops\ndef test_it():\n    pass\n", "@pytest.mark.llmops"),
    ("def test_it(llmops_run):\n    pass\n", "llmops_run"),
    ("def test_it(llmops_traces):\n    pass\n", "llmops_traces"),
    ("def test_it(mlflow_experiment):\n    pass\n", "mlflow_experiment"),
    ("def test_it(llmops_eval):\n    pass\n", "llmops_eval"),
    ("def test_it(llmops_judge):\n    pass\n", "llmops_judge"),
], ids=["marker", "llmops_run", "llmops_traces", "mlflow_experiment", "llmops_eval", "llmops_judge"])
def test_tracking_without_mlflow(pytester: pytest.Pytester, test: str, what: str) -> None:
    pytester.makepyfile(test_it=test, test_plain="def test_plain():\n    pass\n")
    result = run(pytester, MLFLOW)
    result.assert_outcomes(passed=1, errors=1)
    assert_one_line(result, f"MissingExtra: {what} needs the [mlflow] extra: {fix('mlflow')}")


@pytest.mark.parametrize("fixture", ["databricks_workspace", "databricks_cluster", "databricks_command"])
def test_databricks_fixtures_without_databricks_sdk(pytester: pytest.Pytester, fixture: str) -> None:
    pytester.makepyfile(test_it=f"def test_it({fixture}):\n    pass\n")
    result = run(pytester, DATABRICKS)
    result.assert_outcomes(errors=1)
    assert_one_line(
        result,
        "MissingExtra: Databricks (databricks_workspace, databricks_cluster, "
        f"databricks_command) needs the [databricks] extra: {fix('databricks')}",
    )


@pytest.mark.parametrize("fixture", ["azure_openai_deployment", "azure_databricks_workspace"])
def test_provisioning_without_azure_mgmt(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                         fixture: str) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-test")
    pytester.makepyfile(test_it=f"def test_it({fixture}):\n    pass\n")
    result = run(pytester, AZURE_MGMT, "--llmops-live", "--llmops-provision")
    result.assert_outcomes(errors=1)
    assert_one_line(result, f"MissingExtra: --llmops-provision of {fixture} needs the [azure] extra: {fix('azure')}")


def test_drift_fixture_without_the_drift_extra(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_it="def test_it(llmops_drift):\n    pass\n")
    result = run(pytester, DRIFT)
    result.assert_outcomes(errors=1)
    assert_one_line(result, f"MissingExtra: llmops_drift needs the [drift] extra: {fix('drift')}")


def test_drift_baseline_option_without_the_drift_extra(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_it="def test_it():\n    pass\n")
    result = run(pytester, DRIFT, "--llmops-drift-baseline", "session:latest")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert_one_line(result, f"--llmops-drift-baseline needs the [drift] extra: {fix('drift')}")


def command(pytester: pytest.Pytester, blocked: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    pytester.makepyfile(blocker=BLOCKER.format(blocked=set(blocked)))
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(pytester.path)!r})
        import blocker
        from pytest_llmops.cli import main
        sys.exit(main({list(args)!r}))
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=pytester.path, capture_output=True, text=True)


def test_drift_command_without_the_drift_extra(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("a.jsonl").write_text('{"latency_ms": 1}\n')
    done = command(pytester, DRIFT, "drift", "--baseline", "a.jsonl", "--current", "a.jsonl")
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr == f"pytest-llmops: pytest-llmops drift needs the [drift] extra: {fix('drift')}\n"


def test_sweep_command_without_the_azure_extra(pytester: pytest.Pytester) -> None:
    done = command(pytester, (*AZURE_MGMT, *DATABRICKS), "sweep", "--dry-run")
    assert done.returncode == 2, done
    assert done.stderr == (
        f"pytest-llmops: pytest-llmops sweep needs the [azure,databricks] extra: {fix('azure,databricks')}\n"
    )
