"""MLflow in a pytest process: the environment it must see before it is imported, its quiet
import, a SQLite store made fast (write-ahead logging), and a quick exit for a process that
imported it. A new store is created fast by :mod:`.freshstore`.

What a session with marked tests pays once over one without, measured on a 2-core machine
(``benchmarks/bench_marker.py``): importing mlflow (~1.5-2.5 s, unavoidable: autologging
and the active run live in the tests' process), creating and migrating a new SQLite store
(~1.6 s through MLflow's ~60 migrations one transaction at a time: :mod:`.freshstore`
copies a template migrated once per MLflow version instead), and tearing the interpreter
down at exit, which collects the hundreds of thousands of objects mlflow and its
dependencies leave (~1.2 s: :func:`skip_final_collection` skips it). Under xdist the
controller imports mlflow too, to end the session's runs: :func:`start_import` moves that
import from after the workers' run to during it.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from pytest_llmops.tracking.uri import sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient


def prepare_environment(environ: dict[str, str] | None = None) -> None:
    """Environment MLflow reads at import or first use, set before it is imported.

    - Telemetry off: MLflow otherwise fetches a config over HTTPS ~1.6 s after import.
    - Synchronous trace export for traces this plugin does not write itself (MLflow's
      asynchronous queue costs ~1 s to drain at every flush and at exit); an explicit user
      setting is kept.
    - No batch span processor: with asynchronous export MLflow would hand ended spans to its
      exporter through one, past the plugin's, and marked tests would lose their traces
      (their metrics read 0 calls). Other traces are still exported as the user asked.
    """
    env = os.environ if environ is None else environ
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    env["MLFLOW_USE_BATCH_SPAN_PROCESSOR"] = "false"


_background: threading.Thread | None = None
"""The thread :func:`start_import` started in this process, if any."""


def start_import() -> None:
    """Start importing mlflow and its SQL store in a daemon thread, for a process that will
    need them later and waits for other processes meanwhile (the xdist controller, while its
    workers run the tests). :func:`import_mlflow` waits for it.

    Warning filters are the process's, not a thread's: the import's warnings are ignored
    for the rest of the session by the process's filters (pytest's, for the session; the
    controller runs no test, so no test sees them), and the thread is done before pytest's
    session-end hooks set filters of their own (``TrackingPlugin.pytest_runtestloop``
    waits for it). Should the import fail anyway (another warning made an error by
    ``-W error``), :func:`import_mlflow` imports again in the calling thread.
    """
    global _background
    if _background is not None or "mlflow" in sys.modules:
        return
    prepare_environment()
    skip_final_collection()
    _ignore_import_warnings()
    _background = threading.Thread(target=_import_in_background, name="llmops-mlflow-import", daemon=True)
    _background.start()


def _import_in_background() -> None:
    with contextlib.suppress(Exception):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def wait_for_import() -> None:
    """Wait for the import :func:`start_import` started, if any."""
    if _background is not None:
        _background.join()


def import_mlflow() -> None:
    """Import mlflow and its SQL store quietly, once (after the import :func:`start_import`
    started, if any, is done).

    SQLAlchemy 2.1 emits a ``SADeprecationWarning`` when MLflow's SQL store module is
    imported (a module-level ``noload`` option); a ``-W error`` suite would fail on it, and
    command-line ``-W`` filters take precedence over ini ``filterwarnings``. The warning is
    emitted once, at import, so importing the module here under a local filter is enough.
    """
    wait_for_import()
    prepare_environment()
    skip_final_collection()
    already_imported = "mlflow" in sys.modules and _background is None
    with warnings.catch_warnings():
        _ignore_import_warnings()
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - the warning fires here
    if already_imported:
        # mlflow was imported before the plugin set MLFLOW_DISABLE_TELEMETRY: re-read it.
        with contextlib.suppress(Exception):
            from mlflow.telemetry import set_telemetry_client

            set_telemetry_client()  # type: ignore[no-untyped-call]


def _ignore_import_warnings() -> None:
    """Ignore, in the current warning filters, what importing mlflow's SQL store warns about."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow(\.|$)")
    warnings.filterwarnings("ignore", message=r".*(noload|loader strategy).*")


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Ignore warnings raised inside MLflow (and SQLAlchemy under it) for a block: they are
    MLflow's business, and a ``-W error`` suite must not fail on them. MLflow's store also
    logs each database error it raises, with its traceback, on stderr: the plugin says what
    went wrong itself (:mod:`.health`), once, so those logs are held back too."""
    store_logger = logging.getLogger("mlflow.store")  # its modules' loggers inherit the level
    level = store_logger.level
    store_logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(mlflow|sqlalchemy|alembic)(\.|$)")
            yield
    finally:
        store_logger.setLevel(level)


def tune_sqlite(client: MlflowClient, uri: str) -> None:
    """Make a SQLite store fast and concurrent: write-ahead logging (readers never block the
    writer, which xdist workers need) with ``synchronous=NORMAL`` (no fsync per commit, still
    crash-safe). Measured: 2x fewer milliseconds per run and trace."""
    path = sqlite_path(uri)
    if path is None:
        return
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is None or getattr(engine, "_llmops_tuned", False):
        return
    import sqlite3

    import sqlalchemy

    # journal_mode is a property of the database file: set once (callers hold the lock).
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode=WAL")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # per connection

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener reconnect with it
    engine._llmops_tuned = True


@cache
def skip_final_collection() -> None:
    """Spare this process the garbage collection of every object at exit (registered once,
    by :func:`import_mlflow`).

    An interpreter that imported mlflow (with pandas, pydantic, SQLAlchemy, alembic, the
    OpenTelemetry SDK...) spends ~1.2 s collecting and tearing down its objects when it
    exits, measured; the session's output is printed by then. At exit (an ``atexit``
    handler: a program that runs ``pytest.main()`` and goes on is not affected),
    ``gc.freeze()`` moves every object still alive into the permanent generation, which the
    final collections skip. Objects still reachable are freed as usual when modules are
    cleared, and ``atexit`` handlers registered earlier run after this one as usual; what is
    no longer collected is a reference cycle that would only die in the final collection
    (the process is ending: the operating system takes its memory back).
    """
    atexit.register(gc.freeze)
