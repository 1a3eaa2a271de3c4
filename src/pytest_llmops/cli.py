"""The ``pytest-llmops`` command: ``scan`` cassettes for secrets, ``sweep`` leaked cloud
resources, ``drift`` between MLflow runs.

Each subcommand lives with its domain and registers itself here through an
``add_parser(subparsers)`` function; heavy imports happen inside the command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Command = Callable[[argparse.Namespace], int]


SCAN_FOUND = 1
SCAN_USAGE = 2
"""Exit codes of ``scan``: 0 clean, 1 secrets found, 2 a path that does not exist."""
MISSING_EXTRA = 2
"""Exit code of any command whose optional extra is not installed."""


def _scan(args: argparse.Namespace) -> int:
    import os

    from pytest_llmops.secrets.known import KnownSecrets
    from pytest_llmops.secrets.scan import missing_paths, scan_paths

    missing = missing_paths(args.paths)
    if missing:
        print(
            f"pytest-llmops scan: no such file or folder: {', '.join(missing)}. Pass the cassette "
            "folder (for example `pytest-llmops scan cassettes/`).",
            file=sys.stderr,
        )
        return SCAN_USAGE
    # The secret variables of this environment (and its subscription and tenant ids), in any form.
    findings = scan_paths(args.paths, KnownSecrets.from_environ(os.environ))
    for finding in findings:
        print(finding.describe())
    if findings:
        files = len({f.path for f in findings})
        print(
            f"{len(findings)} secret-shaped value(s) in {files} file(s). Scrub them (or delete the "
            "cassettes and record again with `pytest --llmops-record`), then rerun "
            "`pytest-llmops scan`.",
            file=sys.stderr,
        )
        return SCAN_FOUND
    print(f"No secrets found in {', '.join(args.paths)}.")
    return 0


def _add_scan(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="look for secrets in cassettes (exit 1 on findings, 2 for a missing path)",
        description="Scan cassette files (YAML/JSON) for anything secret-shaped: API keys (32 hex "
        "and 84 characters), dapi tokens, JWTs, SAS signatures, PEM keys, bearer tokens, storage "
        "keys, sk- keys, subscription ids (also in base64 tokens), e-mail addresses in user fields, "
        "and the values of the secret environment variables (AZURE_OPENAI_API_KEY, ...) in any "
        "encoding, binary bodies included. Prints file:line and rule, never the secret. Exit "
        "codes: 0 clean, 1 findings, 2 a path that does not exist.",
    )
    parser.add_argument("paths", nargs="+", help="files or folders to scan")
    parser.set_defaults(command=_scan)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pytest-llmops`` command."""
    parser = argparse.ArgumentParser(
        prog="pytest-llmops",
        description="Tools for pytest-llmops suites: scan cassettes, sweep leaked resources, "
        "compare runs for drift.",
    )
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _add_scan(subparsers)
    for add_parser in _domain_parsers():
        add_parser(subparsers)
    return parser


def _domain_parsers() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommands contributed by the domain packages (imported lazily by their commands)."""
    parsers: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []
    from pytest_llmops.monitoring.cli import add_parser as add_drift_parser

    parsers.append(add_drift_parser)
    from pytest_llmops.sweep import add_parser as add_sweep_parser

    parsers.append(add_sweep_parser)
    return parsers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pytest-llmops`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    from pytest_llmops.errors import MissingExtra

    try:
        return command(args)
    except MissingExtra as missing:  # one line, the install command that fixes it
        print(f"pytest-llmops: {missing}", file=sys.stderr)
        return MISSING_EXTRA


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
