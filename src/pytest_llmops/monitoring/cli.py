"""``pytest-llmops drift``: compare the traces of two runs (or sessions, or experiments).

Cheap to import: numpy, scipy, mlflow and matplotlib are imported when the command runs.
Exit codes: 0 no drift (or drift without ``--fail-on-drift``), 1 drift with
``--fail-on-drift``, 2 a REF that names nothing or has no traces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REF_HELP = (
    "a run id (or run:ID; a session's parent run means all its test runs), session:ID, "
    "session:latest[@EXPERIMENT], or EXPERIMENT[:FILTER] with an MLflow run filter, "
    "e.g. \"lab:tags.llmops.mode = 'replay'\""
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``drift`` subcommand."""
    parser = subparsers.add_parser(
        "drift",
        help="compare the traces of two runs for drift (exit 1 with --fail-on-drift)",
        description="Compare the MLflow traces behind two REFs feature by feature (tokens, latency, "
        "answer length, finish reason, errors, tool calls, model, deployment, text n-grams) with "
        "two-sample tests, Benjamini-Hochberg across features. Prints a table; writes JSON and a "
        "self-contained HTML report on request; logs all three to MLflow.",
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
    """Run the ``drift`` command."""
    from pytest_llmops.monitoring.drift import DriftSettings, compare_traces
    from pytest_llmops.monitoring.sources import RefError, client_for, log_report, resolve_ref, traces_of

    try:
        settings = DriftSettings(
            alpha=args.alpha, features=args.features, pairing="off" if args.unpaired else "auto"
        )
        client = client_for(args.tracking_uri)
        resolved_base = resolve_ref(args.baseline, client)
        resolved_cur = resolve_ref(args.current, client)
        baseline = traces_of(resolved_base, client)
        current = traces_of(resolved_cur, client)
    except (RefError, ValueError) as error:
        print(f"pytest-llmops drift: {error}", file=sys.stderr)
        return 2
    for label, resolved, traces in (
        ("baseline", resolved_base, baseline),
        ("current", resolved_cur, current),
    ):
        if not traces:
            print(
                f"pytest-llmops drift: {label} REF {resolved.ref!r} ({resolved.description}) has no traces. "
                "Traces are recorded by mlflow.openai.autolog() inside a run (the llmops marker does it).",
                file=sys.stderr,
            )
            return 2

    report = compare_traces(
        baseline, current, settings=settings, baseline_label=args.baseline, current_label=args.current
    )
    text = report.to_text()
    if args.json_path == "-":
        print(report.to_json())
    else:
        print(text, end="")
        print(f"baseline: {resolved_base.description}\ncurrent: {resolved_cur.description}")
    if args.json_path and args.json_path != "-":
        _write(Path(args.json_path), report.to_json() + "\n")
    html = report.to_html() if (args.html_path or not args.no_log) else None
    if args.html_path and html is not None:
        _write(Path(args.html_path), html)
    if not args.no_log:
        run_id = log_report(
            report,
            client=client,
            run_id=args.log_run,
            experiment_id=resolved_cur.experiment_ids[0],
            html=html,
        )
        print(
            f"Logged drift/report.json, drift/report.txt, drift/report.html to MLflow run {run_id}.",
            file=sys.stderr,
        )
    return 1 if report.drifted and args.fail_on_drift else 0


def _write(path: Path, content: str) -> None:
    import os

    from pytest_llmops.secrets.known import KnownSecrets

    path.parent.mkdir(parents=True, exist_ok=True)
    # The secret variables of the environment never reach a report file.
    path.write_text(KnownSecrets.from_environ(os.environ).scrub(content), encoding="utf-8")


def _alpha(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"alpha must be between 0 and 1, got {text}")
    return value
