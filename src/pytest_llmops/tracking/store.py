"""The tracking store of a pytest session: created once, the session's experiments and
parent runs, and their end.

Which store: :mod:`.uri`. Created once, safely under pytest-xdist: a fresh SQLite store runs
its migrations on first use, and two processes migrating at once crash or corrupt it
(PITFALLS.md). Nothing here runs at plugin load: the first process that needs the store (the
first marked test of the session, in whichever xdist worker) takes a file lock, creates and
migrates the store, creates the experiment and the session's parent run, and writes their
ids to a small state file. Every other process takes the same lock, reads the ids and opens
the already migrated store. So a session without marked tests never imports mlflow (not even
in the xdist controller, which does not collect: a worker whose collection holds a tracked
test tells it with a file, and only then does it import mlflow), no two processes ever
migrate at once, and the one parent run per experiment and invocation is shared by all
workers. The controller (or the only process) ends the parent runs in ``pytest_sessionfinish``.
Every SQLite store the plugin creates gets an explicit ``artifact_location`` for its
experiments, so nothing lands in a stray ``./mlruns``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmops.errors import TrackingError
from pytest_llmops.tracking.bootstrap import import_mlflow, quiet_mlflow, tune_sqlite
from pytest_llmops.tracking.uri import artifact_location, experiment_path, sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient

LOCK_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ExperimentRef:
    """An experiment of this session and the session's parent run in it."""

    name: str
    experiment_id: str
    parent_run_id: str

    def as_row(self) -> dict[str, str]:
        """As the summary and the report name it."""
        return {"experiment": self.name, "experiment_id": self.experiment_id,
                "parent_run_id": self.parent_run_id}


class SessionStore:
    """The tracking store as one pytest process sees it; shared state lives in a file.

    ``state_dir`` holds ``tracking.lock`` and ``<session id>.json`` (the experiments and
    parent runs of the invocation, written under the lock by whichever process needed
    them first). ``parent_tags()`` gives the tags of a parent run when one is created.

    A store that cannot be used (:mod:`.health`) is found out once per session: the first
    process to find it records the :class:`TrackingError` in the state file, and from then
    on every process of the session raises it at once, without trying the store again.
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
        self.failure: TrackingError | None = None
        """The store failure this session met, if any (then nothing more is tried)."""
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

        lock = FileLock(str(self.state_dir / "tracking.lock"), timeout=LOCK_TIMEOUT_S)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout as exc:
            self.failure = TrackingError(
                f"Waited {LOCK_TIMEOUT_S:.0f} s for {lock.lock_file}: another pytest process holds it. "
                "If none is running, delete the file and run again.",
                "locked",
            )
            raise self.failure from exc
        except OSError as exc:
            self.failure = TrackingError(
                f"pytest-llmops cannot keep its tracking state in {self.state_dir} ({type(exc).__name__}: "
                f"{exc}). Make the folder writable (or free space on its disk).",
                "read_only",
            )
            raise self.failure from exc
        try:
            yield
        finally:
            lock.release()

    def client(self) -> MlflowClient:
        """An ``MlflowClient`` for the store; the first one of the process is created under the
        lock, so that a fresh SQLite store is migrated by exactly one process."""
        if self.failure is not None:
            raise self.failure
        if self._client is None:
            with self.locked(), self._failing():
                self._raise_shared_failure()
                self._client = self._open()
        return self._client

    def _open(self) -> MlflowClient:
        import_mlflow()
        import mlflow
        from mlflow import MlflowClient
        from mlflow.tracking._tracking_service import utils

        from pytest_llmops.tracking import health
        from pytest_llmops.tracking.freshstore import create_sqlite_store

        # The process's tracking URI, for the test's own mlflow calls (the lab's start_run),
        # also when the store fails (they then meet that store, not a stray ./mlflow.db);
        # put back in restore().
        previous = utils._tracking_uri
        if previous != self.uri:
            self._previous_uri = (previous,)
            mlflow.set_tracking_uri(self.uri)
        health.probe(self.uri)  # seconds at most, not MLflow's minutes of retries
        path = sqlite_path(self.uri)
        with quiet_mlflow():
            if path is not None:
                create_sqlite_store(path)
            client = MlflowClient(self.uri)
            client.search_experiments(max_results=1)  # opens (and checks) the store
            tune_sqlite(client, self.uri)
        return client

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """Turn an error of the block into the session's store failure: remembered here,
        recorded for the session's other processes, raised as a :class:`TrackingError`."""
        try:
            yield
        except TrackingError as exc:
            if exc.kind == "experiment":
                raise  # one experiment's problem, not the store's
            self.record_failure(exc)
            raise
        except Exception as exc:
            from pytest_llmops.tracking import health

            error = health.failure(self.uri, exc)
            self.record_failure(error)
            raise error from exc

    def record_failure(self, error: TrackingError) -> None:
        """Remember a store failure, for this process and the session's others (the caller
        holds the lock)."""
        self.failure = error
        with contextlib.suppress(OSError):
            state = self._read_state()
            state["failure"] = {"message": str(error), "kind": error.kind}
            self._write_state(state)

    def _raise_shared_failure(self) -> None:
        """Raise the failure another process of this session recorded (lock held)."""
        shared = self._read_state().get("failure")
        if shared:
            self.failure = TrackingError(shared["message"], shared.get("kind", "other"))
            raise self.failure

    def restore(self) -> None:
        """Give the process back the tracking URI it had before the session used the store."""
        if self._previous_uri is not None:
            import mlflow

            mlflow.set_tracking_uri(self._previous_uri[0])  # type: ignore[arg-type]
            self._previous_uri = None

    def experiment(self, name: str) -> ExperimentRef:
        """The experiment ``name`` (created if needed) and this session's parent run in it;
        sessions of this host that died and left runs RUNNING there are closed first."""
        known = self._experiments.get(name)
        if known is not None:
            return known
        client = self.client()
        with self.locked(), self._failing():
            self._raise_shared_failure()
            state = self._read_state()
            entry = state["experiments"].get(name)
            if entry is None:
                with quiet_mlflow():
                    entry = self._create(client, name)
                    self._close_dead_sessions(client, entry["experiment_id"])
                state["experiments"][name] = entry
                self._write_state(state)
        ref = ExperimentRef(name, entry["experiment_id"], entry["parent_run_id"])
        self._experiments[name] = ref
        return ref

    def _close_dead_sessions(self, client: MlflowClient, experiment_id: str) -> None:
        """Close the runs killed sessions left RUNNING (:mod:`.orphans`): a courtesy to the
        past, never this session's failure unless the store itself fails."""
        from pytest_llmops.tracking import health, orphans

        try:
            orphans.close_dead_sessions(client, experiment_id, self.session_id)
        except Exception as exc:
            if health.diagnose(self.uri, exc) is not None:
                raise

    def _create(self, client: MlflowClient, name: str) -> dict[str, str]:
        name = experiment_path(self.uri, name)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            experiment_id = client.create_experiment(name, artifact_location=artifact_location(self.uri))
        elif experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"The MLflow experiment {name!r} is deleted in {self.uri}: restore it "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`), "
                "or choose another name with --llmops-experiment.",
                "experiment",
            )
        else:
            experiment_id = experiment.experiment_id
        from pytest_llmops.tracking.orphans import ROLE_TAG, SESSION_ROLE

        tags = {
            ROLE_TAG: SESSION_ROLE,
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
        try:
            temporary.write_text(json.dumps(state, indent=1), encoding="utf-8")
            os.replace(temporary, self.state_file)
        finally:
            temporary.unlink(missing_ok=True)

    def finish(
        self, status: str, metrics: Callable[[str], Mapping[str, float]] | None = None
    ) -> list[ExperimentRef]:
        """End the session's parent runs with ``status`` (controller, at session end); those
        it ended.

        Child runs still RUNNING (their worker crashed, or the session was interrupted before
        their teardown) are set to KILLED. Does nothing, and imports nothing, when no process
        of the session used the store; tries nothing more when the store failed (a later
        session closes the runs left RUNNING). ``metrics(experiment name)`` gives the metrics
        logged on that experiment's parent run. Raises :class:`TrackingError`.
        """
        with contextlib.suppress(OSError):
            self.tracked_file.unlink(missing_ok=True)
        if not self.state_file.is_file():
            return []
        ended: list[ExperimentRef] = []
        with self.locked():
            try:
                state = self._read_state()
                refs = [
                    ExperimentRef(name, entry["experiment_id"], entry["parent_run_id"])
                    for name, entry in state["experiments"].items()
                ]
                if refs and self.failure is None and not state.get("failure"):
                    with self._failing(), quiet_mlflow():
                        client = self._client or self._open()
                        self._client = client
                        for ref in refs:
                            self._finish_parent(client, ref, status, metrics(ref.name) if metrics else {})
                            ended.append(ref)
            finally:
                self.state_file.unlink(missing_ok=True)
        return ended

    @property
    def tracked_file(self) -> Path:
        """Left by an xdist worker whose collection holds a tracked test (:meth:`announce_tracked`)."""
        return self.state_dir / f"{self.session_id}.tracked"

    def announce_tracked(self) -> None:
        """Tell the controller, before it hears this worker's collection is done, that the
        session will use the store: it then imports mlflow while the workers run the tests
        instead of after them (see :func:`.bootstrap.start_import`). Best effort."""
        with contextlib.suppress(OSError):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.tracked_file.touch()

    def tracked_announced(self) -> bool:
        return self.tracked_file.is_file()

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

        from pytest_llmops.tracking import orphans

        now = int(time.time() * 1000)
        orphans.close_open_runs(client, ref.experiment_id, ref.parent_run_id, now)
        if metrics:
            batch = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
            client.log_batch(ref.parent_run_id, metrics=batch)
        client.set_terminated(ref.parent_run_id, status, end_time=now)
