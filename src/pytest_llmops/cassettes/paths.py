"""Where a test's cassette lives: one place decides it.

``<cassette_dir>/<test module path without .py>/<test name>.yaml``, with the class in the
name (``TestChat.test_joke``) and parametrisation kept readable but short: ids longer than
``MAX_NAME`` characters are cut and suffixed with a stable hash of the full id. Ids that
differ only in characters a file name cannot hold (``a/b``, ``a b``, ``a?b`` all read
``a_b``) get a hash of the full id too, but only where two of them would share a file:
every other name stays as it always was, so existing cassettes keep their paths.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MAX_NAME = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "_"


def _parts(nodeid: str) -> tuple[str, str, str]:
    name = ".".join(nodeid.split("::")[1:] or [nodeid])
    base, _, params = name.partition("[")
    return name, base, params[:-1] if params.endswith("]") else params


def is_lossy(nodeid: str) -> bool:
    """Whether the file name of ``nodeid`` lost characters of its id (then another id may
    map to the same name)."""
    _, base, params = _parts(nodeid)
    return _safe(base) != base or (bool(params) and _safe(params) != params)


def test_name(nodeid: str, distinct: bool = False) -> str:
    """The file name (without suffix) for a test id such as ``tests/t.py::TestA::test_b[x-1]``;
    ``distinct`` adds a hash of the full id (for ids that would otherwise share a file)."""
    name, base, params = _parts(nodeid)
    safe = _safe(base)
    if params:
        safe = f"{safe}-{_safe(params)}"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
    if len(safe) > MAX_NAME:
        safe = f"{safe[: MAX_NAME - 11]}-{digest}"
    elif distinct:
        safe = f"{safe}-{digest[:8]}"
    return safe


def module_dir(nodeid: str) -> Path:
    """The folder for a test module: its path relative to the rootdir, without ``.py``."""
    module = nodeid.split("::", 1)[0]
    path = Path(module)
    return path.with_suffix("") if path.suffix == ".py" else path


def cassette_path(
    cassette_dir: Path, nodeid: str, name: str | None = None, *, distinct: bool = False
) -> Path:
    """The cassette file of a test; ``name`` (from ``llmops_cassette(name=...)``) is relative
    to the cassette folder and may omit the ``.yaml`` suffix; ``distinct`` as in :func:`test_name`."""
    if name:
        path = cassette_dir / name
        return path if path.suffix in {".yaml", ".yml", ".json"} else path.with_name(path.name + ".yaml")
    return cassette_dir / module_dir(nodeid) / f"{test_name(nodeid, distinct)}.yaml"


def session_cassette_path(cassette_dir: Path, fixture: str) -> Path:
    """The cassette of a session-scoped fixture."""
    return cassette_dir / "_session" / f"{_safe(fixture)}.yaml"
