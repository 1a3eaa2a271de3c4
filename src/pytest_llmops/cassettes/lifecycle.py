"""What the cassette fixtures do: the session's recorder, a test's cassette (opened,
active for the whole test, saved once its body ran), the requests of a test without one,
and the cassettes of session fixtures. Imported when the first of them is used; the
fixtures themselves (:mod:`pytest_llmops.fixtures.cassettes`) stay thin, so plugin load
stays cheap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_llmops import reports
from pytest_llmops import settings as settings_mod
from pytest_llmops.cassettes import paths
from pytest_llmops.stash import cassette_key

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette, Recorder

_siblings_key = pytest.StashKey[dict[str, list[str]]]()


def session_recorder(config: pytest.Config, cassette_dir: Path) -> Iterator[Recorder]:
    """The session's :class:`~.recorder.Recorder`, after every ``pytest_llmops_configure``
    hook ran; closed at the end of the session."""
    from pytest_llmops import resources
    from pytest_llmops.cassettes.recorder import Recorder
    from pytest_llmops.secrets import session as secrets

    settings = settings_mod.get(config)
    recorder = Recorder(
        settings.mode, cassette_dir, record_mode=settings.record_mode, provision=settings.provision,
        run_dir=resources.state_dir(config) if settings.mode == "record" else None,
        known=secrets.of(config), names=secrets.names(config),
    )
    config.hook.pytest_llmops_configure.call_historic(kwargs={"config": config, "recorder": recorder})
    yield recorder
    recorder.close()


def test_cassette(node: pytest.Item, recorder: Recorder, cassette_dir: Path) -> Iterator[Cassette]:
    """``node``'s cassette, active while it runs, saved once its body ran."""
    from pytest_llmops.validation import cassette_options

    options = cassette_options(node.nodeid, node.get_closest_marker("llmops_cassette"))
    distinct = hasattr(node, "callspec") and paths.is_lossy(node.nodeid) and _collides(node)
    path = paths.cassette_path(cassette_dir, node.nodeid, options.name, distinct=distinct)
    cassette = recorder.cassette(
        path, node.nodeid, match_on=options.match_on, allow_repeats=options.allow_repeats,
        shared=options.name is not None,
    )
    node.stash[cassette_key] = cassette
    with cassette.activate():
        yield cassette
    if reports.body_ran(node):
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
    own = paths.test_name(node.nodeid)
    return any(other != node.nodeid and paths.test_name(other) == own for other in ids)


def unrecorded_requests(node: pytest.Item, recorder: Recorder) -> Iterator[list[str]]:
    """Record mode, a test without a cassette: the requests it made; a warning if any."""
    from pytest_llmops.cassettes.advice import no_cassette
    from pytest_llmops.errors import UnrecordedRequests

    seen: list[str] = []
    with recorder.interceptor.watching(recorder.sanitizer.request, seen):
        yield seen
    if seen:
        shown = ", ".join(seen[:3]) + (f" and {len(seen) - 3} more" if len(seen) > 3 else "")
        what = f"its {len(seen)} HTTP request(s) ({shown}) were not recorded and replay will fail"
        node.warn(UnrecordedRequests(no_cassette(node.nodeid, what)))


def open_session_cassette(request: pytest.FixtureRequest, fixture: str) -> Cassette:
    """The cassette of a session-scoped fixture (``<cassette dir>/_session/<fixture>.yaml``);
    activate it around the fixture's calls and save it at teardown. Its ``replaying`` says
    whether the fixture replays what it recorded (replay mode; and ``--llmops-record-mode=
    missing|new`` with ``--llmops-provision`` when the file exists) or reaches the service."""
    recorder: Recorder = request.getfixturevalue("llmops_recorder")
    cassette_dir: Path = request.getfixturevalue("llmops_cassette_dir")
    path = paths.session_cassette_path(cassette_dir, fixture)
    return recorder.cassette(path, f"{fixture} (session fixture)", session_fixture=True)
