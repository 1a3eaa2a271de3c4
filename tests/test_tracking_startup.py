"""What a session with marked tests pays once, made smaller without changing what is stored.

- A new SQLite store is a copy of an empty store migrated once per MLflow version (kept in
  the user's cache), with exactly the schema MLflow's own migrations give; a damaged copy
  in the cache is replaced.
- A process that imported mlflow for tracking skips the final garbage collection at exit
  (``gc.freeze()`` in an ``atexit`` handler); one that did not is left alone.
- Under xdist, the controller (which ends the session's runs) imports mlflow while the
  workers run the tests, once a worker says its collection holds a tracked test; it never
  does when none is selected.

How much each saves is measured by ``benchmarks/bench_marker.py``, not here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from pytest_llmops.tracking import bootstrap
from tests.test_tracking import client_for, run_pytest, runs_by_name, session_runs

ONE_MARKED = "import pytest\n\n@pytest.mark.llmops\ndef test_one():\n    pass\n"


def schema(store: Path) -> list[tuple[str, str, list[str]]]:
    """Every table and index of a store with its definition, and the schema version. The
    lines of a definition are sorted: MLflow's migrations rebuild some tables from a
    reflection whose constraint order varies from process to process."""
    with contextlib.closing(sqlite3.connect(store)) as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        version = db.execute("SELECT version_num FROM alembic_version").fetchall()
    lines = [(kind, name, sorted(part.strip().rstrip(",") for part in (sql or "").split("\n"))) for kind, name, sql in rows]
    return [*lines, ("alembic_version", "", [str(version)])]


def test_a_new_store_is_a_copy_of_a_store_migrated_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"LLMOPS_CACHE_DIR": str(cache)}
    projects = [tmp_path / name for name in ("first", "second", "third")]
    for project in projects:
        project.mkdir()
        (project / "test_one.py").write_text(ONE_MARKED, encoding="utf-8")

    first = run_pytest(projects[0], "test_one.py", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    (template,) = cache.glob("mlflow-*-empty-store.db")
    with contextlib.closing(sqlite3.connect(template)) as db:  # marks the copies made from now on
        db.execute("CREATE TABLE copied_from_the_template (x)")
        db.commit()

    second = run_pytest(projects[1], "test_one.py", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    stores = [project / ".llmops" / "mlflow.db" for project in projects]
    copied = schema(stores[1])
    assert ("table", "copied_from_the_template", ["CREATE TABLE copied_from_the_template (x)"]) in copied

    # MLflow's own migration of a new database: the schema every store must have.
    from mlflow import MlflowClient

    reference = tmp_path / "reference.db"
    with bootstrap.quiet_mlflow():
        MlflowClient(f"sqlite:///{reference}").search_experiments(max_results=1)
    expected = schema(reference)
    assert schema(stores[0]) == expected
    assert [row for row in copied if row[1] != "copied_from_the_template"] == expected
    for project in projects[:2]:
        client = client_for(project)
        runs = runs_by_name(client, client.get_experiment_by_name("pytest-llmops").experiment_id)
        assert runs["test_one.py::test_one"].info.status == "FINISHED"

    template.write_bytes(b"damaged" * 100)
    third = run_pytest(projects[2], "test_one.py", env=env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert schema(stores[2]) == expected  # migrated again
    assert schema(template) == expected  # and kept again


PRINTS_FREEZE_AT_EXIT = """
import atexit, gc

def pytest_configure(config):
    # Registered before the plugin imports mlflow: runs after the plugin's own handler.
    atexit.register(lambda: print("FROZEN AT EXIT", gc.get_freeze_count() > 0))
"""


def test_a_session_that_imported_mlflow_skips_the_final_collection(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(PRINTS_FREEZE_AT_EXIT, encoding="utf-8")
    (tmp_path / "test_one.py").write_text(ONE_MARKED + "\ndef test_plain():\n    pass\n", encoding="utf-8")
    marked = run_pytest(tmp_path, "test_one.py")
    assert marked.returncode == 0, marked.stdout + marked.stderr
    assert "FROZEN AT EXIT True" in marked.stdout, marked.stdout[-2000:]
    unmarked = run_pytest(tmp_path, "test_one.py::test_plain")
    assert unmarked.returncode == 0, unmarked.stdout + unmarked.stderr
    assert "FROZEN AT EXIT False" in unmarked.stdout, unmarked.stdout[-2000:]


CONTROLLER_SEES = """
import sys, threading, pytest

@pytest.hookimpl(trylast=True)
def pytest_xdist_node_collection_finished(node, ids):
    importing = any(t.name == "llmops-mlflow-import" for t in threading.enumerate())
    print("CONTROLLER IMPORTING", importing or "mlflow" in sys.modules)

def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        print("CONTROLLER MLFLOW AT END", "mlflow" in sys.modules)
"""


def test_the_xdist_controller_imports_mlflow_while_the_workers_run(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONTROLLER_SEES, encoding="utf-8")
    (tmp_path / "test_one.py").write_text(ONE_MARKED + "\ndef test_plain():\n    pass\n", encoding="utf-8")

    tracked = run_pytest(tmp_path, "-s", "-n", "2", "test_one.py")
    assert tracked.returncode == 0, tracked.stdout + tracked.stderr
    # Once per worker's collection: the first one already started the import.
    assert tracked.stdout.count("CONTROLLER IMPORTING True") == 2, tracked.stdout
    assert "CONTROLLER MLFLOW AT END True" in tracked.stdout
    # Imported under the session's warning filters (DeprecationWarning "always"), quietly.
    assert "Warning" not in tracked.stdout + tracked.stderr, tracked.stdout + tracked.stderr
    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("pytest-llmops")
    runs = runs_by_name(client, experiment.experiment_id)
    assert runs["test_one.py::test_one"].info.status == "FINISHED"
    (parent,) = session_runs(client, experiment.experiment_id)
    assert parent.info.status == "FINISHED"
    assert not list((tmp_path / ".llmops" / "tracking").glob("*.tracked"))  # nothing left behind

    # The marked test deselected: no worker says so, the controller never imports mlflow.
    deselected = run_pytest(tmp_path, "-s", "-n", "2", "-k", "plain", "test_one.py")
    assert deselected.returncode == 0, deselected.stdout + deselected.stderr
    assert deselected.stdout.count("CONTROLLER IMPORTING False") == 2, deselected.stdout
    assert "CONTROLLER MLFLOW AT END False" in deselected.stdout
    assert not list((tmp_path / ".llmops" / "tracking").glob("*.tracked"))
