"""The cassette fixtures. vcrpy is imported only when a cassette is first needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_llmops import settings as settings_mod

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette, Recorder

cassette_key = pytest.StashKey["Cassette"]()
reports_key = pytest.StashKey[dict[str, pytest.TestReport]]()
_siblings_key = pytest.StashKey[dict[str, list[str]]]()


def test_passed(item: pytest.Item) -> bool:
    """Whether setup and call of ``item`` passed (read in fixture teardown)."""
    reports = item.stash.get(reports_key, {})
    return all(reports.get(phase) is not None and reports[phase].passed for phase in ("setup", "call"))


def body_ran(item: pytest.Item) -> bool:
    """Whether the test's own code ran: its setup passed and its call phase happened,
    whatever its outcome (passed, failed, xfailed)."""
    reports = item.stash.get(reports_key, {})
    setup = reports.get("setup")
    return setup is not None and setup.passed and "call" in reports


@pytest.fixture(scope="session")
def llmops_mode(pytestconfig: pytest.Config) -> settings_mod.Mode:
    """This session's mode: ``"replay"`` (default), ``"live"`` (``--llmops-live``) or
    ``"record"`` (``--llmops-record``); ``LLMOPS_MODE`` when no flag is given."""
    return settings_mod.get(pytestconfig).mode


@pytest.fixture(scope="session")
def llmops_cassette_dir(pytestconfig: pytest.Config) -> Path:
    """The folder cassettes live in: the ``llmops_cassette_dir`` ini option (default
    ``cassettes`` under the rootdir). Override this fixture to put them elsewhere."""
    return settings_mod.get(pytestconfig).cassette_dir


@pytest.fixture(scope="session")
def llmops_recorder(pytestconfig: pytest.Config, llmops_cassette_dir: Path) -> Iterator[Recorder]:
    """The session's cassette configuration (scrubbing and matching), after every
    ``pytest_llmops_configure`` hook ran. Override it to replace the defaults wholesale."""
    from pytest_llmops import resources
    from pytest_llmops.cassettes.recorder import Recorder
    from pytest_llmops.secrets import session as secrets

    settings = settings_mod.get(pytestconfig)
    recorder = Recorder(
        settings.mode, llmops_cassette_dir, record_mode=settings.record_mode, provision=settings.provision,
        run_dir=resources.state_dir(pytestconfig) if settings.mode == "record" else None,
        known=secrets.of(pytestconfig), names=secrets.names(pytestconfig),
    )
    pytestconfig.hook.pytest_llmops_configure.call_historic(
        kwargs={"config": pytestconfig, "recorder": recorder}
    )
    yield recorder
    recorder.close()


@pytest.fixture
def llmops_cassette(
    request: pytest.FixtureRequest, llmops_recorder: Recorder, llmops_cassette_dir: Path
) -> Iterator[Cassette]:
    """This test's cassette, active for the whole test: every HTTP request of any client
    is replayed from it (replay), recorded into it (record) or left alone (live).

    Its path is ``<cassette dir>/<module path>/<test name>.yaml`` unless
    ``@pytest.mark.llmops_cassette(name=...)`` names another file. Record mode writes it
    once the test's body ran, whatever its outcome; a setup error writes nothing.
    """
    node = request.node
    from pytest_llmops.cassettes import paths
    from pytest_llmops.validation import cassette_options

    options = cassette_options(node.nodeid, node.get_closest_marker("llmops_cassette"))
    distinct = hasattr(node, "callspec") and paths.is_lossy(node.nodeid) and _collides(node)
    path = paths.cassette_path(llmops_cassette_dir, node.nodeid, options.name, distinct=distinct)
    cassette = llmops_recorder.cassette(
        path, node.nodeid, match_on=options.match_on, allow_repeats=options.allow_repeats,
        shared=options.name is not None,
    )
    node.stash[cassette_key] = cassette
    with cassette.activate():
        yield cassette
    if body_ran(node):
        cassette.save()


def _collides(node: pytest.Item) -> bool:
    """Whether another parametrisation of the same test maps to the same file name (ids
    that differ only in characters a file name cannot hold). Siblings are read from the
    test's collector, so the answer does not depend on which tests were selected."""
    parent = node.parent
    if parent is None:
        return False
    cache = node.config.stash.setdefault(_siblings_key, {})
    ids = cache.get(parent.nodeid)
    if ids is None:
        ids = [child.nodeid for child in parent.collect() if isinstance(child, pytest.Item)]
        cache[parent.nodeid] = ids
    from pytest_llmops.cassettes import paths

    own = paths.test_name(node.nodeid)
    return any(other != node.nodeid and paths.test_name(other) == own for other in ids)


@pytest.fixture
def llmops_unrecorded_requests(
    request: pytest.FixtureRequest, llmops_recorder: Recorder
) -> Iterator[list[str]]:
    """Record mode, for a test without a cassette: the HTTP requests it made, which nothing
    recorded. If there are any, a warning says how to give the test a cassette."""
    from pytest_llmops.cassettes.advice import no_cassette
    from pytest_llmops.errors import UnrecordedRequests

    seen: list[str] = []
    with llmops_recorder.interceptor.watching(llmops_recorder.sanitizer.request, seen):
        yield seen
    if seen:
        shown = ", ".join(seen[:3]) + (f" and {len(seen) - 3} more" if len(seen) > 3 else "")
        what = f"its {len(seen)} HTTP request(s) ({shown}) were not recorded and replay will fail"
        request.node.warn(UnrecordedRequests(no_cassette(request.node.nodeid, what)))


def open_session_cassette(request: pytest.FixtureRequest, fixture: str) -> Cassette:
    """The cassette of a session-scoped fixture (``<cassette dir>/_session/<fixture>.yaml``);
    activate it around the fixture's calls and save it at teardown. Its ``replaying`` says
    whether the fixture replays what it recorded (replay mode; and ``--llmops-record-mode=
    missing|new`` with ``--llmops-provision`` when the file exists) or reaches the service."""
    recorder: Recorder = request.getfixturevalue("llmops_recorder")
    cassette_dir: Path = request.getfixturevalue("llmops_cassette_dir")
    from pytest_llmops.cassettes import paths

    path = paths.session_cassette_path(cassette_dir, fixture)
    return recorder.cassette(path, f"{fixture} (session fixture)", session_fixture=True)
