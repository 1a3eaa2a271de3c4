"""A pytest session leaves the process's MLflow state as it found it: after an in-process
run of marked tests, ``mlflow.openai.autolog()`` is back to what it was, so later OpenAI
calls in the same process are not traced to MLflow's default store (``./mlflow.db`` and
``./mlruns`` in the working directory)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from mlflow.utils.autologging_utils import autologging_is_disabled

from tests.double import LabDouble

MARKED = """
import pytest

@pytest.mark.llmops
def test_ask(azure_openai_client, azure_openai_deployment):
    azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": "Hello there"}])
"""


@pytest.fixture
def user_autolog(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Openai autologging as the user had it before the session (parametrized), switched off after."""
    import mlflow.openai

    enabled: bool = request.param
    if enabled:
        mlflow.openai.autolog(disable_for_unsupported_versions=False, silent=True)
    try:
        yield enabled
    finally:
        mlflow.openai.autolog(disable=True, disable_for_unsupported_versions=False, silent=True)


@pytest.mark.parametrize("user_autolog", [False, True], ids=["user-off", "user-on"], indirect=True)
def test_a_session_gives_back_openai_autolog_as_the_user_had_it(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str], user_autolog: bool
) -> None:
    assert autologging_is_disabled("openai") is not user_autolog  # type: ignore[no-untyped-call]
    pytester.makepyfile(test_marked=MARKED)

    pytester.runpytest("--llmops-live").assert_outcomes(passed=1)

    assert autologging_is_disabled("openai") is not user_autolog  # type: ignore[no-untyped-call]


def test_openai_calls_after_a_session_write_nothing_to_the_working_directory(
    pytester: pytest.Pytester, lab_double: LabDouble, double_env: dict[str, str]
) -> None:
    # The process's own client, made before the session: its classes (imported lazily by
    # openai) are the ones the session patches, and pytester keeps them after the run.
    client = openai.AzureOpenAI(
        azure_endpoint=double_env["AZURE_OPENAI_ENDPOINT"],
        api_key=double_env["AZURE_OPENAI_API_KEY"],
        api_version=double_env["AZURE_OPENAI_API_VERSION"],
        max_retries=0,
    )
    completions = client.chat.completions
    pytester.makepyfile(test_marked=MARKED)
    pytester.runpytest("--llmops-live").assert_outcomes(passed=1)
    stray = [pytester.path / "mlflow.db", pytester.path / "mlruns"]
    assert not any(path.exists() for path in stray)

    # Later, an OpenAI call that nobody asked to trace.
    completions.create(
        model=double_env["AZURE_OPENAI_DEPLOYMENT"], messages=[{"role": "user", "content": "Untraced?"}]
    )

    assert [path.name for path in stray if path.exists()] == []
