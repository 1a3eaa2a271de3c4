"""Run the lab double in the foreground: ``python -m tests.double --port 8765``.

Prints the URL and the ``export`` lines that point the SDKs (or the plugin in live mode) at it.
"""

from __future__ import annotations

import argparse
import shlex
import threading

from .server import LabDouble


def main(argv: list[str] | None = None) -> None:
    """Parse the options, start the double and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.double", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument(
        "--transition-seconds", type=float, default=None, help="cluster state transition time"
    )
    parser.add_argument("--tokens-per-minute", type=int, default=None, help="Azure OpenAI TPM limit")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    double = LabDouble(args.host, args.port, verbose=args.verbose)
    if args.transition_seconds is not None:
        double.databricks.transition_seconds = args.transition_seconds
    double.openai.tokens_per_minute = args.tokens_per_minute
    double.start()
    print(f"Lab double listening on {double.url}", flush=True)
    for name, value in double.client_env().items():
        print(f"export {name}={shlex.quote(value)}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()


if __name__ == "__main__":
    main()
