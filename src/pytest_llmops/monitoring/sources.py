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
    previous one as its baseline). ``resolve_ref(..., exclude_session=ID)`` passes over session
    ``ID`` (a finished session naming the one before it), and over parent runs without a session id.
``experiment:NAME[:FILTER]`` or ``NAME[:FILTER]``
    All traces of the experiment; with FILTER (an MLflow run search filter, e.g.
    ``lab:tags.llmops.mode = 'replay'``) the traces of the runs matching it and of their
    descendants. A bare REF is first tried as a whole experiment name, then split at its first
    ``:``.

mlflow is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmops.errors import LLMOpsError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run, Trace

    from pytest_llmops.monitoring.drift import DriftReport

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
SESSION_ROLE_TAG = "llmops.role"
SESSION_ID_TAG = "llmops.session_id"
PARENT_TAG = "mlflow.parentRunId"
# Above this many runs in one experiment, one time-window query beats a query per run.
_WINDOW_QUERY_RUNS = 20


class RefError(LLMOpsError):
    """A REF that names nothing in the tracking store."""


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


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else the plugin's embedded store ``sqlite:///<cwd>/.llmops/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = Path(cwd) if cwd is not None else Path.cwd()
    return f"sqlite:///{(folder / '.llmops' / 'mlflow.db').resolve()}"


def client_for(tracking_uri: str | None) -> MlflowClient:
    """An ``MlflowClient`` for ``tracking_uri`` (default: :func:`default_tracking_uri`), checked to exist."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise RefError(
                f"No MLflow store at {path}: run the suite with the llmops marker first, or pass "
                "--tracking-uri (or set MLFLOW_TRACKING_URI) to the store that holds the runs."
            )
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


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
    ref: str, tracking_uri: str | None = None, *, client: MlflowClient | None = None
) -> list[Trace]:
    """All traces behind a REF, oldest first."""
    client = client or client_for(tracking_uri)
    return traces_of(resolve_ref(ref, client), client)


def traces_of(resolved: ResolvedRef, client: MlflowClient) -> list[Trace]:
    """The traces of a resolved REF, de-duplicated, oldest first."""
    traces: dict[str, Trace] = {}
    if resolved.whole_experiment:
        for experiment_id in resolved.experiment_ids:
            for trace in _search(client, experiment_id):
                traces[trace.info.trace_id] = trace
    else:
        by_experiment: dict[str, list[Run]] = {}
        for run in resolved.runs:
            by_experiment.setdefault(run.info.experiment_id, []).append(run)
        for experiment_id, runs in by_experiment.items():
            for trace in _traces_of_runs(client, experiment_id, runs):
                traces[trace.info.trace_id] = trace
    return sorted(traces.values(), key=lambda trace: trace.info.timestamp_ms)


def log_report(
    report: DriftReport,
    tracking_uri: str | None = None,
    *,
    run_id: str | None = None,
    experiment_id: str | None = None,
    html: str | None = None,
    client: MlflowClient | None = None,
    scrub: Callable[[str], str] | None = None,
) -> str:
    """Log a report to MLflow and return the run id it went to.

    Every text logged (tags, artifacts) goes through ``scrub`` first: the session's secret
    scrubbing, by default that of the secret variables of the environment.

    Without ``run_id`` a new run is created in ``experiment_id`` (run name
    ``drift <baseline> -> <current>``, tag ``llmops.role=drift``). Artifacts under ``drift/``:
    ``report.json``, ``report.txt`` and ``report.html``; the run also gets tags
    ``llmops.drift.baseline``, ``llmops.drift.current``, ``llmops.drift.drifted`` and metrics
    ``drift.features_drifted`` and, per tested feature, ``drift.<feature>.p_adjusted``.
    """
    client = client or client_for(tracking_uri)
    if scrub is None:
        from pytest_llmops.secrets.known import KnownSecrets

        scrub = KnownSecrets.from_environ(os.environ).scrub
    tags = {
        "llmops.drift.baseline": scrub(report.baseline_label)[:250],
        "llmops.drift.current": scrub(report.current_label)[:250],
        "llmops.drift.drifted": str(report.drifted).lower(),
    }
    created = run_id is None
    if run_id is None:
        if experiment_id is None:
            raise ValueError("log_report needs run_id or experiment_id")
        name = scrub(f"drift {report.baseline_label} -> {report.current_label}")[:250]
        run_id = client.create_run(
            experiment_id, run_name=name, tags={**tags, SESSION_ROLE_TAG: "drift"}
        ).info.run_id
    else:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric("drift.features_drifted", float(len(report.drifted_features)), now, 0)]
    for name, feature in report.features.items():
        if feature.p_adjusted is not None:
            metrics.append(Metric(f"drift.{name}.p_adjusted", feature.p_adjusted, now, 0))
    client.log_batch(run_id, metrics=metrics)
    client.log_text(run_id, scrub(report.to_json()), "drift/report.json")
    client.log_text(run_id, scrub(report.to_text()), "drift/report.txt")
    client.log_text(run_id, scrub(html if html is not None else report.to_html()), "drift/report.html")
    if created:
        client.set_terminated(run_id)
    return run_id


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
    if session == "latest" or session.startswith("latest@"):
        experiment_name = session.partition("@")[2]
        if experiment_name:
            experiments = [_experiment_id(client, experiment_name, ref)]
        candidates = client.search_runs(
            experiments, filter_string=role_filter, order_by=["attributes.start_time DESC"], max_results=50
        )
        finished = [run for run in candidates if run.info.status != "RUNNING" and _eligible(run, exclude)]
        if not finished:
            other = f" other than session {exclude!r}" if exclude is not None else ""
            raise RefError(
                f"REF {ref!r}: no finished pytest-llmops session run{other} in the tracking store."
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


def _search_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _all_experiment_ids(client: MlflowClient) -> list[str]:
    return [str(experiment.experiment_id) for experiment in client.search_experiments(max_results=1000)]


def _traces_of_runs(client: MlflowClient, experiment_id: str, runs: Sequence[Run]) -> list[Trace]:
    if len(runs) <= _WINDOW_QUERY_RUNS:
        return [trace for run in runs for trace in _search(client, experiment_id, run_id=run.info.run_id)]
    wanted = {run.info.run_id for run in runs}
    start = min(run.info.start_time for run in runs)
    ends = [run.info.end_time for run in runs]
    window = f"timestamp_ms >= {start}"
    if all(end is not None for end in ends):
        window += f" AND timestamp_ms <= {max(e for e in ends if e is not None)}"
    return [
        trace
        for trace in _search(client, experiment_id, filter_string=window)
        if trace.info.trace_metadata.get("mlflow.sourceRun") in wanted
    ]


def _search(client: MlflowClient, experiment_id: str, **kwargs: Any) -> list[Trace]:
    traces: list[Trace] = []
    token: str | None = None
    while True:
        page = client.search_traces(locations=[experiment_id], max_results=500, page_token=token, **kwargs)
        traces.extend(page)
        token = page.token
        if not token:
            return traces


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
