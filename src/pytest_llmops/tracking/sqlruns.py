"""Test runs written straight to MLflow's SQL tables: one transaction to start a run, one
to end it.

Through ``MlflowClient`` a SQLite store spends ~4 ms creating a run and ~8 ms ending it
with one ``log_batch`` and ``set_terminated`` (measured with WAL on this project's 2-core
machine): every call opens several ORM sessions (three ``PRAGMA`` statements each), reads
the run back to check it is active, and the batch is split into a session per kind. A
test run is simple and short-lived: the plugin creates it, the test may log into it, the
plugin ends it. :class:`SqlRuns` writes exactly the rows MLflow's ``SqlAlchemyStore``
writes for these calls (``runs``, ``tags``, ``params``, ``metrics``, ``latest_metrics``)
with SQLAlchemy Core, through MLflow's own table definitions, in one short transaction
each (~0.5 ms).

Used only where that equivalence is tested (``tests/test_sqlruns.py`` writes the same runs
both ways and compares what ``MlflowClient`` reads back): MLflow's own ``SqlAlchemyStore``
(:func:`is_mlflow_sql_store`) on SQLite. Its schema is the
installed MLflow's: the store refuses to open an out-of-date database. Every other store,
and any run whose fast write fails, goes through :class:`ClientRuns` (``MlflowClient``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pytest_llmops.tracking import health

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

_logger = logging.getLogger(__name__)

PARAM_VALUE_LIMIT = 6000
RUN_NAME_TAG = "mlflow.runName"
BUSY_TIMEOUT_S = 20.0
"""How long a write waits for another process's (MLflow's own ``busy_timeout``)."""


@dataclass(frozen=True)
class RunFinish:
    """The end of a test's run: what to log, then the status."""

    run_id: str
    status: str
    end_time_ms: int
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


def batch(finish: RunFinish) -> tuple[list[Any], list[Any], list[Any]]:
    """The run end's metrics, params (cut to MLflow's limit) and tags as MLflow entities."""
    from mlflow.entities import Metric, Param, RunTag

    return (
        [Metric(k, float(v), finish.end_time_ms, 0) for k, v in finish.metrics.items()],
        [Param(k, str(v)[:PARAM_VALUE_LIMIT]) for k, v in finish.params.items()],
        [RunTag(k, str(v)) for k, v in finish.tags.items()],
    )


def is_mlflow_sql_store(store: Any) -> bool:
    """Whether ``store`` is MLflow's own ``SqlAlchemyStore`` (not a subclass: workspace-aware
    stores scope their queries), whose writes this package may take shortcuts with."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return type(store) is SqlAlchemyStore


class Runs(Protocol):
    """Starts and ends the runs of tests."""

    def create(self, experiment_id: str, name: str, tags: Mapping[str, str], start_time_ms: int) -> Run: ...

    def finish(self, finish: RunFinish) -> None: ...


class ClientRuns:
    """Runs through ``MlflowClient``: any store (tracking server, Databricks, SQL)."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def create(self, experiment_id: str, name: str, tags: Mapping[str, str], start_time_ms: int) -> Run:
        return self.client.create_run(experiment_id, start_time=start_time_ms, tags=dict(tags), run_name=name)

    def finish(self, finish: RunFinish) -> None:
        """Log the params, metrics and tags in one batch, then terminate the run."""
        from mlflow.exceptions import MlflowException

        client = self.client
        metrics, params, tags = batch(finish)
        try:
            client.log_batch(finish.run_id, metrics=metrics, params=params, tags=tags)
        except MlflowException:
            if not params:
                raise
            # The test logged a param of the same name itself, with another value: keep its value.
            existing = client.get_run(finish.run_id).data.params
            params = [p for p in params if p.key not in existing]
            client.log_batch(finish.run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(finish.run_id, finish.status, end_time=finish.end_time_ms)


class SqlRuns:
    """Runs written with SQLAlchemy Core into MLflow's tables (see the module docstring).

    Falls back to ``fallback`` for a run whose write fails, and for good after a failed
    start (a schema this code does not know): the test's run is never lost to the fast path.
    """

    def __init__(self, store: Any, fallback: ClientRuns) -> None:
        from mlflow.store.tracking.dbmodels import models

        self.engine = _engine(store.db_uri)
        self.fallback = fallback
        self._store = store
        self._tables = models
        self._artifact_roots: dict[str, str] = {}
        self._broken = False

    def _artifact_uri(self, experiment_id: str, run_id: str) -> str:
        from mlflow.utils.uri import append_to_uri_path

        root = self._artifact_roots.get(experiment_id)
        if root is None:
            experiment = self._store.get_experiment(experiment_id)
            if experiment.lifecycle_stage != "active":
                raise ValueError(f"experiment {experiment_id} is {experiment.lifecycle_stage}")
            root = self._artifact_roots[experiment_id] = experiment.artifact_location
        return str(append_to_uri_path(root, run_id, "artifacts"))  # type: ignore[no-untyped-call]

    # -- start --------------------------------------------------------------------------
    def create(self, experiment_id: str, name: str, tags: Mapping[str, str], start_time_ms: int) -> Run:
        """What ``SqlAlchemyStore.create_run`` writes: the run row and its tags (the run name
        among them), status RUNNING."""
        if self._broken:
            return self.fallback.create(experiment_id, name, tags, start_time_ms)
        from mlflow.entities import Run, RunData, RunInfo, RunTag

        tags = {**tags, RUN_NAME_TAG: name}
        user_id = tags.get("mlflow.user", "unknown")
        run_id = uuid.uuid4().hex
        try:
            artifact_uri = self._artifact_uri(experiment_id, run_id)
        except ValueError:  # a deleted experiment: MLflow's own error
            return self.fallback.create(experiment_id, name, tags, start_time_ms)
        try:
            row = {
                "run_uuid": run_id,
                "name": name,
                "artifact_uri": artifact_uri,
                "experiment_id": int(experiment_id),
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": user_id,
                "status": "RUNNING",
                "start_time": start_time_ms,
                "end_time": None,
                "deleted_time": None,
                "source_version": "",
                "lifecycle_stage": "active",
            }
            tag_rows = [{"run_uuid": run_id, "key": k, "value": v} for k, v in tags.items()]

            def insert(connection: Any) -> None:
                connection.execute(self._tables.SqlRun.__table__.insert(), row)
                connection.execute(self._tables.SqlTag.__table__.insert(), tag_rows)

            self._transaction(insert)
        except Exception as exc:
            if health.diagnose(self._store.db_uri, exc) is not None:
                raise  # the store itself failed (full, read-only, locked...): MLflow's way would too
            # A schema or store this code does not know: MLflow's way from now on.
            self._broken = True
            _logger.warning("pytest-llmops: writing runs through MlflowClient from now on (%s)", exc)
            return self.fallback.create(experiment_id, name, tags, start_time_ms)
        info = RunInfo(
            run_id=run_id,
            experiment_id=str(experiment_id),
            user_id=user_id,
            status="RUNNING",
            start_time=start_time_ms,
            end_time=None,
            lifecycle_stage="active",
            artifact_uri=artifact_uri,
            run_name=name,
        )
        return Run(info, RunData(tags=[RunTag(k, v) for k, v in tags.items()]))

    # -- end ----------------------------------------------------------------------------
    def finish(self, finish: RunFinish) -> None:
        """What ``log_batch`` then ``set_terminated`` write, in one transaction: new params
        (one the test logged itself keeps its value), metric values and the latest value
        per key, tags set or replaced, then status and end time."""
        if self._broken:
            self.fallback.finish(finish)
            return
        try:
            self._finish(finish)
        except Exception as exc:
            if health.diagnose(self._store.db_uri, exc) is not None:
                raise
            _logger.debug(
                "pytest-llmops: fast end of run %s failed (%s); using MlflowClient", finish.run_id, exc
            )
            self.fallback.finish(finish)

    def _finish(self, finish: RunFinish) -> None:
        import sqlalchemy as sa
        from sqlalchemy.dialects.sqlite import insert

        t = self._tables
        run_id, end = finish.run_id, finish.end_time_ms
        params, tags = self._validate(finish)
        values: dict[str, Any] = {"status": finish.status, "end_time": end}
        if RUN_NAME_TAG in tags:
            values["name"] = tags[RUN_NAME_TAG]
        run = t.SqlRun.__table__

        def write(connection: Any) -> None:
            ended = connection.execute(
                run.update()
                .where(run.c.run_uuid == run_id, run.c.lifecycle_stage == "active")
                .values(**values)
            )
            if ended.rowcount != 1:
                raise ValueError(f"run {run_id} is not an active run")
            if params:  # a param the test logged itself keeps its value
                rows = [{"run_uuid": run_id, "key": k, "value": v} for k, v in params.items()]
                connection.execute(insert(t.SqlParam.__table__).on_conflict_do_nothing(), rows)
            if finish.metrics:
                rows = []
                for key, value in finish.metrics.items():
                    is_nan, stored = self._store.sanitize_metric_value(float(value))
                    row = {"key": key, "value": stored, "timestamp": end, "step": 0, "is_nan": is_nan}
                    rows.append({"run_uuid": run_id, **row})
                connection.execute(insert(t.SqlMetric.__table__).on_conflict_do_nothing(), rows)
                latest = t.SqlLatestMetric.__table__
                upsert = insert(latest)
                newer = sa.tuple_(
                    upsert.excluded.step, upsert.excluded.timestamp, upsert.excluded.value
                ) > sa.tuple_(
                    latest.c.step, latest.c.timestamp, latest.c.value
                )  # MLflow keeps the value of the highest (step, timestamp, value)
                columns = ("value", "timestamp", "step", "is_nan")
                connection.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["key", "run_uuid"],
                        set_={c: upsert.excluded[c] for c in columns},
                        where=newer,
                    ),
                    rows,
                )
            if tags:
                upsert = insert(t.SqlTag.__table__)
                rows = [{"run_uuid": run_id, "key": k, "value": v} for k, v in tags.items()]
                connection.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["key", "run_uuid"], set_={"value": upsert.excluded.value}
                    ),
                    rows,
                )

        self._transaction(write)

    def _transaction(self, work: Callable[[Any], None]) -> None:
        """Run ``work`` in one transaction; while another process writes (SQLite takes one
        writer at a time), try again every few tenths of a millisecond.

        SQLite's own busy handler sleeps 1, 2, 5, 10 ms... between attempts, for locks the
        helper process (:mod:`.offload`) holds ~2 ms: a marked test cost 6.9 ms with it,
        4.2-5.5 ms without (``benchmarks/bench_marker.py``). The connections of this writer
        fail at once instead (``busy_timeout=0``) and retry here.
        """
        import sqlalchemy as sa

        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.0001
        while True:
            try:
                with self.engine.begin() as connection:
                    work(connection)
                return
            except sa.exc.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 0.002)

    @staticmethod
    def _validate(finish: RunFinish) -> tuple[dict[str, str], dict[str, str]]:
        """MLflow's own checks of the batch (keys, values, lengths: ``MlflowException``);
        the params and tags as MLflow would store them."""
        from mlflow.utils.validation import _validate_batch_log_data

        _, params, tags = _validate_batch_log_data(*batch(finish))  # type: ignore[no-untyped-call]
        return {p.key: p.value for p in params}, {t.key: t.value for t in tags}


def _engine(uri: str) -> Any:
    """This writer's own connections to the store's database (not MLflow's pool): foreign
    keys checked as MLflow has them, no fsync per commit (the store is in WAL mode, see
    ``store.tune_sqlite``), and no waiting inside SQLite (see ``SqlRuns._transaction``)."""
    import sqlalchemy as sa

    engine = sa.create_engine(uri)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        for pragma in ("foreign_keys = ON", "synchronous = NORMAL", "busy_timeout = 0"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    sa.event.listen(engine, "connect", on_connect)
    return engine


def runs_for(client: MlflowClient) -> Runs:
    """:class:`SqlRuns` for MLflow's own SQL store on SQLite, else :class:`ClientRuns`."""
    fallback = ClientRuns(client)
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if is_mlflow_sql_store(store) and getattr(store, "db_type", None) == "sqlite":
        return SqlRuns(store, fallback)
    return fallback
