"""The cassette fixtures. vcrpy is imported only when a cassette is first needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_llmops import settings as settings_mod
from pytest_llmops.cassettes.paths import cassette_path, session_cassette_path
from pytest_llmops.validation import cassette_options

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette, Recorder

cassette_key = pytest.StashKey["Cassette"]()
reports_key = pytest.StashKey[dict[str, pytest.TestReport]]()


def test_passed(item: pytest.Item) -> bool:
    """Whether setup and call of ``item`` passed (read in fixture teardown)."""
    reports = item.stash.get(reports_key, {})
    return all(reports.get(phase) is not None and reports[phase].passed for phase in ("setup", "call"))


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
    from pytest_llmops.cassettes.recorder import Recorder
    from pytest_llmops.secrets import session as secrets

    recorder = Recorder(
        settings_mod.get(pytestconfig).mode,
        llmops_cassette_dir,
        known=secrets.of(pytestconfig),
        names=secrets.names(pytestconfig),
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
    ``@pytest.mark.llmops_cassette(name=...)`` names another file.
    """
    node = request.node
    options = cassette_options(node.nodeid, node.get_closest_marker("llmops_cassette"))
    path = cassette_path(llmops_cassette_dir, node.nodeid, options.name)
    cassette = llmops_recorder.cassette(
        path, node.nodeid, match_on=options.match_on, allow_repeats=options.allow_repeats
    )
    node.stash[cassette_key] = cassette
    with cassette.activate():
        yield cassette
    if test_passed(node):
        cassette.save()


def open_session_cassette(request: pytest.FixtureRequest, fixture: str) -> Cassette:
    """The cassette of a session-scoped fixture (``<cassette dir>/_session/<fixture>.yaml``);
    activate it around the fixture's calls and save it at teardown."""
    recorder: Recorder = request.getfixturevalue("llmops_recorder")
    cassette_dir: Path = request.getfixturevalue("llmops_cassette_dir")
    return recorder.cassette(session_cassette_path(cassette_dir, fixture), f"{fixture} (session fixture)")
