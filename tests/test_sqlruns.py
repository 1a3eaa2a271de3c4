"""The fast run writer against MLflow's own: the same runs written both ways into one real
SQLite store (MLflow's migrated schema), read back through ``MlflowClient``, must not differ.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pytest_llmops.tracking import bootstrap
from pytest_llmops.tracking.sqlruns import ClientRuns, RunFinish, SqlRuns, runs_for

START_MS = 1_700_000_000_000
END_MS = START_MS + 1234
TAGS = {
    "mlflow.parentRunId": "0" * 32,
    "mlflow.source.type": "LOCAL",
    "mlflow.source.name": "tests/test_a.py",
    "llmops.nodeid": "tests/test_a.py::test_one[x-1]",
    "llmops.mode": "replay",
    "llmops.worker": "master",
}
PARAMS = {"model": "gpt-4o", "temperature": "0.2", "i": "1", "long": "x" * 7000}
METRICS = {
    "llmops.duration_s": 0.25,
    "llmops.llm_calls": 2.0,
    "llmops.total_tokens": 34.0,
    "llmops.latency_ms_mean": 12.5,
    "nan_metric": math.nan,
    "inf_metric": math.inf,
}


@pytest.fixture
def client(tmp_path: Path) -> Any:
    bootstrap.import_mlflow()
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bootstrap.quiet_mlflow():
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # creates and migrates the store
        bootstrap.tune_sqlite(client, uri)
        yield client


@pytest.fixture
def experiment_id(client: Any, tmp_path: Path) -> str:
    return str(client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri()))


@pytest.fixture
def writers(client: Any) -> dict[str, Any]:
    fast = runs_for(client)
    assert isinstance(fast, SqlRuns)
    return {"mlflow": ClientRuns(client), "fast": fast}


def comparable(client: Any, run_id: str) -> dict[str, Any]:
    """What a user reads back of a run, with its id taken out."""
    run = client.get_run(run_id)
    info = run.info
    return {
        "info": {
            "experiment_id": info.experiment_id,
            "run_name": info.run_name,
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "lifecycle_stage": info.lifecycle_stage,
            "user_id": info.user_id,
            "artifact_uri": info.artifact_uri.replace(run_id, "<id>"),
        },
        "params": run.data.params,
        "metrics": {key: _same_nan(value) for key, value in run.data.metrics.items()},
        "tags": run.data.tags,
        "history": {
            key: [(_same_nan(m.value), m.timestamp, m.step) for m in client.get_metric_history(run_id, key)]
            for key in run.data.metrics
        },
        "inputs": run.inputs.to_dictionary() if run.inputs else None,
    }


def _same_nan(value: float) -> Any:
    return "nan" if math.isnan(value) else value


def write_both(
    writers: dict[str, Any], experiment_id: str, finish: dict[str, Any], before: Any = None
) -> dict[str, str]:
    """The same run through both writers; ``before(run_id)`` runs between start and end."""
    ids = {}
    for name, writer in writers.items():
        run = writer.create(experiment_id, "tests/test_a.py::test_one[x-1]", TAGS, START_MS)
        if before is not None:
            before(run.info.run_id)
        writer.finish(RunFinish(run.info.run_id, end_time_ms=END_MS, **finish))
        ids[name] = run.info.run_id
    return ids


def test_a_run_reads_back_the_same(client: Any, experiment_id: str, writers: dict[str, Any]) -> None:
    finish = {"status": "FAILED", "params": PARAMS, "metrics": METRICS, "tags": {"llmops.outcome": "failed"}}
    ids = write_both(writers, experiment_id, finish)

    mlflow_run, fast_run = comparable(client, ids["mlflow"]), comparable(client, ids["fast"])
    assert fast_run == mlflow_run
    assert fast_run["info"]["status"] == "FAILED"
    assert fast_run["params"]["long"] == "x" * 6000  # cut as MLflow's limit requires
    assert fast_run["metrics"]["nan_metric"] == "nan"
    assert fast_run["metrics"]["inf_metric"] == 1.7976931348623157e308  # as MLflow stores infinity
    assert fast_run["tags"]["mlflow.runName"] == "tests/test_a.py::test_one[x-1]"


def test_the_returned_run_is_the_stored_one(client: Any, experiment_id: str, writers: dict[str, Any]) -> None:
    run = writers["fast"].create(experiment_id, "a name", TAGS, START_MS)
    stored = client.get_run(run.info.run_id)
    assert run.info.to_proto() == stored.info.to_proto()
    assert run.data.tags == stored.data.tags


def test_search_finds_fast_runs_like_mlflow_runs(
    client: Any, experiment_id: str, writers: dict[str, Any]
) -> None:
    finish = {
        "status": "FINISHED",
        "params": PARAMS,
        "metrics": METRICS,
        "tags": {"llmops.outcome": "passed"},
    }
    ids = write_both(writers, experiment_id, finish)
    queries = [
        "metrics.`llmops.total_tokens` > 30",
        "params.model = 'gpt-4o'",
        "tags.`llmops.outcome` = 'passed'",
        "attributes.status = 'FINISHED'",
        "attributes.run_name = 'tests/test_a.py::test_one[x-1]'",
        f"tags.`mlflow.parentRunId` = '{'0' * 32}'",
    ]
    for query in queries:
        found = {run.info.run_id for run in client.search_runs([experiment_id], filter_string=query)}
        assert found == set(ids.values()), query
    ordered = client.search_runs([experiment_id], order_by=["metrics.`llmops.duration_s` DESC"])
    assert {run.info.run_id for run in ordered} == set(ids.values())


def test_what_the_test_logged_itself_is_kept_like_mlflow_keeps_it(
    client: Any, experiment_id: str, writers: dict[str, Any]
) -> None:
    from mlflow.entities import Metric

    def test_logs(run_id: str) -> None:
        client.log_param(run_id, "model", "the test's own value")
        client.set_tag(run_id, "llmops.outcome", "set by the test")
        client.set_tag(run_id, "own", "tag")
        # a later value of one of the plugin's metrics, and an older one of another
        client.log_batch(run_id, metrics=[Metric("llmops.total_tokens", 99.0, END_MS + 10, 3)])
        client.log_batch(run_id, metrics=[Metric("llmops.llm_calls", 7.0, START_MS, 0)])

    finish = {
        "status": "FINISHED",
        "params": PARAMS,
        "metrics": METRICS,
        "tags": {"llmops.outcome": "passed"},
    }
    ids = write_both(writers, experiment_id, finish, before=test_logs)

    fast_run = comparable(client, ids["fast"])
    mlflow_keeps = comparable(client, ids["mlflow"])
    # MLflow refuses a whole log_batch whose param differs; the plugin then logs it without
    # that param (ClientRuns), keeping the test's value: both writers end up the same.
    assert fast_run == mlflow_keeps
    assert fast_run["params"]["model"] == "the test's own value"
    assert fast_run["tags"]["llmops.outcome"] == "passed"
    assert fast_run["tags"]["own"] == "tag"
    assert fast_run["metrics"]["llmops.total_tokens"] == 99.0  # step 3 beats step 0
    assert fast_run["metrics"]["llmops.llm_calls"] == 2.0  # newer timestamp wins at equal steps


def test_a_deleted_run_is_refused_as_mlflow_refuses_it(
    client: Any, experiment_id: str, writers: dict[str, Any]
) -> None:
    from mlflow.exceptions import MlflowException

    for writer in writers.values():
        run = writer.create(experiment_id, "n", TAGS, START_MS)
        client.delete_run(run.info.run_id)
        with pytest.raises(MlflowException, match="must be in the 'active' state"):
            writer.finish(RunFinish(run.info.run_id, "FINISHED", END_MS, metrics={"m": 1.0}))


def test_an_invalid_batch_is_refused_with_mlflows_message(
    client: Any, experiment_id: str, writers: dict[str, Any]
) -> None:
    from mlflow.exceptions import MlflowException

    messages = []
    for writer in writers.values():
        run = writer.create(experiment_id, "n", TAGS, START_MS)
        with pytest.raises(MlflowException) as error:
            writer.finish(RunFinish(run.info.run_id, "FINISHED", END_MS, params={"bad\nkey": "v"}))
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def test_an_unknown_schema_falls_back_to_mlflow_for_good(
    client: Any, experiment_id: str, writers: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Tables this writer does not know (here: its run table renamed, as a future MLflow
    might): the insert fails, the run is created by MlflowClient instead, and so are the
    next ones; the failed transaction leaves nothing behind."""
    from types import SimpleNamespace

    import sqlalchemy as sa

    fast = writers["fast"]
    models = fast._tables
    renamed = models.SqlRun.__table__.to_metadata(sa.MetaData(), name="runs_v2")
    fast._tables = SimpleNamespace(SqlRun=SimpleNamespace(__table__=renamed), SqlTag=models.SqlTag)
    with caplog.at_level("WARNING", logger="pytest_llmops.tracking.sqlruns"):
        run = fast.create(experiment_id, "n", TAGS, START_MS)
    assert "writing runs through MlflowClient from now on" in caplog.text
    assert client.get_run(run.info.run_id).data.tags["llmops.mode"] == "replay"

    fast._tables = models
    again = fast.create(experiment_id, "m", TAGS, START_MS)
    fast.finish(RunFinish(again.info.run_id, "FINISHED", END_MS, metrics={"m": 1.0}))
    assert client.get_run(again.info.run_id).info.status == "FINISHED"
    assert {r.info.run_name for r in client.search_runs([experiment_id])} == {"n", "m"}
    with fast.engine.connect() as connection:
        orphans = connection.execute(
            sa.text("SELECT count(*) FROM tags WHERE run_uuid NOT IN (SELECT run_uuid FROM runs)")
        )
        assert orphans.scalar_one() == 0


def test_other_stores_use_mlflows_client() -> None:
    bootstrap.import_mlflow()
    from mlflow import MlflowClient

    assert isinstance(runs_for(MlflowClient("http://127.0.0.1:9")), ClientRuns)


def test_a_deleted_experiment_is_refused_as_mlflow_refuses_it(
    client: Any, experiment_id: str, writers: dict[str, Any]
) -> None:
    from mlflow.exceptions import MlflowException

    client.delete_experiment(experiment_id)
    for writer in writers.values():
        with pytest.raises(MlflowException, match="must be in the 'active' state"):
            writer.create(experiment_id, "n", TAGS, START_MS)
    assert not writers["fast"]._broken  # other experiments keep the fast path
