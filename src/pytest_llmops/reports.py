"""A test's reports as the plugin reads them and writes to them.

Read: whether the test's body ran (its cassette is then saved) and whether it passed
(unserved faults then fail it). Written, by :func:`annotate` from the plugin's
``pytest_runtest_makereport``: the stale answers a live run found in the test's cassette,
what ``llmops_faults`` did that a failure may come from, and, for a failure that the plugin
explains (a replay miss, the sealed network, an :class:`~pytest_llmops.errors.LLMOpsError`),
its one message instead of a traceback. Imported on the first report that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_llmops import settings as settings_mod
from pytest_llmops.stash import cassette_key, faults_key, reports_key

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette


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


def annotate(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Add to ``report`` what the plugin knows about the test (see the module's docstring)."""
    cassette = item.stash.get(cassette_key, None)
    if report.when == "call":
        if report.failed and faults_key in item.stash:
            from pytest_llmops.traffic.faults.diagnosis import failure_note

            note = failure_note(item)
            if note:
                report.sections.append(("llmops_faults", note))
        if cassette is not None and cassette.stale:
            from pytest_llmops.cassettes.staleness import STALE_PROPERTY

            # Travels with the report, so the xdist controller sees it too.
            report.user_properties.append((STALE_PROPERTY, [stale.describe() for stale in cassette.stale]))
    excinfo = call.excinfo
    if report.failed and excinfo is not None:
        longrepr = _explained(item, excinfo, cassette)
        if longrepr is not None:
            report.longrepr = longrepr


def _explained(
    item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException], cassette: Cassette | None
) -> str | None:
    """The plugin's one message for a failure it explains, with where it was raised."""
    from pytest_llmops.errors import LLMOpsError, ReplayMiss

    if cassette is not None and cassette.misses:
        # Clients may wrap the miss (openai 2.x, azure-core): show the plugin's own message.
        wrapped = "" if excinfo.errisinstance(ReplayMiss) else (
            f"\n(raised to the test as {excinfo.typename}: {excinfo.value})"
        )
        return f"{cassette.misses[0]}{_where(item, excinfo)}{wrapped}"
    replay = settings_mod.get(item.config).is_replay
    blocked = _sealed_out(excinfo.value) if cassette is None and replay else None
    if blocked:
        from pytest_llmops.cassettes.advice import no_cassette

        what = f"its requests cannot be replayed and the sealed network refused one ({blocked})"
        return f"NetworkBlocked: {no_cassette(item.nodeid, what)}{_where(item, excinfo)}"
    if excinfo.errisinstance(LLMOpsError):
        # The plugin's errors say what happened and how to fix it: no traceback needed.
        return f"{excinfo.typename}: {excinfo.value}{_where(item, excinfo)}"
    return None


def _sealed_out(error: BaseException | None, depth: int = 0) -> str | None:
    """The refusal of the replay seal behind ``error`` (clients wrap it), if there is one."""
    from pytest_llmops.seal.policy import NetworkBlocked

    if error is None or depth > 10:
        return None
    if isinstance(error, NetworkBlocked):
        return str(error).split(":", 1)[-1].split("(", 1)[0].strip() or str(error)
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _sealed_out(inner, depth + 1)
            if found:
                return found
    return _sealed_out(error.__cause__ or error.__context__, depth + 1)


def _where(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """Where in the test file the error was raised, if it was."""
    for entry in reversed(excinfo.traceback):
        if entry.path == getattr(item, "path", None):
            return f"\n\n(raised at {entry.path}:{entry.lineno + 1})"
    return ""
