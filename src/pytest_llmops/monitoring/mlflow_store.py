"""The MLflow store the drift command reads and logs to: which one, checked once, one clear
error when it cannot be used (never MLflow's retries for minutes, never a raw traceback), and
logging a report back as a run with artifacts.

mlflow is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pytest_llmops.errors import LLMOpsError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pytest_llmops.monitoring.report import DriftReport

SESSION_ROLE_TAG = "llmops.role"
PROBE_TIMEOUT_S = 3.0


class StoreError(LLMOpsError):
    """The tracking store cannot be used: missing, unreachable, corrupt or unreadable."""


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else the plugin's embedded store ``sqlite:///<cwd>/.llmops/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = Path(cwd) if cwd is not None else Path.cwd()
    return f"sqlite:///{(folder / '.llmops' / 'mlflow.db').resolve()}"


def client_for(tracking_uri: str | None) -> MlflowClient:
    """An ``MlflowClient`` for ``tracking_uri`` (default: :func:`default_tracking_uri`), checked
    to exist and answer; :class:`StoreError` otherwise."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri or default_tracking_uri()
    fix = "pass --tracking-uri (or set MLFLOW_TRACKING_URI) to the store that holds the runs"
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise StoreError(
                f"No MLflow store at {path}: run the suite with the llmops marker first, or {fix}."
            )
    elif uri.startswith(("http://", "https://")):
        _probe(uri, fix)
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as error:  # SQLAlchemy, MlflowException, requests: one line, not a traceback
        raise StoreError(f"The MLflow store {uri} cannot be read ({_first_line(error)}); {fix}.") from None
    return client


def _probe(uri: str, fix: str) -> None:
    """One TCP connection to a tracking server: refused or silent is an error now, not after
    MLflow's retries (about 248 s per call)."""
    parts = urlsplit(uri)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise StoreError(
            f"Cannot reach the MLflow tracking server {uri} ({reason}): start it, or {fix}."
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def environment_scrub() -> Callable[[str], str]:
    """Scrubbing of the secret variables of the environment, in any encoding: what a report
    written outside a pytest session (the ``drift`` command) goes through."""
    from pytest_llmops.secrets.known import KnownSecrets

    return KnownSecrets.from_environ(os.environ).scrub


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
    scrub = scrub or environment_scrub()
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
