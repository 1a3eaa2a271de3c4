"""Why scheduled faults were not served, or why a served one never reached the test's code:
the messages ``llmops_faults`` gives at the end of a test.

From what attached clients sent (each request's fault and ``x-stainless-retry-count``) it
names the cause: no client attached, no request made, no request matching ``match=``, or a
client that gave up (the openai SDK's ``max_retries`` spent) before the faults ran out; and,
for a failing test, an error the SDK's retries absorbed. :func:`for_test` is the body of
the ``llmops_faults`` fixture, :func:`failure_note` what a failing test's report adds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import pytest

from pytest_llmops.stash import faults_key
from pytest_llmops.traffic.faults.hub import Seen
from pytest_llmops.traffic.faults.schedule import Faults

RETRIED_BY_THE_SDK = frozenset({"429", "500", "503", "timeout", "connection_error"})
"""Faults the openai SDK retries by itself (``max_retries``, 2 by default)."""
CLEAR = "or call llmops_faults.clear() when the test does not need them"


def _counted(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _kinds(kinds: Sequence[str]) -> str:
    return ", ".join(sorted(set(kinds)))


def _last_call(seen: Sequence[Seen]) -> list[Seen]:
    """The attempts of the last call: the last request with retry count 0 and its retries."""
    start = max((i for i, s in enumerate(seen) if s.retry == 0), default=len(seen) - 1)
    return list(seen[start:])


def unserved(faults: Faults, plugin_client: bool) -> str:
    """Why ``faults.pending`` scheduled faults were never served (``plugin_client``: the test
    uses one of the plugin's clients, which always see the faults)."""
    pending, seen = faults.pending_faults, faults.seen
    kinds = [fault.kind for fault in pending]
    patterns = sorted({f.match.pattern for f in pending if f.match is not None})
    matching = f"match={' or '.join(repr(p) for p in patterns)}"
    head = f"llmops_faults: {_counted(len(kinds), 'scheduled fault')} ({_kinds(kinds)}) never served: "
    if not seen:
        if not plugin_client and not faults.attached:
            return head + (
                "no client is attached. Use azure_openai_client/azure_openai_async_client, or "
                f"llmops_faults.attach(your_client) before calling it ({CLEAR})."
            )
        return head + (
            "no request reached an attached client. A client your code builds itself must be attached "
            f"too: llmops_faults.attach(client) ({CLEAR})."
        )
    served = _counted(len(faults.injected), "fault")
    if patterns and seen[-1].kind is None:
        paths = sorted({s.path for s in seen if s.kind is None})
        return head + (
            f"{served} served; {_counted(sum(s.kind is None for s in seen), 'request')} reached attached "
            f"clients without matching {matching} ({', '.join(paths)}). Fix the pattern (a regex searched "
            f"in the request path) ({CLEAR})."
        )
    call = _last_call(seen)
    last = call[-1]
    if last.kind in RETRIED_BY_THE_SDK and last.retry is not None:
        attempts = len(call)
        return head + (
            f"{served} served; the last call's {_counted(attempts, 'attempt')} all met one, then the client "
            f"gave up: the openai SDK's max_retries ({last.retry}) was spent, so no request came for the "
            f"rest (the client is attached). Schedule count={attempts} (max_retries + 1) for one error to "
            f"reach your code ({CLEAR})."
        )
    why = (
        f"the SDK does not retry a {last.kind}"
        if last.kind is not None and last.kind not in RETRIED_BY_THE_SDK
        else "the code made no further request"
    )
    return head + (
        f"{served} served, then no further request reached an attached client ({why}). Schedule as "
        f"many faults as requests the code makes ({CLEAR})."
    )


def absorbed(faults: Faults) -> str | None:
    """For a failing test: injected faults the SDK retried away (the retry got a real answer)."""
    for before, after in itertools.pairwise(faults.seen):
        if before.kind in RETRIED_BY_THE_SDK and after.kind is None and (after.retry or 0) > 0:
            return (
                f"llmops_faults: the injected {before.kind} never reached the test's code: the openai SDK "
                f"retried it (x-stainless-retry-count {after.retry}) and the retry got a real answer. For "
                "the error to reach your code, schedule count=max_retries + 1 (3 by default) or use "
                "client.with_options(max_retries=0)."
            )
    return None


PLUGIN_CLIENTS = frozenset({"azure_openai_client", "azure_openai_async_client"})
"""The plugin's clients: they always see the scheduled faults."""


def uses_a_plugin_client(item: pytest.Item) -> bool:
    """Whether the test requests one of the plugin's clients."""
    return not PLUGIN_CLIENTS.isdisjoint(getattr(item, "fixturenames", ()))


def for_test(item: pytest.Item) -> Iterator[Faults]:
    """The body of ``llmops_faults``: a fresh schedule on the session's hub while ``item``
    runs; faults still scheduled when a passing test ends fail it at teardown."""
    from pytest_llmops import reports
    from pytest_llmops.traffic.faults.hub import hub

    faults_hub = hub(item.config)
    faults = Faults(faults_hub)
    faults_hub.active = faults
    item.stash[faults_key] = faults
    try:
        yield faults
    finally:
        faults_hub.active = None
        faults.detach_all()
    if faults.pending and reports.test_passed(item):
        pytest.fail(unserved(faults, uses_a_plugin_client(item)), pytrace=False)


def failure_note(item: pytest.Item) -> str | None:
    """For a test that failed while it had ``llmops_faults``: what the faults did that the
    failure may come from (faults never served, or one the SDK's retries absorbed)."""
    faults = item.stash.get(faults_key, None)
    if faults is None:
        return None
    if faults.pending:
        return unserved(faults, uses_a_plugin_client(item))
    return absorbed(faults)
