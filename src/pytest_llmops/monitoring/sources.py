"""Resolve a REF to the MLflow traces behind it, and log drift reports back to MLflow.

REF syntax (the same for the CLI, ``compare_refs`` and ``--llmops-drift-baseline``):

``run:RUN_ID`` or a bare 32-hex-digit run id
    The run's own traces; if it is a session's parent run (tag ``llmops.role=session``) or has
    child runs, the traces of all its descendants as well.
``session:SESSION_ID`` or ``session:SESSION_ID@EXPERIMENT``
    The parent run tagged ``llmops.session_id=SESSION_ID`` (searched in every experiment, or
    in EXPERIMENT: a session that tracked tests in several experiments has a parent run in
    each).
``session:latest`` or ``session:latest@EXPERIMENT``
    The most recent session parent run that is no longer running (so a session can name the
    previous one as its baseline). ``session:latest-live[@EXPERIMENT]``: the most recent one
    whose calls reached the service (mode live or record): replayed sessions carry recorded
    answers. ``resolve_ref(..., exclude_session=ID)`` passes over session
    ``ID`` (a finished session naming the one before it), and over parent runs without a session id.
``experiment:NAME[:FILTER]`` or ``NAME[:FILTER]``
    All traces of the experiment; with FILTER (an MLflow run search filter, e.g.
    ``lab:tags.llmops.mode = 'replay'``) the traces of the runs matching it and of their
    descendants. A bare REF is first tried as a whole experiment name, then split at its first
    ``:``.

mlflow is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_llmops.errors import LLMOpsError
from pytest_llmops.monitoring.mlflow_store import (
    SESSION_ROLE_TAG,
    StoreError,
    client_for,
    default_tracking_uri,
    log_report,
)
from pytest_llmops.monitoring.window import TimeWindow

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run, Trace

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
SESSION_ID_TAG = "llmops.session_id"
PARENT_TAG = "mlflow.parentRunId"
MODE_TAG = "llmops.mode"
PAGE_SIZE = 500  # traces per search call: 100,000 traces are 200 pages, never one call
# Above this many runs in one experiment, one time-window query beats a query per run.
_WINDOW_QUERY_RUNS = 20


__all__ = [
    "SESSION_ID_TAG",
    "SESSION_ROLE_TAG",
    "NoEarlierSession",
    "RefError",
    "ResolvedRef",
    "StoreError",
    "client_for",
    "default_tracking_uri",
    "load_traces",
    "log_report",
    "resolve_ref",
    "traces_of",
]


class RefError(LLMOpsError):
    """A REF that names nothing in the tracking store."""


class NoEarlierSession(RefError):
    """``session:latest`` found no finished session (other than the one running): a first session."""


@dataclass
class ResolvedRef:
    """What a REF stands for: the experiments and runs whose traces it means."""

    ref: str
    kind: str
    description: str
    experiment_ids: list[str]
    runs: list[Run] = field(default_factory=list)
    whole_experiment: bool = False

    @property
    def run_ids(self) -> list[str]:
        """Ids of the runs whose traces the REF means (empty for a whole experiment)."""
        return [run.info.run_id for run in self.runs]


def resolve_ref(ref: str, client: MlflowClient, *, exclude_session: str | None = None) -> ResolvedRef:
    """Turn a REF (see the module docstring) into experiments and runs.

    ``exclude_session``: ``session:latest`` means the latest session other than this one (other
    REFs ignore it).
    """
    ref = ref.strip()
    if not ref:
        raise RefError("Empty REF: pass a run id, session:ID, session:latest or EXPERIMENT[:FILTER].")
    if ref.startswith("run:"):
        return _from_run(ref, ref.removeprefix("run:"), client)
    if ref.startswith("session:"):
        return _from_session(ref, ref.removeprefix("session:"), client, exclude_session)
    if ref.startswith("experiment:"):
        name, _, filter_string = ref.removeprefix("experiment:").partition(":")
        return _from_experiment(ref, name, filter_string, client)
    if _RUN_ID.match(ref):
        return _from_run(ref, ref, client)
    if client.get_experiment_by_name(ref) is not None:
        return _from_experiment(ref, ref, "", client)
    name, _, filter_string = ref.partition(":")
    return _from_experiment(ref, name, filter_string, client)


def load_traces(
    ref: str,
    tracking_uri: str | None = None,
    *,
    client: MlflowClient | None = None,
    window: TimeWindow | None = None,
) -> list[Trace]:
    """All traces behind a REF (inside ``window``, when given), oldest first."""
    client = client or client_for(tracking_uri)
    return traces_of(resolve_ref(ref, client), client, window=window)


def traces_of(
    resolved: ResolvedRef, client: MlflowClient, *, window: TimeWindow | None = None
) -> list[Trace]:
    """The traces of a resolved REF, de-duplicated, oldest first; ``window`` keeps those that
    started inside it (a filter of the search, so pages hold only what is wanted)."""
    traces: dict[str, Trace] = {}
    within = window.mlflow_filter() if window is not None and window.bounded else ""
    if resolved.whole_experiment:
        for experiment_id in resolved.experiment_ids:
            for trace in _search(client, experiment_id, filter_string=within or None):
                traces[trace.info.trace_id] = trace
    else:
        by_experiment: dict[str, list[Run]] = {}
        for run in resolved.runs:
            by_experiment.setdefault(run.info.experiment_id, []).append(run)
        for experiment_id, runs in by_experiment.items():
            for trace in _traces_of_runs(client, experiment_id, runs, within):
                traces[trace.info.trace_id] = trace
    return sorted(traces.values(), key=lambda trace: trace.info.timestamp_ms)


# --- resolution --------------------------------------------------------------------------


def _from_run(ref: str, run_id: str, client: MlflowClient) -> ResolvedRef:
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise RefError(f"REF {ref!r}: no run {run_id!r} in the tracking store ({error.message})") from None
    runs = [run, *_descendants(client, [run])]
    role = run.data.tags.get(SESSION_ROLE_TAG, "")
    kind = "session" if role == "session" else "run"
    children = f" and {len(runs) - 1} child run(s)" if len(runs) > 1 else ""
    return ResolvedRef(ref, kind, f"{kind} {run_id}{children}", [run.info.experiment_id], runs)


def _from_session(ref: str, session: str, client: MlflowClient, exclude: str | None = None) -> ResolvedRef:
    experiments = _all_experiment_ids(client)
    role_filter = f"tags.`{SESSION_ROLE_TAG}` = 'session'"
    latest, _, experiment_name = session.partition("@")
    if latest in ("latest", "latest-live"):
        if experiment_name:
            experiments = [_experiment_id(client, experiment_name, ref)]
        live = latest == "latest-live"
        # live sessions: their answers came from the service (live or record mode), not a cassette
        where = f"{role_filter} and tags.`{MODE_TAG}` != 'replay'" if live else role_filter
        finished = [
            run
            for run in _search_runs(
                client, experiments, where, order_by=["attributes.start_time DESC"], limit=200
            )
            if run.info.status != "RUNNING" and _eligible(run, exclude) and (not live or _is_live(run))
        ]
        if not finished:
            other = f" other than session {exclude!r}" if exclude is not None else ""
            kind = "live (or record) " if live else ""
            raise NoEarlierSession(
                f"REF {ref!r}: no finished {kind}pytest-llmops session run{other} in the tracking store."
            )
        parent = finished[0]
    else:
        session, _, experiment_name = session.partition("@")
        if experiment_name:
            experiments = [_experiment_id(client, experiment_name, ref)]
        found = client.search_runs(
            experiments, filter_string=f"{role_filter} and tags.`{SESSION_ID_TAG}` = '{_quote(session)}'"
        )
        if not found:
            raise RefError(f"REF {ref!r}: no run tagged {SESSION_ID_TAG}={session!r} in the tracking store.")
        parent = found[0]
    runs = [parent, *_descendants(client, [parent])]
    return ResolvedRef(
        ref,
        "session",
        f"session {parent.data.tags.get(SESSION_ID_TAG, '?')} (parent run {parent.info.run_id}, "
        f"{len(runs) - 1} child run(s))",
        [parent.info.experiment_id],
        runs,
    )


def _eligible(run: Run, exclude: str | None) -> bool:
    """Whether a session parent run may stand for ``session:latest``: any, without ``exclude``;
    with it, one tagged with another session id."""
    if exclude is None:
        return True
    session = run.data.tags.get(SESSION_ID_TAG)
    return bool(session) and session != exclude


def _from_experiment(ref: str, name: str, filter_string: str, client: MlflowClient) -> ResolvedRef:
    experiment_id = _experiment_id(client, name, ref)
    if not filter_string.strip():
        return ResolvedRef(ref, "experiment", f"experiment {name!r}", [experiment_id], whole_experiment=True)
    from mlflow.exceptions import MlflowException

    try:
        matched = _search_runs(client, [experiment_id], filter_string)
    except MlflowException as error:
        raise RefError(
            f"REF {ref!r}: bad run filter {filter_string!r} ({error.message}). Use MLflow's run search "
            "syntax, e.g. lab:tags.llmops.mode = 'replay'"
        ) from None
    runs = list({run.info.run_id: run for run in [*matched, *_descendants(client, matched)]}.values())
    return ResolvedRef(
        ref,
        "experiment",
        f"experiment {name!r} where {filter_string} ({len(runs)} run(s))",
        [experiment_id],
        runs,
    )


def _experiment_id(client: MlflowClient, name: str, ref: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise RefError(
            f"REF {ref!r}: no experiment named {name!r} and not a run id. Use a run id, run:ID, "
            "session:ID, session:latest or EXPERIMENT[:FILTER]."
        )
    return str(experiment.experiment_id)


def _descendants(client: MlflowClient, parents: Sequence[Run]) -> list[Run]:
    found: list[Run] = []
    frontier = list(parents)
    seen = {run.info.run_id for run in parents}
    while frontier:
        by_experiment: dict[str, list[str]] = {}
        for run in frontier:
            by_experiment.setdefault(run.info.experiment_id, []).append(run.info.run_id)
        frontier = []
        for experiment_id, run_ids in by_experiment.items():
            for run_id in run_ids:
                for child in _search_runs(client, [experiment_id], f"tags.`{PARENT_TAG}` = '{run_id}'"):
                    if child.info.run_id not in seen:
                        seen.add(child.info.run_id)
                        found.append(child)
                        frontier.append(child)
    return found


def _search_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str,
    *,
    order_by: list[str] | None = None,
    limit: int | None = None,
) -> list[Run]:
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=1000, page_token=token, order_by=order_by
        )
        runs.extend(page)
        token = page.token
        if not token or (limit is not None and len(runs) >= limit):
            return runs


def _is_live(run: Run) -> bool:
    return run.data.tags.get(MODE_TAG) in ("live", "record")


def _all_experiment_ids(client: MlflowClient) -> list[str]:
    return [str(experiment.experiment_id) for experiment in client.search_experiments(max_results=1000)]


def _traces_of_runs(
    client: MlflowClient, experiment_id: str, runs: Sequence[Run], within: str
) -> list[Trace]:
    if len(runs) <= _WINDOW_QUERY_RUNS:
        return [
            trace
            for run in runs
            for trace in _search(client, experiment_id, run_id=run.info.run_id, filter_string=within or None)
        ]
    wanted = {run.info.run_id for run in runs}
    start = min(run.info.start_time for run in runs)
    ends = [run.info.end_time for run in runs]
    window = f"timestamp_ms >= {start}"
    if all(end is not None for end in ends):
        window += f" AND timestamp_ms <= {max(e for e in ends if e is not None)}"
    if within:
        window += f" AND {within}"
    return [
        trace
        for trace in _search(client, experiment_id, filter_string=window)
        if trace.info.trace_metadata.get("mlflow.sourceRun") in wanted
    ]


def _search(client: MlflowClient, experiment_id: str, **kwargs: Any) -> list[Trace]:
    traces: list[Trace] = []
    token: str | None = None
    while True:
        page = client.search_traces(
            locations=[experiment_id], max_results=PAGE_SIZE, page_token=token, **kwargs
        )
        traces.extend(page)
        token = page.token
        if not token:
            return traces


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
