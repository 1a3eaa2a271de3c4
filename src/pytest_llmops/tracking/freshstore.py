"""A new SQLite tracking store, created fast: a copy of an empty store migrated once per
MLflow version and kept in the user's cache.

MLflow migrates a new database through its ~60 migrations, each committed (and synced) on
its own: ~1.6 s on a 2-core machine, paid by every new store (a new clone, CI, a removed
``.llmops``). MLflow's own test suite gives each test a copy of a pre-migrated store; so
does :func:`create_sqlite_store`, from :func:`template_path`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from pytest_llmops.tracking.bootstrap import quiet_mlflow


def create_sqlite_store(path: Path) -> bool:
    """Create a new, migrated SQLite store at ``path``, if there is none; whether it did.

    MLflow migrates a new database through its ~60 migrations, each committed (and synced)
    on its own: ~1.6 s. Here the store is a copy of an empty store already migrated by this
    MLflow version, kept in the user's cache (:func:`template_path`; as MLflow's own test
    suite gives each test a copy of a pre-migrated store); the first time, it is migrated
    with the journal in memory and no syncing (nothing else can see the file yet), and the
    template saved. The new file is synced once, switched to write-ahead logging, and
    linked into place only if ``path`` still does not exist: a process killed meanwhile
    leaves a stray temporary file, never a half migrated store. The caller holds the
    session's lock (``SessionStore.locked``).
    """
    if path.exists():
        return False
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f"{path.name}.{os.getpid()}.new")
    building.unlink(missing_ok=True)
    try:
        if not _copy_template(building):
            _migrate(building)
            _save_template(building)
        with contextlib.closing(sqlite3.connect(building)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        with open(building, "rb") as file:
            os.fsync(file.fileno())
        try:
            os.link(building, path)  # never over a store another process made meanwhile
        except FileExistsError:
            return False
        return True
    finally:
        building.unlink(missing_ok=True)


def template_path() -> Path:
    """Where the empty store migrated by this MLflow version is kept: ``LLMOPS_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/pytest-llmops``, else ``~/.cache/pytest-llmops``."""
    from mlflow.version import VERSION

    configured = os.environ.get("LLMOPS_CACHE_DIR")
    if configured:
        folder = Path(configured)
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pytest-llmops"
    return folder.expanduser() / f"mlflow-{VERSION}-empty-store.db"


def _migrate(path: Path) -> None:
    import sqlalchemy as sa
    from mlflow.store.db.utils import _initialize_tables

    engine = sa.create_engine(f"sqlite:///{path}")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=MEMORY")
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    sa.event.listen(engine, "connect", on_connect)
    try:
        with quiet_mlflow():
            _initialize_tables(engine)  # type: ignore[no-untyped-call]
    finally:
        engine.dispose()


def _copy_template(path: Path) -> bool:
    """Copy the migrated template to ``path`` if there is a sound one (else it is dropped)."""
    import shutil
    import sqlite3

    template = template_path()
    sound = False
    try:
        shutil.copyfile(template, path)
        with contextlib.closing(sqlite3.connect(path)) as connection:
            checked = connection.execute("PRAGMA quick_check").fetchone()
            versions = connection.execute("SELECT count(*) FROM alembic_version").fetchone()
        sound = checked == ("ok",) and versions == (1,)
    except (OSError, sqlite3.Error):
        pass
    if not sound:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if template.exists():
                template.unlink()
    return sound


def _save_template(path: Path) -> None:
    """Keep a copy of a freshly migrated store as the template (best effort, atomic)."""
    import shutil

    template = template_path()
    temporary = template.with_name(f"{template.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, temporary)
        os.replace(temporary, template)
    with contextlib.suppress(OSError):
        temporary.unlink(missing_ok=True)
