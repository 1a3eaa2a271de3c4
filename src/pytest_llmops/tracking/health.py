"""A tracking store that cannot be used: found out once, in one sentence with the fix.

- :func:`probe` checks a store before the session first uses it, quickly: a tracking server
  must answer one request within :data:`PROBE_TIMEOUT_S`, without MLflow's retries (which
  wait ~248 s on a refused connection, per call); a SQLite store must be writable, readable
  as a database, and not held by another process's write transaction for more than
  :data:`LOCK_WAIT_S`.
- :func:`diagnose` tells, from an exception raised while the store was used, whether the
  store itself failed (unreachable, read-only, corrupt, locked, full, unopenable, refusing
  the credentials) rather than one run's data, and says so as a :class:`TrackingError`
  naming the store and the fix.

The session remembers the first such failure (``SessionStore``, ``StoreWriter``) and stops
using the store; the tests run untracked (see ``hooks.TrackingPlugin.track``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

from pytest_llmops.errors import TrackingError
from pytest_llmops.tracking.uri import is_server, sqlite_path

PROBE_TIMEOUT_S = 5.0
"""How long a tracking server may take to answer the first request of a session."""
LOCK_WAIT_S = 5.0
"""How long a session waits, at its start, for another process's write transaction on a
SQLite store (a session's own writes hold it for milliseconds)."""
PROBE_ENDPOINT = "/api/2.0/mlflow/experiments/search"

CONFIGURE = (
    "--llmops-tracking-uri / llmops_tracking_uri / MLFLOW_TRACKING_URI "
    "(unset all three for the embedded store .llmops/mlflow.db)"
)

SQLITE_PROBLEMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("locked", ("database is locked", "database table is locked")),
    ("read_only", ("readonly database", "read-only file system")),
    ("corrupt", ("file is not a database", "disk image is malformed", "malformed database schema",
                 "file is encrypted")),
    ("full", ("database or disk is full", "disk i/o error", "file too large", "no space left")),
    ("unopenable", ("unable to open database file",)),
    ("outdated", ("out-of-date database schema",)),
)
"""Kinds of store failure, told by the messages SQLite (and MLflow) give for them."""
OS_ERRORS = {
    errno.ENOSPC: "full", errno.EFBIG: "full", errno.EDQUOT: "full", errno.EIO: "full",
    errno.EROFS: "read_only", errno.EACCES: "read_only", errno.EPERM: "read_only",
}
CONNECTION_ERRORS = (
    "connection refused", "max retries exceeded", "failed to establish a new connection",
    "name or service not known", "temporary failure in name resolution", "timed out",
    "connection reset", "connection aborted", "remote end closed connection",
)


def probe(uri: str) -> None:
    """Raise :class:`TrackingError` if the store cannot be used now; cheap when it can."""
    path = sqlite_path(uri)
    if path is not None:
        _probe_sqlite(uri, path)
    elif is_server(uri):
        _probe_server(uri)


def _probe_sqlite(uri: str, path: Path) -> None:
    import sqlite3

    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _failure(uri, "read_only" if exc.errno != errno.ENOSPC else "full", exc) from exc
    for target in (folder, path) if path.exists() else (folder,):
        if not os.access(target, os.W_OK):
            raise _failure(uri, "read_only", OSError(errno.EACCES, "not writable", str(target)))
    if not path.exists():
        return  # created, fast, by freshstore.create_sqlite_store
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None)) as db:
            db.execute("PRAGMA schema_version").fetchone()  # reads the header: a database at all?
            db.execute("BEGIN IMMEDIATE")  # the write lock: is another process holding it?
            db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise diagnose(uri, exc) or _failure(uri, "unopenable", exc) from exc


def _probe_server(uri: str) -> None:
    """One request, no retries, a short timeout: any HTTP answer means the server is there."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(  # type: ignore[no-untyped-call]
            get_default_host_creds(uri),  # type: ignore[no-untyped-call]
            PROBE_ENDPOINT, "POST", max_retries=0, backoff_factor=0,
            timeout=PROBE_TIMEOUT_S, raise_on_status=False, json={"max_results": 1},
        )
    except Exception as exc:
        raise _failure(uri, "unreachable", exc) from exc
    status = response.status_code
    if status in (401, 403):
        raise _failure(uri, "unauthorized", Exception(f"HTTP {status} {response.reason}"))
    if status == 404:
        raise _failure(uri, "not_mlflow", Exception(f"HTTP 404 for {PROBE_ENDPOINT}"))
    if status >= 500:
        raise _failure(uri, "server_error", Exception(f"HTTP {status} {response.reason}"))


def diagnose(uri: str, exc: BaseException) -> TrackingError | None:
    """The store failure ``exc`` shows, or None when it is about something else (a run's
    data, a deleted experiment, a bug)."""
    if isinstance(exc, TrackingError):
        return exc
    for cause in _chain(exc):
        if isinstance(cause, OSError) and not isinstance(cause, ConnectionError | TimeoutError):
            kind = OS_ERRORS.get(cause.errno or 0)
            if kind is not None:
                return _failure(uri, kind, cause)
        text = str(cause).lower()
        for kind, needles in SQLITE_PROBLEMS:
            if any(needle in text for needle in needles):
                return _failure(uri, kind, cause)
        if is_server(uri) and (
            isinstance(cause, ConnectionError | TimeoutError) or any(n in text for n in CONNECTION_ERRORS)
        ):
            return _failure(uri, "unreachable", cause)
    return None


def failure(uri: str, exc: BaseException) -> TrackingError:
    """:func:`diagnose`, or a general "cannot be used" naming the error, for a failure
    where the session cannot go on tracking whatever the cause (opening the store,
    creating the session's experiment)."""
    return diagnose(uri, exc) or _failure(uri, "other", exc)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it (SQLAlchemy and MLflow wrap the driver's error)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield orig
            seen.add(id(orig))
        current = current.__cause__ or current.__context__


def _detail(exc: BaseException) -> str:
    """The error in a few words: its first cause (the driver's message, the refused
    connection), not the wrappers around it (SQLAlchemy's statement dump, MLflow's retries)."""
    *_, exc = _chain(exc)
    text = str(exc).split("\n", 1)[0].strip()
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text[:240]}" if text else type(exc).__name__


def _failure(uri: str, kind: str, exc: BaseException) -> TrackingError:
    path = sqlite_path(uri)
    where = str(path.resolve()) if path is not None else uri
    quoted = shlex.quote(where)
    detail = _detail(exc)
    messages = {
        "unreachable": f"does not answer ({detail}). Start the tracking server, or set {CONFIGURE}.",
        "unauthorized": (
            f"refuses the request ({detail}). Set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD, for a server that requires them."
        ),
        "not_mlflow": f"is not an MLflow tracking server ({detail}). Set {CONFIGURE}.",
        "server_error": f"answers with an error ({detail}). Check the server's log, or set {CONFIGURE}.",
        "read_only": (
            f"is read-only ({detail}). Make the file and its folder writable, or choose another store "
            "with --llmops-tracking-uri."
        ),
        "corrupt": (
            f"is not a usable SQLite database ({detail}). Move it away (`mv {quoted} {quoted}.corrupt`): "
            "the next session creates a new store there (or restore it from a backup)."
        ),
        "locked": (
            f"is locked by another process ({detail}): it holds a write transaction on the store. "
            "End that process (a `sqlite3` shell, a stuck pytest or script) and run again."
        ),
        "full": (
            f"cannot be written ({detail}): its disk is full, a quota or file-size limit applies, or the "
            "disk fails. "
            f"Free space (`df -h {shlex.quote(str(Path(where).parent))}`), or choose a store elsewhere "
            "with --llmops-tracking-uri."
        ),
        "unopenable": f"cannot be opened ({detail}). Check that its folder exists and is writable.",
        "outdated": (
            f"has an older schema than this MLflow ({detail}). Back it up, then "
            f"`mlflow db upgrade {shlex.quote(uri)}`."
        ),
        "other": f"cannot be used ({detail}). Check it, or set {CONFIGURE}.",
    }
    if kind == "full" and path is None:
        messages["full"] = f"cannot be written ({detail}): its disk is full. Free space, or set {CONFIGURE}."
    return TrackingError(f"The MLflow tracking store {where} {messages[kind]}", kind)
