"""The work of ``pytest-llmops drift`` (the parser is in ``cli.py``): check the input and the
outputs, load both REFs, compare, print, write, log. Every failure is a :class:`DriftFailure`
with its exit code and a message that says how to fix it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_llmops.monitoring.effects import parse_min_effects
from pytest_llmops.monitoring.mlflow_store import StoreError
from pytest_llmops.monitoring.model import DriftSettings
from pytest_llmops.monitoring.sources import RefError
from pytest_llmops.monitoring.window import TimeWindow, window

EXIT_DRIFT = 1
EXIT_USAGE = 2
EXIT_STORE = 3
EXIT_OUTPUT = 4

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pytest_llmops.monitoring.loading import Loaded
    from pytest_llmops.monitoring.report import DriftReport


class DriftFailure(Exception):
    """The command cannot go on: the message, and the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run(args: argparse.Namespace) -> int:
    """Compare ``args.baseline`` with ``args.current``; the exit code."""
    settings, windows = _inputs(args)
    for option, value in (("--html", args.html_path), ("--json", args.json_path)):
        if value and value != "-" and (problem := check_writable(Path(value))):
            raise DriftFailure(f"cannot write {option} {problem}. Pass a writable path.", EXIT_OUTPUT)
    if args.engine == "spark":
        report, descriptions, experiment_ids = _compare_spark(args, settings, windows)
        client = None
    else:
        client, loaded = _load_local(args, windows)
        from pytest_llmops.monitoring.engine import compare_columns

        base, cur = loaded
        report = compare_columns(
            base.columns,
            cur.columns,
            settings=settings,
            baseline_label=args.baseline,
            current_label=args.current,
        )
        descriptions = (base.description, cur.description)
        experiment_ids = cur.experiment_ids
    if args.json_path == "-":
        print(report.to_json())
    else:
        print(report.to_text(), end="")
        print(f"baseline: {descriptions[0]}\ncurrent: {descriptions[1]}")
    if args.json_path and args.json_path != "-":
        _write(Path(args.json_path), report.to_json() + "\n")
    html = report.to_html() if (args.html_path or not args.no_log) else None
    if args.html_path and html is not None:
        _write(Path(args.html_path), html)
    if not args.no_log:
        _log(args, report, html, client, experiment_ids)
    return EXIT_DRIFT if report.drifted and args.fail_on_drift else 0


Windows = tuple[TimeWindow | None, TimeWindow | None]


def _inputs(args: argparse.Namespace) -> tuple[DriftSettings, Windows]:
    try:
        settings = DriftSettings(
            alpha=args.alpha,
            features=args.features,
            pairing="off" if args.unpaired else "auto",
            min_effect=parse_min_effects(args.min_effect),
        )
        return settings, (window(args.baseline_since, args.baseline_until), window(args.since, args.until))
    except ValueError as error:
        raise DriftFailure(f"{error}.", EXIT_USAGE) from None


def _load_local(
    args: argparse.Namespace, windows: Windows
) -> tuple[MlflowClient | None, tuple[Loaded, Loaded]]:
    from pytest_llmops.monitoring.files import is_file_ref
    from pytest_llmops.monitoring.loading import load
    from pytest_llmops.monitoring.mlflow_store import client_for

    client = None
    try:
        if not (is_file_ref(args.baseline) and is_file_ref(args.current)):
            client = client_for(args.tracking_uri)
        refs = (args.baseline, args.current)
        loaded = tuple(load(ref, window=time, client=client) for ref, time in zip(refs, windows, strict=True))
    except StoreError as error:
        raise DriftFailure(str(error), EXIT_STORE) from None
    except RefError as error:
        raise DriftFailure(str(error), EXIT_USAGE) from None
    for label, item, time in zip(("baseline", "current"), loaded, windows, strict=True):
        if not len(item.columns):
            where = " in that time window" if time is not None else ""
            raise DriftFailure(
                f"{label} REF {item.ref!r} ({item.description}) has no traces{where}. Traces are "
                "recorded by mlflow.openai.autolog() inside a run (the llmops marker does it).",
                EXIT_USAGE,
            )
    return client, (loaded[0], loaded[1])


def _compare_spark(
    args: argparse.Namespace, settings: DriftSettings, windows: Windows
) -> tuple[DriftReport, tuple[str, str], list[str]]:
    try:
        from pytest_llmops.monitoring.spark.engine import compare_spark_refs
    except ImportError as error:
        raise DriftFailure(
            f"--engine spark needs PySpark ({error}): pip install 'pytest-llmops[spark]'", EXIT_USAGE
        ) from None
    try:
        report = compare_spark_refs(args.baseline, args.current, settings=settings, windows=windows)
    except RefError as error:
        raise DriftFailure(str(error), EXIT_USAGE) from None
    return report, (f"spark {args.baseline}", f"spark {args.current}"), []


def _log(
    args: argparse.Namespace,
    report: DriftReport,
    html: str | None,
    client: MlflowClient | None,
    experiment_ids: list[str],
) -> None:
    from pytest_llmops.monitoring.mlflow_store import client_for, log_report

    if args.log_run is None and not experiment_ids:
        print(
            "Not logged to MLflow: the current REF is not in an MLflow store. Pass --log-run RUN_ID "
            "to log into a run, or --no-log.",
            file=sys.stderr,
        )
        return
    try:
        client = client or client_for(args.tracking_uri)
        run_id = log_report(
            report,
            client=client,
            run_id=args.log_run,
            experiment_id=experiment_ids[0] if experiment_ids else None,
            html=html,
        )
    except StoreError as error:
        raise DriftFailure(str(error), EXIT_STORE) from None
    except Exception as error:  # MLflow's own errors (an unknown --log-run, ...): one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DriftFailure(f"logging the report to MLflow failed: {message}", EXIT_STORE) from None
    print(
        f"Logged drift/report.json, drift/report.txt, drift/report.html to MLflow run {run_id}.",
        file=sys.stderr,
    )


def check_writable(path: Path) -> str | None:
    """Why ``path`` cannot be written (None when it can): checked before the analysis, so a
    long comparison never ends in a traceback about its output file."""
    if path.is_dir():
        return f"{path} is a folder"
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as error:
        return f"{path}: {error.strerror or error}"
    if not existed:
        path.unlink(missing_ok=True)
    return None


def _write(path: Path, content: str) -> None:
    from pytest_llmops.monitoring.mlflow_store import environment_scrub

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The secret variables of the environment never reach a report file.
        path.write_text(environment_scrub()(content), encoding="utf-8")
    except OSError as error:
        raise DriftFailure(f"cannot write {path}: {error.strerror or error}", EXIT_OUTPUT) from None
