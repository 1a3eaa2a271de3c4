"""Where a test's cassette lives: one place decides it.

``<cassette_dir>/<test module path without .py>/<test name>.yaml``, with the class in the
name (``TestChat.test_joke``) and parametrisation kept readable but short: ids longer than
``MAX_NAME`` characters are cut and suffixed with a stable hash of the full id.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MAX_NAME = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "_"


def test_name(nodeid: str) -> str:
    """The file name (without suffix) for a test id such as ``tests/t.py::TestA::test_b[x-1]``."""
    parts = nodeid.split("::")[1:] or [nodeid]
    name = ".".join(parts)
    base, _, params = name.partition("[")
    safe = _safe(base)
    if params:
        safe = f"{safe}-{_safe(params.rstrip(']'))}"
    if len(safe) > MAX_NAME:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
        safe = f"{safe[: MAX_NAME - 11]}-{digest}"
    return safe


def module_dir(nodeid: str) -> Path:
    """The folder for a test module: its path relative to the rootdir, without ``.py``."""
    module = nodeid.split("::", 1)[0]
    path = Path(module)
    return path.with_suffix("") if path.suffix == ".py" else path


def cassette_path(cassette_dir: Path, nodeid: str, name: str | None = None) -> Path:
    """The cassette file of a test; ``name`` (from ``llmops_cassette(name=...)``) is relative
    to the cassette folder and may omit the ``.yaml`` suffix."""
    if name:
        path = cassette_dir / name
        return path if path.suffix in {".yaml", ".yml", ".json"} else path.with_name(path.name + ".yaml")
    return cassette_dir / module_dir(nodeid) / f"{test_name(nodeid)}.yaml"


def session_cassette_path(cassette_dir: Path, fixture: str) -> Path:
    """The cassette of a session-scoped fixture."""
    return cassette_dir / "_session" / f"{_safe(fixture)}.yaml"
