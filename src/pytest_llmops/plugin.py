"""pytest wiring of pytest-llmops: options, markers, hooks, and the fixtures imported from
their domain modules. Nothing heavy is imported here (no vcrpy, openai, mlflow, azure or
databricks): a session that uses none of them pays nothing."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_llmops import hookspecs
from pytest_llmops import settings as settings_mod
from pytest_llmops.azure.fixtures import (  # noqa: F401 - fixtures
    _llmops_openai_clients,
    azure_credential,
    azure_databricks_workspace,
    azure_openai_async_client,
    azure_openai_client,
    azure_openai_deployment,
)
from pytest_llmops.cassettes.fixtures import (  # noqa: F401 - fixtures
    cassette_key,
    llmops_cassette,
    llmops_cassette_dir,
    llmops_mode,
    llmops_recorder,
    reports_key,
)
from pytest_llmops.databricks.fixtures import (  # noqa: F401 - fixtures
    databricks_cluster,
    databricks_command,
    databricks_workspace,
)
from pytest_llmops.errors import LLMOpsError, ReplayMiss
from pytest_llmops.faults import llmops_faults  # noqa: F401 - fixtures
from pytest_llmops.monitoring import session as drift_session
from pytest_llmops.monitoring.session import llmops_drift  # noqa: F401 - fixture
from pytest_llmops.tracking import hooks as tracking_hooks
from pytest_llmops.tracking.fixtures import llmops_run, llmops_traces, mlflow_experiment  # noqa: F401 - fixtures
from pytest_llmops.validation import cassette_options, run_options

_sealed_key = pytest.StashKey[bool]()
STALE_PROPERTY = "llmops_stale_cassettes"

CASSETTE_FIXTURES = frozenset({
    "azure_openai_deployment", "azure_openai_client", "azure_openai_async_client",
    "azure_databricks_workspace", "databricks_workspace", "databricks_cluster", "databricks_command",
})
"""Fixtures whose tests get a cassette without asking: their clients make HTTP calls."""

MARKERS = (
    "llmops(experiment=None, run_name=None, params=None, tags=None, autolog=True): run the test "
    "inside its own MLflow run (with mlflow.openai.autolog() traces) and a cassette.",
    "llmops_cassette(name=None, match_on=None, allow_repeats=False): cassette options, or a "
    "cassette for a test that uses no llmops fixture. name is relative to the cassette folder.",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmops", "pytest-llmops: LLM tests on Azure OpenAI and Databricks")
    group.addoption(
        "--llmops-live", action="store_true", default=False,
        help="run against the real services; cassettes are neither read nor written (LLMOPS_MODE=live).",
    )
    group.addoption(
        "--llmops-record", action="store_true", default=False,
        help="run against the real services and (re)write the cassettes of passing tests "
        "(LLMOPS_MODE=record).",
    )
    group.addoption(
        "--llmops-provision", action="store_true", default=False,
        help="let fixtures create cloud resources (and delete them after); without it they only attach.",
    )
    group.addoption(
        "--llmops-keep-resources", action="store_true", default=False,
        help="keep the cloud resources this run created, and print their ids.",
    )
    group.addoption(
        "--llmops-strict", action="store_true", default=False,
        help="fail, instead of skip, tests whose credentials are missing in live or record mode.",
    )
    group.addoption(
        "--llmops-tracking-uri", metavar="URI", default=None,
        help="MLflow tracking URI (default: llmops_tracking_uri ini, MLFLOW_TRACKING_URI, else "
        "sqlite:///<rootdir>/.llmops/mlflow.db).",
    )
    group.addoption("--llmops-experiment", metavar="NAME", default=None, help="MLflow experiment name.")
    group.addoption(
        "--llmops-report", metavar="PATH", default=None,
        help="write the run summary to PATH (JSON, or Markdown for .md).",
    )
    group.addoption(
        "--llmops-drift-baseline", metavar="REF", default=None,
        help="compare this session's traces with a baseline at the end: a run id, session:ID, "
        "session:latest[@EXPERIMENT], session:latest-live[@EXPERIMENT] (sessions whose answers came "
        "from the service), EXPERIMENT[:FILTER] or a .jsonl/.parquet file.",
    )
    group.addoption(
        "--llmops-fail-on-drift", action="store_true", default=False,
        help="exit 1 when the session drifted from --llmops-drift-baseline (or the comparison could "
        "not run), if the tests themselves passed.",
    )
    group.addoption(
        "--llmops-drift-html", metavar="PATH", default=None,
        help="write the drift report of --llmops-drift-baseline as HTML to PATH.",
    )
    group.addoption(
        "--llmops-min-effect", metavar="FEATURE=VALUE", action="append", default=[],
        help="minimum effect for DRIFT of a feature (latency_ms=0.3, latency_ms=psi:0.25; 0: "
        "significance alone), as `pytest-llmops drift --min-effect`; repeatable.",
    )
    parser.addini("llmops_cassette_dir", "folder of cassettes, relative to the rootdir", default="cassettes")
    parser.addini("llmops_tracking_uri", "MLflow tracking URI", default="")
    parser.addini("llmops_experiment", "MLflow experiment name", default="")
    parser.addini(
        "llmops_pacing", "pace the plugin's Azure OpenAI clients to the deployment's rate limit in live and "
        "record modes (default true)", type="bool", default=True,
    )
    parser.addini(
        "llmops_tokens_per_minute", "tokens per minute the plugin's clients may use per deployment, across "
        "xdist workers (default: the deployment's capacity, else its x-ratelimit-limit-tokens header)",
        default="",
    )
    parser.addini(
        "llmops_requests_per_minute", "requests per minute per deployment (default: 6 per 1000 tokens per "
        "minute of capacity, else the x-ratelimit-limit-requests header)",
        default="",
    )
    parser.addini(
        "llmops_rate_limit_window", "seconds of the rate-limit window (default 60; shorten it only "
        "against a local double whose window is as short)",
        default="",
    )
    parser.addini(
        "llmops_max_429_retries", "times a request answered 429 is sent again after its Retry-After "
        "before the test fails (default 6)",
        default="",
    )
    parser.addini(
        "llmops_databricks_node_type",
        "node type of the cluster --llmops-provision creates (else DATABRICKS_NODE_TYPE, "
        "else Standard_D4ds_v5)",
        default="",
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    settings = settings_mod.from_config(config)
    config.stash[settings_mod.settings_key] = settings
    tracking_hooks.register(config)  # MLflow runs per marked test; its hooks live on the object
    drift_session.register(config)  # --llmops-drift-baseline
    if settings.mode == "live":
        config.pluginmanager.register(StaleCassettes(), "llmops-stale-cassettes")
    if settings.is_replay:
        from pytest_llmops.cassettes import network

        network.seal(allowed_hosts=_explicit_hosts(settings.tracking_uri))
        config.stash[_sealed_key] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_sealed_key, False):
        from pytest_llmops.cassettes import network

        network.unseal()


def _explicit_hosts(tracking_uri: str | None) -> list[str]:
    """Hosts the user configured explicitly, reachable even in replay."""
    import os
    from urllib.parse import urlsplit

    from pytest_llmops.tracking.store import is_databricks

    if not tracking_uri:
        return []
    if is_databricks(tracking_uri):
        # MLflow on Databricks: the workspace of the SDK's unified auth (DATABRICKS_HOST).
        configured = os.environ.get("DATABRICKS_HOST", "")
        workspace = urlsplit(configured if "://" in configured else f"https://{configured}").hostname
        return [workspace] if workspace else []
    if "://" not in tracking_uri or tracking_uri.startswith(("sqlite", "file")):
        return []
    host = urlsplit(tracking_uri).hostname
    return [host] if host else []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate marker arguments early, and give marked tests their cassette."""
    for item in items:
        cassette_mark = item.get_closest_marker("llmops_cassette")
        run_mark = item.get_closest_marker("llmops")
        if cassette_mark is not None:
            cassette_options(item.nodeid, cassette_mark)
        if run_mark is not None:
            run_options(item.nodeid, run_mark)
        if not isinstance(item, pytest.Function):
            continue
        # A cassette covers all HTTP of a test that is marked or uses any llmops fixture.
        marked = cassette_mark is not None or run_mark is not None
        if marked or not CASSETTE_FIXTURES.isdisjoint(item.fixturenames):
            _use_fixture(item, "llmops_cassette")


def _use_fixture(item: pytest.Function, name: str) -> None:
    """Make a marked test request a fixture it does not name."""
    if name not in item.fixturenames:
        item.fixturenames.insert(0, name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(reports_key, {})[report.when] = report
    cassette = item.stash.get(cassette_key, None)
    if report.when == "call" and cassette is not None and cassette.stale:
        # Travels with the report, so the xdist controller sees it too.
        report.user_properties.append((STALE_PROPERTY, [stale.describe() for stale in cassette.stale]))
    excinfo = call.excinfo
    if not report.failed or excinfo is None:
        return report
    if cassette is not None and cassette.misses:
        # Clients may wrap the miss (openai 2.x, azure-core): show the plugin's own message.
        wrapped = "" if excinfo.errisinstance(ReplayMiss) else (
            f"\n(raised to the test as {excinfo.typename}: {excinfo.value})"
        )
        report.longrepr = f"{cassette.misses[0]}{_where(item, excinfo)}{wrapped}"
    elif excinfo.errisinstance(LLMOpsError):
        # The plugin's errors say what happened and how to fix it: no traceback needed.
        report.longrepr = f"{excinfo.typename}: {excinfo.value}{_where(item, excinfo)}"
    return report


def _where(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """Where in the test file the error was raised, if it was."""
    for entry in reversed(excinfo.traceback):
        if entry.path == getattr(item, "path", None):
            return f"\n\n(raised at {entry.path}:{entry.lineno + 1})"
    return ""


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """xdist controller: hand each worker what the session shares (its id, ...)."""
    from pytest_llmops import session

    session.share_with_worker(node.config, node.workerinput)  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """Before an xdist worker tears down its session fixtures, say it has finished its
    tests, so that the creator of a shared resource removes it only after every worker."""
    from pytest_llmops import session

    if nextitem is None and session.is_worker(item.config):
        from pytest_llmops import resources

        resources.worker_done(item.config)
    return (yield)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller (or a run without xdist) removes this invocation's shared state."""
    from pytest_llmops import session as llmops_session

    config = session.config
    if llmops_session.is_worker(config) or settings_mod.settings_key not in config.stash:
        return
    import shutil

    run_dir = settings_mod.get(config).rootdir / ".llmops" / "run" / llmops_session.session_id(config)
    if settings_mod.get(config).network:
        from pytest_llmops import pacing

        pacing.collect_summary(config, run_dir)  # the workers' totals, before their files go
    shutil.rmtree(run_dir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Live and record runs: how long the plugin's clients waited for the rate limit, and
    how many 429s they met."""
    if settings_mod.settings_key in config.stash and settings_mod.get(config).network:
        from pytest_llmops import pacing

        pacing.write_summary(terminalreporter, config)


class StaleCassettes:
    """Collects the recordings found stale in live mode (from this process or xdist workers,
    whose reports carry them) and lists them at the end."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == STALE_PROPERTY and isinstance(value, list):
                self.found.extend(str(line) for line in value)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.found:
            return
        terminalreporter.write_sep("-", "llmops: stale cassettes")
        terminalreporter.write_line(
            f"{len(self.found)} recorded answer(s) no longer match the live service; re-record with "
            "`pytest --llmops-record <test>`:"
        )
        for line in self.found:
            terminalreporter.write_line(f"  {line}")
