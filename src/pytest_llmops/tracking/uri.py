"""Which tracking store a session uses, told from its URI alone (nothing imported, nothing
opened): the embedded default, SQLite paths, Databricks, the command that shows it, and
whether MLflow can use the URI at all (:func:`problem`, checked in ``pytest_configure``).

Which URI (decided in :mod:`pytest_llmops.settings`): ``--llmops-tracking-uri``, then the
``llmops_tracking_uri`` ini option, then ``MLFLOW_TRACKING_URI``, then the embedded store
``sqlite:///<rootdir>/.llmops/mlflow.db`` whose artifacts (traces that do not fit in the
database) live beside it in ``.llmops/artifacts``.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
"""SQLAlchemy dialects MLflow's SQL store takes (``postgresql+psycopg2://`` and the like too)."""
DEFAULT_DRIVERS = {"postgresql": "psycopg2", "mysql": "MySQLdb", "mssql": "pyodbc"}
"""The Python module SQLAlchemy loads for a dialect named without ``+driver``."""
DRIVER_MODULES = {
    "psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000", "asyncpg": "asyncpg",
    "pymysql": "pymysql", "mysqldb": "MySQLdb", "mysqlconnector": "mysql.connector",
    "pyodbc": "pyodbc", "pymssql": "pymssql", "pysqlite": "sqlite3",
}
INSTALL_NAMES = {
    "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient", "mysql.connector": "mysql-connector-python",
}
"""The pip name of a driver module, where it differs."""
STORE_PLUGIN_GROUP = "mlflow.tracking_store"
"""Entry-point group of MLflow tracking-store plugins (their schemes are valid too)."""
EXAMPLES = (
    "http://127.0.0.1:5000 (a tracking server), sqlite:///path/to/mlflow.db, "
    "postgresql://user@host/db, databricks"
)


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


def is_server(uri: str) -> bool:
    """Whether the store is a tracking server (MLflow's REST API over HTTP)."""
    return uri.startswith(("http://", "https://"))


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
    if is_server(uri):
        return f"open {uri} in a browser (a tracking server: it serves the UI itself)"
    if uri.startswith("databricks"):
        return "open the experiment in your Databricks workspace (Machine Learning > Experiments)"
    command = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    location = artifact_location(uri)
    if location is not None:
        command += f" --default-artifact-root {shlex.quote(location)}"
    return command


# -- can MLflow use it? -----------------------------------------------------------------
def check(uri: str | None, source: str | None) -> None:
    """A tracking URI MLflow cannot use is a usage error at start-up, said in one line."""
    found = problem(uri) if uri else None
    if found:
        raise pytest.UsageError(
            f"The MLflow tracking URI {uri!r} ({source}) {found} "
            "Or unset it to use the embedded store .llmops/mlflow.db."
        )


def problem(uri: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Why MLflow cannot use ``uri`` as a tracking store (one sentence with the fix), or None.

    Checked from the URI alone, at start-up, without importing MLflow: an unknown scheme,
    a URI that does not parse, a server address without a host, a SQLite URI with a host
    or in memory, a database driver that is not installed, Unity Catalog (a model registry,
    not a tracking store), or the file store MLflow refuses unless ``MLFLOW_ALLOW_FILE_STORE``.
    Whether the store answers is found out when it is first used.
    """
    env = os.environ if environ is None else environ
    if uri.startswith(("databricks-uc", "uc:")) or uri == "uc":
        return "is a Unity Catalog URI: a model registry, not a tracking store. Use `databricks`."
    if is_databricks(uri):
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URI ({exc}). Examples: {EXAMPLES}."
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            return f"names no host. Write it as {scheme}://HOST:PORT, for example http://127.0.0.1:5000."
        if port == 0:
            return "has port 0. Give the port the tracking server listens on."
        return None
    if scheme in ("", "file") or (len(scheme) == 1 and scheme.isalpha()):  # a path (C:\... too)
        return _file_store_problem(uri, parts.netloc, env)
    dialect, _, driver = scheme.partition("+")
    if dialect in DATABASE_SCHEMES:
        return _database_problem(uri, dialect, driver, parts.netloc)
    if scheme in _store_plugin_schemes():
        return None
    hint = f" Did you mean http://{uri}?" if parts.path.isdigit() else ""
    return f"has a scheme MLflow has no tracking store for ({scheme!r}).{hint} Examples: {EXAMPLES}."


def _file_store_problem(uri: str, netloc: str, env: Mapping[str, str]) -> str | None:
    if uri.startswith("file:") and netloc not in ("", "localhost"):
        return "is a file URI with a host. Write a local folder as file:///absolute/path."
    allowed = env.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("1", "true", "yes")
    if allowed:
        return None
    return (
        "is MLflow's file store (a folder), which MLflow refuses unless MLFLOW_ALLOW_FILE_STORE=true. "
        "Use a SQLite file instead (sqlite:///path/to/mlflow.db), or set MLFLOW_ALLOW_FILE_STORE=true."
    )


def _database_problem(uri: str, dialect: str, driver: str, netloc: str) -> str | None:
    if dialect == "sqlite":
        if netloc:
            return (
                "names a host, which SQLite has not: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db."
            )
        if sqlite_path(uri) is None:
            return (
                "is an in-memory SQLite database, which every connection sees empty. "
                "Use a file: sqlite:///path/to/mlflow.db."
            )
    module = DRIVER_MODULES.get(driver) if driver else DEFAULT_DRIVERS.get(dialect)
    if module is not None and importlib.util.find_spec(module.split(".")[0]) is None:
        install = INSTALL_NAMES.get(module, module)
        return (
            f"needs the database driver {module!r}, which is not installed. "
            f"Install it (`pip install {install}`) or name another driver ({dialect}+DRIVER://...)."
        )
    return None


def _store_plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    return {entry.name for entry in entry_points(group=STORE_PLUGIN_GROUP)}
