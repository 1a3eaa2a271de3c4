"""``pytest-llmops drift``: compare the traces of two REFs (runs, sessions, experiments of an
MLflow store, or JSON Lines / Parquet files).

Cheap to import: numpy, scipy, mlflow, pyspark and matplotlib are imported when the command
runs. Exit codes: 0 no drift (or drift without ``--fail-on-drift``); 1 drift with
``--fail-on-drift``; 2 bad input (a REF that names nothing or has no traces, an unknown
feature, a bad ``--min-effect``, ``--since`` or ``--until``, a missing engine); 3 the tracking
store cannot be used (missing, unreachable, corrupt); 4 an output file cannot be written
(checked before the analysis). Every error is one line on stderr that says how to fix it.
"""

from __future__ import annotations

import argparse
import sys

REF_HELP = (
    "a run id (or run:ID; a session's parent run means all its test runs), session:ID, "
    "session:latest[@EXPERIMENT], session:latest-live[@EXPERIMENT], EXPERIMENT[:FILTER] with an "
    "MLflow run filter (e.g. \"lab:tags.llmops.mode = 'replay'\"), or a .jsonl / .parquet file of "
    "flat traces or serving inference-table rows"
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``drift`` subcommand."""
    parser = subparsers.add_parser(
        "drift",
        help="compare the traces of two runs or files for drift (exit 1 with --fail-on-drift)",
        description="Compare the traces behind two REFs feature by feature (tokens, latency, answer "
        "length, finish reason, errors, tool calls, model, deployment, text n-grams) with two-sample "
        "tests, Benjamini-Hochberg across features and a minimum effect per feature. Prints a table; "
        "writes JSON and a self-contained HTML report on request; logs all three to MLflow. "
        "Exit codes: 0 no drift, 1 drift with --fail-on-drift, 2 bad input, 3 tracking store "
        "unusable, 4 output not writable.",
    )
    parser.add_argument("--baseline", required=True, metavar="REF", help=f"the reference: {REF_HELP}")
    parser.add_argument("--current", required=True, metavar="REF", help="what to compare with the baseline")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///<cwd>/.llmops/mlflow.db)",
    )
    parser.add_argument("--alpha", type=_alpha, default=0.05, help="false discovery rate (default 0.05)")
    parser.add_argument(
        "--json", dest="json_path", metavar="PATH", help="write the JSON report (- for stdout)"
    )
    parser.add_argument("--html", dest="html_path", metavar="PATH", help="write the HTML report")
    parser.add_argument("--fail-on-drift", action="store_true", help="exit 1 when any feature drifted")
    parser.add_argument(
        "--features",
        type=lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        default=None,
        metavar="A,B",
        help="compare only these features",
    )
    parser.add_argument(
        "--min-effect",
        action="append",
        default=[],
        metavar="FEATURE=VALUE",
        help="minimum effect for DRIFT of a feature, in its default metric (latency_ms=0.3) or another "
        "(latency_ms=psi:0.25); 0 means significance alone; repeatable",
    )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="only current traces started at or after TIME (ISO date/time, or a duration ago: 24h, 7d)",
    )
    parser.add_argument("--until", metavar="TIME", help="only current traces started before TIME")
    parser.add_argument("--baseline-since", metavar="TIME", help="the same for the baseline's traces")
    parser.add_argument("--baseline-until", metavar="TIME", help="the same for the baseline's traces")
    parser.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local (numpy/scipy, default) or spark (PySpark DataFrames: Parquet/Delta paths, tables, "
        "serving inference tables; pip install 'pytest-llmops[spark]')",
    )
    parser.add_argument(
        "--unpaired", action="store_true", help="never pair numeric features by prompt (default: auto)"
    )
    log = parser.add_mutually_exclusive_group()
    log.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    log.add_argument(
        "--log-run",
        metavar="RUN_ID",
        help="log the report into this run (default: a new run tagged llmops.role=drift in the "
        "current REF's experiment)",
    )
    parser.set_defaults(command=run_drift)


def run_drift(args: argparse.Namespace) -> int:
    """Run the ``drift`` command: one line on stderr and an exit code for every failure."""
    from pytest_llmops import extras

    extras.require("pytest-llmops drift", *extras.DRIFT_MODULES)  # main() prints it, exit 2
    from pytest_llmops.monitoring.command import DriftFailure, run

    try:
        return run(args)
    except DriftFailure as failure:
        print(f"pytest-llmops drift: {failure}", file=sys.stderr)
        return failure.exit_code


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be a number between 0 and 1, got {text}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"alpha must be between 0 and 1, got {text}")
    return value
