"""What a pytest run asked ``time.sleep`` for, and from which module: the proof that a replay
did not wait (and that its recording did), without timing anything.

A test adds :data:`CONFTEST` to the conftest of the project it runs: every ``time.sleep`` call
of that run is still made (nothing is patched away), and logged with its caller's module to
``sleeps.jsonl`` in the run's root (one line per process, xdist workers included).
:func:`slept` reads and removes the log. The SDKs' waiters (azure-core's pollers, the openai
and Databricks SDKs' retries and waiters, the plugin's limiter) call ``time.sleep`` through
their module's ``time``; during replay the cassettes' no-sleep clock replaces that name, so
a replay that does not wait logs nothing from them.
"""

from __future__ import annotations

import json
from pathlib import Path

LOG = "sleeps.jsonl"

CONFTEST = f'''
import json as _json
import sys as _sys
import time as _time

_real_sleep = _time.sleep
_slept = []


def _logged_sleep(seconds):
    _slept.append([float(seconds), _sys._getframe(1).f_globals.get("__name__", "?")])
    _real_sleep(seconds)


def pytest_configure(config):
    _time.sleep = _logged_sleep


def pytest_unconfigure(config):
    _time.sleep = _real_sleep
    with open(config.rootpath / "{LOG}", "a") as log:
        log.write(_json.dumps(_slept) + "\\n")
'''


def slept(root: Path, *modules: str) -> list[tuple[float, str]]:
    """The sleeps the runs in ``root`` asked for since the last call, from modules whose name
    starts with one of ``modules`` (all, with none); the log is removed."""
    path = root / LOG
    found: list[tuple[float, str]] = []
    for line in path.read_text().splitlines():
        found += [(float(seconds), module) for seconds, module in json.loads(line)]
    path.unlink()
    return [(seconds, module) for seconds, module in found if not modules or module.startswith(modules)]
