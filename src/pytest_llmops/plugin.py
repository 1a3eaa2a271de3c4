"""pytest wiring of pytest-llmops: options, markers, hooks, and the fixtures of
:mod:`pytest_llmops.fixtures`. Nothing heavy is imported here (no vcrpy, openai, mlflow, azure or
databricks): a session that uses none of them pays nothing.

PYTEST_DONT_REWRITE: pytest rewrites the asserts of every module of a plugin (parse, walk,
compile) and, without bytecode caches (``PYTHONDONTWRITEBYTECODE=1``), on every run; the
modules loaded at start-up, this one and those it imports, have no test asserts and opt out."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_llmops import hookspecs
from pytest_llmops import settings as settings_mod
from pytest_llmops.fixtures.azure import (  # noqa: F401 - fixtures
    _llmops_openai_clients,
    azure_credential,
    azure_databricks_workspace,
    azure_openai_async_client,
    azure_openai_client,
    azure_openai_deployment,
)
from pytest_llmops.fixtures.cassettes import (  # noqa: F401 - fixtures
    llmops_cassette,
    llmops_cassette_dir,
    llmops_mode,
    llmops_recorder,
    llmops_unrecorded_requests,
)
from pytest_llmops.fixtures.databricks import (  # noqa: F401 - fixtures
    databricks_cluster,
    databricks_cluster_environment,
    databricks_command,
    databricks_workspace,
)
from pytest_llmops.fixtures.evaluation import llmops_eval, llmops_judge  # noqa: F401 - fixtures
from pytest_llmops.fixtures.monitoring import llmops_drift  # noqa: F401 - fixture
from pytest_llmops.fixtures.tracking import llmops_run, llmops_traces, mlflow_experiment  # noqa: F401 - fixtures
from pytest_llmops.fixtures.traffic import llmops_faults  # noqa: F401 - fixture
from pytest_llmops.stash import cassette_key, reports_key, tracked_item_key

_sealed_key = pytest.StashKey[bool]()
_replay_env_key = pytest.StashKey[dict[str, str]]()
_tracking_from_start_key = pytest.StashKey[bool]()
PACING_NUMBERS = (
    "llmops_tokens_per_minute", "llmops_requests_per_minute", "llmops_rate_limit_window",
    "llmops_max_429_retries",
)

CASSETTE_FIXTURES = frozenset({
    "azure_openai_deployment", "azure_openai_client", "azure_openai_async_client",
    "azure_databricks_workspace", "databricks_workspace", "databricks_cluster", "databricks_command",
})
"""Fixtures whose tests get a cassette without asking: their clients make HTTP calls."""

MARKERS = (
    "llmops(experiment=None, run_name=None, params=None, tags=None, autolog=True, repeat=1, "
    "min_pass_rate=1.0): run the test inside its own MLflow run (with mlflow.openai.autolog() traces) "
    "and a cassette; repeat=N runs its body N times and passes when min_pass_rate of them pass.",
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
        help="run against the real services and (re)write the cassettes of every test whose body ran "
        "(LLMOPS_MODE=record); the short form of --llmops-record-mode=all.",
    )
    group.addoption(
        "--llmops-record-mode", metavar="MODE", default=None,
        help="record, choosing what: all (re-record every test), missing (replay the tests that have "
        "a cassette, record the others), new (as missing, and append the requests a cassette lacks). "
        "LLMOPS_RECORD_MODE when not given.",
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
        help="fail, instead of skip, tests whose credentials are missing in live or record mode; and fail, "
        "instead of running them untracked, tracked tests when the MLflow tracking store cannot be used.",
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
    group.addoption(
        "--llmops-allow-host", metavar="HOST", action="append", default=[], dest="llmops_allow_host",
        help="in replay, let connections to HOST through the seal (repeatable; a name, *.domain, an "
        "address or a network such as 10.0.0.0/8).",
    )
    parser.addini("llmops_cassette_dir", "folder of cassettes, relative to the rootdir", default="cassettes")
    parser.addini(
        "llmops_cassettes", "which tests get a cassette: fixtures (tests using an llmops fixture or marker, "
        "the default) or all (every test; a file is written only for tests that made requests)",
        default="fixtures",
    )
    parser.addini(
        "llmops_allowed_hosts", "hosts reachable in replay besides loopback and the tracking server "
        "(names, *.domain, addresses, networks; whitespace-separated)", type="args", default=[],
    )
    parser.addini("llmops_tracking_uri", "MLflow tracking URI", default="")
    parser.addini("llmops_experiment", "MLflow experiment name", default="")
    parser.addini(
        "llmops_pacing", "pace every Azure OpenAI request (the plugin's clients' and your own httpx/httpx2 "
        "clients') to the deployment's rate limit in live and record modes (default true)",
        type="bool", default=True,
    )
    parser.addini(
        "llmops_tokens_per_minute", "tokens per minute the plugin's clients may use per deployment, across "
        "xdist workers (default: its x-ratelimit-limit-tokens header; until the first answer, its capacity)",
        default="",
    )
    parser.addini(
        "llmops_requests_per_minute", "requests per minute per deployment (default: its x-ratelimit-limit-"
        "requests header; until the first answer, 1 per 1000 tokens per minute of capacity)",
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
        "llmops_prices", "US dollars per million input and output tokens, one `MODEL = INPUT OUTPUT` per "
        "line, for llmops.cost_usd (default: gpt-4o = 2.50 10.00)", type="linelist", default=[],
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
    settings = settings_mod.from_config(config)  # a usage error for any wrong option or variable
    _check_ini(config)
    config.stash[settings_mod.settings_key] = settings
    if config.getini("llmops_prices"):  # the default table needs no check (nor its module)
        from pytest_llmops.evaluation import cost

        cost.check_prices(config)
    if settings.tracking_uri:
        from pytest_llmops.tracking import uri

        uri.check(settings.tracking_uri, settings.tracking_uri_source)  # a usage error, now
    if _tracking_from_start(config, settings):
        _register_tracking(config)
        config.stash[_tracking_from_start_key] = True
    if settings.drift_baseline or settings.drift_fail or settings.drift_html or settings.drift_min_effect:
        from pytest_llmops.monitoring import session as drift_session

        drift_session.register(config)  # --llmops-drift-baseline
    if settings.mode == "live":
        from pytest_llmops.cassettes.staleness import StaleCassettes

        config.pluginmanager.register(StaleCassettes(), "llmops-stale-cassettes")
    if settings.network:
        from pytest_llmops.traffic import own_clients

        own_clients.install(config)  # every client's Azure OpenAI requests paced, not only the plugin's
    if settings.is_replay:
        from pytest_llmops.seal import sockets

        allowed = list(settings.allowed_hosts)
        if settings.tracking_uri:  # its host stays reachable
            from pytest_llmops.seal.policy import tracking_hosts

            allowed += tracking_hosts(settings.tracking_uri)
        sockets.seal(allowed_hosts=allowed)
        config.stash[_sealed_key] = True
        from pytest_llmops.cassettes import replay_env

        config.stash[_replay_env_key] = replay_env.apply()


def _tracking_from_start(config: pytest.Config, settings: settings_mod.Settings) -> bool:
    """Whether the tracking hooks are needed from the start: under xdist (the controller
    collects nothing, workers hand it their runs), for a report or a drift baseline, or when
    a store failure must fail the session (--llmops-strict). Otherwise they are registered
    once collection finds a tracked test (or a tracking fixture asks for them): a session
    without one imports no tracking code."""
    return bool(
        hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None)
        or settings.report or settings.drift_baseline or settings.strict
    )


def _register_tracking(config: pytest.Config) -> None:
    from pytest_llmops.evaluation import hooks as evaluation_hooks
    from pytest_llmops.tracking import hooks as tracking_hooks

    tracking_hooks.register(config)  # MLflow runs per marked test; its hooks live on the object
    evaluation_hooks.register(config)  # evaluate nesting, repeat=N, cost


def pytest_collection_finish(session: pytest.Session) -> None:
    """Register the tracking hooks (unless registered at start) when a selected test is
    tracked, and let them see the items as their own ``pytest_collection_modifyitems``
    would have."""
    config = session.config
    if config.stash.get(_tracking_from_start_key, False):
        return
    if any(item.stash.get(tracked_item_key, False) for item in session.items):
        _register_tracking(config)
        from pytest_llmops.tracking import hooks

        hooks.get(config).pytest_collection_modifyitems(list(session.items))


def _check_ini(config: pytest.Config) -> None:
    """The ini values read later, checked now: one usage error instead of one per test."""
    try:
        config.getini("llmops_pacing")
    except (ValueError, pytest.UsageError) as exc:  # pytest raises one or the other by version
        raise pytest.UsageError(
            f"llmops_pacing: {exc}. Use true or false, e.g. `llmops_pacing = false`."
        ) from exc
    if any(str(config.getini(name) or "").strip() for name in PACING_NUMBERS):
        from pytest_llmops.traffic import options as pacing_options

        pacing_options.options(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_sealed_key, False):
        from pytest_llmops.cassettes import replay_env
        from pytest_llmops.seal import sockets

        sockets.unseal()
        replay_env.restore(config.stash.get(_replay_env_key, {}))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate marker arguments early, and give marked tests their cassette."""
    settings = settings_mod.get(config)
    every_test = settings.cassettes == "all"
    for item in items:
        run_mark = cassette_mark = None
        for mark in item.iter_markers():  # one walk up the tree for both (the closest of each)
            if mark.name == "llmops":
                run_mark = run_mark or mark
            elif mark.name == "llmops_cassette":
                cassette_mark = cassette_mark or mark
        if cassette_mark is not None or run_mark is not None:
            from pytest_llmops.validation import cassette_options, run_options

            if cassette_mark is not None:
                cassette_options(item.nodeid, cassette_mark)
            if run_mark is not None:
                run_options(item.nodeid, run_mark)
        fixtures = getattr(item, "fixturenames", ())
        item.stash[tracked_item_key] = run_mark is not None or "llmops_run" in fixtures
        if not isinstance(item, pytest.Function):
            continue
        # A cassette covers all HTTP of a test that is marked or uses any llmops fixture.
        marked = cassette_mark is not None or run_mark is not None
        if every_test or marked or not CASSETTE_FIXTURES.isdisjoint(item.fixturenames):
            _use_fixture(item, "llmops_cassette")
        elif settings.mode == "record" and "llmops_cassette" not in item.fixturenames:
            _use_fixture(item, "llmops_unrecorded_requests")  # warns when it makes requests


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
    if report.failed or (report.when == "call" and cassette_key in item.stash):
        from pytest_llmops import reports

        reports.annotate(item, call, report)  # stale answers, faults' notes, one-line failures
    return report


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
    config = session.config
    if settings_mod.settings_key in config.stash:
        settings = settings_mod.get(config)
        if settings.network or (settings.rootdir / ".llmops" / "run").is_dir():
            from pytest_llmops import resources

            resources.remove_shared_state(config, settings)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Live and record runs: how long the plugin's clients waited for the rate limit, and
    how many 429s they met."""
    if settings_mod.settings_key in config.stash and settings_mod.get(config).network:
        from pytest_llmops.traffic import summary

        summary.write_summary(terminalreporter, config)
