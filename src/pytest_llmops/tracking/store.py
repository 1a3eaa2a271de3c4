"""The tracking store of a pytest session: which one, created once, and the session's
experiments and parent runs.

Which store (decided in :mod:`pytest_llmops.settings`): ``--llmops-tracking-uri``, then the
``llmops_tracking_uri`` ini option, then ``MLFLOW_TRACKING_URI``, then the embedded store
``sqlite:///<rootdir>/.llmops/mlflow.db`` whose artifacts (traces that do not fit in the
database) live beside it in ``.llmops/artifacts``. Every experiment the plugin creates in a
SQLite store gets that explicit ``artifact_location``, so nothing lands in a stray ``./mlruns``.

Created once, safely under pytest-xdist: a fresh SQLite store runs its migrations on first
use, and two processes migrating at once crash or corrupt it (PITFALLS.md). Nothing here
runs at plugin load: the first process that needs the store (the first marked test of the
session, in whichever xdist worker) takes a file lock, creates and migrates the store,
creates the experiment and the session's parent run, and writes their ids to a small state
file. Every other process takes the same lock, reads the ids and opens the already migrated
store. So a session without marked tests never imports mlflow (not even in the xdist
controller, which cannot know: it does not collect), no two processes ever migrate at once,
and the one parent run per experiment and invocation is shared by all workers. The
controller (or the only process) ends the parent runs in ``pytest_sessionfinish``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmops.errors import LLMOpsError

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_EXPERIMENT = "pytest-llmops"
"""The experiment of marked tests when neither ``--llmops-experiment``, the ini option, nor the
marker names one."""

LOCK_TIMEOUT_S = 300.0
SESSION_ROLE = "session"


class TrackingError(LLMOpsError):
    """The tracking store cannot be used (locked, unreachable, a wrong URI)."""


def embedded_uri(rootdir: Path) -> str:
    """``sqlite:///<rootdir>/.llmops/mlflow.db``: the store used when none is configured."""
    return f"sqlite:///{(rootdir / '.llmops' / 'mlflow.db').resolve()}"


def resolve_uri(configured: str | None, rootdir: Path) -> str:
    """The configured tracking URI (already resolved by the settings), else the embedded one."""
    return configured or embedded_uri(rootdir)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for other stores (and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def artifact_location(uri: str) -> str | None:
    """Where experiments of a SQLite store keep artifacts: ``artifacts/`` beside the database.
    None for other stores, whose server (or database) has its own artifact root."""
    path = sqlite_path(uri)
    return (path.parent / "artifacts").resolve().as_uri() if path is not None else None


def is_databricks(uri: str) -> bool:
    """Whether the store is a Databricks workspace's MLflow (``databricks``, ``databricks://PROFILE``)."""
    return uri == "databricks" or uri.startswith("databricks://")


def experiment_path(uri: str, name: str, current_user: Callable[[str], str] | None = None) -> str:
    """The experiment name to use in the store: on Databricks, experiments are workspace
    paths, so a plain name goes under the current user's folder (``/Users/<user>/<name>``)."""
    if not is_databricks(uri) or name.startswith("/"):
        return name
    user = (current_user or databricks_user)(uri)
    return f"/Users/{user}/{name}"


def databricks_user(uri: str) -> str:
    """The user the Databricks SDK's unified auth signs in as (profile from ``databricks://PROFILE``)."""
    from databricks.sdk import WorkspaceClient

    profile = uri.partition("://")[2] or None
    return str(WorkspaceClient(profile=profile).current_user.me().user_name)


def ui_command(uri: str) -> str:
    """The command (or the address) that shows this store in MLflow's UI."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser (a tracking server: it serves the UI itself)"
    if uri.startswith("databricks"):
        return "open the experiment in your Databricks workspace (Machine Learning > Experiments)"
    command = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    location = artifact_location(uri)
    if location is not None:
        command += f" --default-artifact-root {shlex.quote(location)}"
    return command


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


def import_mlflow() -> None:
    """Import mlflow and its SQL store quietly, once.

    SQLAlchemy 2.1 emits a ``SADeprecationWarning`` when MLflow's SQL store module is
    imported (a module-level ``noload`` option); a ``-W error`` suite would fail on it, and
    command-line ``-W`` filters take precedence over ini ``filterwarnings``. The warning is
    emitted once, at import, so importing the module here under a local filter is enough.
    """
    prepare_environment()
    already_imported = "mlflow" in sys.modules
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(noload|loader strategy).*")
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - the warning fires here
    if already_imported:
        # mlflow was imported before the plugin set MLFLOW_DISABLE_TELEMETRY: re-read it.
        with contextlib.suppress(Exception):
            from mlflow.telemetry import set_telemetry_client

            set_telemetry_client()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Ignore warnings raised inside MLflow (and SQLAlchemy under it) for a block: they are
    MLflow's business, and a ``-W error`` suite must not fail on them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(mlflow|sqlalchemy|alembic)(\.|$)")
        yield


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
        connection.execute("PRAGMA journal_mode=WAL")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # per connection

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener reconnect with it
    engine._llmops_tuned = True


@cache
def git_commit(rootdir: str) -> str | None:
    """The commit checked out in ``rootdir``, None outside a git work tree."""
    try:
        command = ["git", "-C", rootdir, "rev-parse", "HEAD"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


@dataclass(frozen=True)
class ExperimentRef:
    """An experiment of this session and the session's parent run in it."""

    name: str
    experiment_id: str
    parent_run_id: str


class SessionStore:
    """The tracking store as one pytest process sees it; shared state lives in a file.

    ``state_dir`` holds ``tracking.lock`` and ``<session id>.json`` (the experiments and
    parent runs of the invocation, written under the lock by whichever process needed
    them first). ``parent_tags()`` gives the tags of a parent run when one is created.
    """

    def __init__(
        self,
        uri: str,
        state_dir: Path,
        session_id: str,
        parent_tags: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.uri = uri
        self.state_dir = state_dir
        self.session_id = session_id
        self.parent_tags = parent_tags
        self._previous_uri: tuple[str | None] | None = None
        self._client: MlflowClient | None = None
        self._experiments: dict[str, ExperimentRef] = {}

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.session_id}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The cross-process lock that serialises store creation and the state file."""
        from filelock import FileLock, Timeout

        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.state_dir / "tracking.lock"), timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                yield
        except Timeout as exc:
            raise TrackingError(
                f"Waited {LOCK_TIMEOUT_S:.0f} s for {lock.lock_file}: another pytest process holds it. "
                "If none is running, delete the file and run again."
            ) from exc

    def client(self) -> MlflowClient:
        """An ``MlflowClient`` for the store; the first one of the process is created under the
        lock, so that a fresh SQLite store is migrated by exactly one process."""
        if self._client is None:
            with self.locked():
                self._client = self._open()
        return self._client

    def _open(self) -> MlflowClient:
        import_mlflow()
        import mlflow
        from mlflow import MlflowClient

        with quiet_mlflow():
            # The process's tracking URI, for the test's own mlflow calls (the lab's
            # start_run); put back in restore().
            from mlflow.tracking._tracking_service import utils

            previous = utils._tracking_uri
            if previous != self.uri:
                self._previous_uri = (previous,)
                mlflow.set_tracking_uri(self.uri)
            client = MlflowClient(self.uri)
            try:
                client.search_experiments(max_results=1)  # creates and migrates a fresh store
            except Exception as exc:
                raise TrackingError(
                    f"Cannot use the MLflow tracking store {self.uri}: {type(exc).__name__}: {exc}. "
                    "Check --llmops-tracking-uri / llmops_tracking_uri / MLFLOW_TRACKING_URI (unset them "
                    "to use the embedded store .llmops/mlflow.db)."
                ) from exc
            tune_sqlite(client, self.uri)
        return client

    def restore(self) -> None:
        """Give the process back the tracking URI it had before the session used the store."""
        if self._previous_uri is not None:
            import mlflow

            mlflow.set_tracking_uri(self._previous_uri[0])  # type: ignore[arg-type]
            self._previous_uri = None

    def experiment(self, name: str) -> ExperimentRef:
        """The experiment ``name`` (created if needed) and this session's parent run in it."""
        known = self._experiments.get(name)
        if known is not None:
            return known
        client = self.client()
        with self.locked():
            state = self._read_state()
            entry = state["experiments"].get(name)
            if entry is None:
                with quiet_mlflow():
                    entry = self._create(client, name)
                state["experiments"][name] = entry
                self._write_state(state)
        ref = ExperimentRef(name, entry["experiment_id"], entry["parent_run_id"])
        self._experiments[name] = ref
        return ref

    def _create(self, client: MlflowClient, name: str) -> dict[str, str]:
        name = experiment_path(self.uri, name)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            experiment_id = client.create_experiment(name, artifact_location=artifact_location(self.uri))
        elif experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"The MLflow experiment {name!r} is deleted in {self.uri}: restore it "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`), "
                "or choose another name with --llmops-experiment."
            )
        else:
            experiment_id = experiment.experiment_id
        tags = {
            "llmops.role": SESSION_ROLE,
            "llmops.session_id": self.session_id,
            "mlflow.source.type": "LOCAL",
            **(self.parent_tags() if self.parent_tags else {}),
        }
        parent = client.create_run(experiment_id, tags=tags, run_name=f"pytest session {self.session_id}")
        return {"experiment_id": experiment_id, "parent_run_id": parent.info.run_id}

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"tracking_uri": self.uri, "experiments": {}}
        if state.get("tracking_uri") != self.uri:
            return {"tracking_uri": self.uri, "experiments": {}}
        return dict(state)

    def _write_state(self, state: dict[str, Any]) -> None:
        temporary = self.state_file.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(temporary, self.state_file)

    def finish(
        self, status: str, metrics: Callable[[str], Mapping[str, float]] | None = None
    ) -> list[ExperimentRef]:
        """End the session's parent runs with ``status`` (controller, at session end).

        Child runs still RUNNING (their worker crashed, or the session was interrupted before
        their teardown) are set to KILLED. Does nothing, and imports nothing, when no process
        of the session used the store. ``metrics(experiment name)`` gives the metrics logged
        on that experiment's parent run.
        """
        if not self.state_file.is_file():
            return []
        with self.locked():
            state = self._read_state()
            refs = [
                ExperimentRef(name, entry["experiment_id"], entry["parent_run_id"])
                for name, entry in state["experiments"].items()
            ]
            if refs:
                client = self._client or self._open()
                self._client = client
                with quiet_mlflow():
                    for ref in refs:
                        self._finish_parent(client, ref, status, metrics(ref.name) if metrics else {})
            self.state_file.unlink(missing_ok=True)
        return refs

    @property
    def errors_file(self) -> Path:
        return self.state_dir / f"{self.session_id}.errors"

    def report_errors(self, errors: list[str]) -> None:
        """Leave write errors of an xdist worker for the controller's summary."""
        with self.locked(), self.errors_file.open("a", encoding="utf-8") as out:
            out.writelines(f"{error}\n" for error in errors)

    def read_errors(self) -> list[str]:
        """The errors workers reported (read once, by the controller)."""
        if not self.errors_file.is_file():
            return []
        lines = self.errors_file.read_text(encoding="utf-8").splitlines()
        self.errors_file.unlink(missing_ok=True)
        return [line for line in lines if line.strip()]

    def _finish_parent(
        self, client: MlflowClient, ref: ExperimentRef, status: str, metrics: Mapping[str, float]
    ) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        still_running = f"tags.mlflow.parentRunId = '{ref.parent_run_id}' and attributes.status = 'RUNNING'"
        orphans = client.search_runs([ref.experiment_id], filter_string=still_running, max_results=1000)
        for orphan in orphans:
            client.set_tag(orphan.info.run_id, "llmops.outcome", "interrupted")
            client.set_terminated(orphan.info.run_id, "KILLED", end_time=now)
        if metrics:
            batch = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
            client.log_batch(ref.parent_run_id, metrics=batch)
        client.set_terminated(ref.parent_run_id, status, end_time=now)
