"""Reading and writing cassette files in vcrpy's format.

Loading uses vcrpy's safe YAML loader (libyaml when available) and turns every way a
file can be unusable into one :class:`CassetteError` that names the file and the
problem, both sides of every interaction checked before vcrpy sees them. Writing is atomic
(a temporary file in the same folder, flushed to disk, then ``os.replace``), gives the
file the permissions of the user's umask, removes what an interrupted write of the same
cassette left, and happens only after the secret scanner found nothing.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from pytest_llmops.errors import CassetteError, CassetteWriteError

Interaction = tuple[Any, dict[str, Any]]
Raw = dict[str, Any]
"""One interaction as stored in the file: ``{"request": {...}, "response": {...}}``."""


def _yaml_loader() -> type:
    # vcrpy's loader is libyaml's CSafeLoader plus the few harmless tags vcrpy writes.
    from vcr.serializers.yamlserializer import _CassetteLoader

    return _CassetteLoader  # type: ignore[no-any-return]


def parse(path: Path, text: str) -> dict[str, Any]:
    """Parse the text of a cassette file, or raise :class:`CassetteError`."""
    if not text.strip():
        raise CassetteError(path, "the file is empty (a truncated write?).")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CassetteError(path, f"not valid JSON ({exc}).") from exc
    else:
        try:
            data = yaml.load(text, Loader=_yaml_loader())  # vcrpy's safe loader
        except yaml.constructor.ConstructorError as exc:
            mark = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
            raise CassetteError(
                path,
                f"it carries a YAML tag the safe loader refuses{mark} ({exc.problem}). Cassettes are "
                "never loaded with an unsafe loader, since such tags can run code.",
            ) from exc
        except yaml.YAMLError as exc:
            problem_mark = getattr(exc, "problem_mark", None)
            where = f" at line {problem_mark.line + 1}" if problem_mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise CassetteError(path, f"not valid YAML{where}: {problem} (a truncated file?).") from exc
    validate(path, data)
    return data  # type: ignore[no-any-return]


def validate(path: Path, data: object) -> None:
    """Check the structure vcrpy expects, with a message that says what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        raise CassetteError(
            path, "not a vcrpy cassette: expected a mapping with a list of `interactions`."
        )
    for number, interaction in enumerate(data["interactions"], start=1):
        request = interaction.get("request") if isinstance(interaction, dict) else None
        response = interaction.get("response") if isinstance(interaction, dict) else None
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise CassetteError(path, f"interaction {number} lacks a `request` or a `response` mapping.")
        if "parsed_body" in request or "parsed_body" in response:
            raise CassetteError(
                path,
                f"interaction {number} stores its body as `parsed_body`, a serializer extension "
                "(pydantic-ai's) that vcrpy's format does not have.",
                "Load it with the serializer that wrote it, or record it again with "
                "`pytest --llmops-record` to get a standard vcrpy cassette.",
            )
        missing = [key for key in ("method", "uri") if key not in request]
        if missing:
            raise CassetteError(path, f"interaction {number}'s request has no {' or '.join(missing)}.")
        problem = response_problem(response)
        if problem:
            raise CassetteError(path, f"interaction {number}'s response {problem}.")


def response_problem(response: dict[str, Any]) -> str | None:
    """What is wrong with a stored response, or None. Two layouts replay: vcrpy's
    (``status: {code, message}``, ``headers``, ``body: {string}``) and the older httpx one
    (``status_code``, ``headers``, ``content``)."""
    headers = response.get("headers")
    if "headers" not in response:
        return "has no `headers`"
    if not isinstance(headers, dict) or not all(
        isinstance(value, (str, list)) for value in headers.values()
    ):
        return f"has `headers: {_show(headers)}`, not a mapping of names to lists of values"
    if "status" not in response and "status_code" in response:
        code = response["status_code"]
        if not _is_status(code):
            return f"has `status_code: {_show(code)}`, not an HTTP status such as 200"
        if not isinstance(response.get("content"), (str, bytes)):
            return "has no `content` (the body of the older httpx layout)"
        return None
    status = response.get("status")
    if "status" not in response:
        return "has no `status`"
    if not isinstance(status, dict):
        hint = " (a truncated file?)" if status is None else ""
        return f"has `status: {_show(status)}`, not a mapping such as `{{code: 200, message: OK}}`{hint}"
    if not _is_status(status.get("code")):
        return f"has `status.code: {_show(status.get('code'))}`, not an HTTP status such as 200"
    if not isinstance(status.get("message", ""), str):
        return f"has `status.message: {_show(status.get('message'))}`, not a text such as OK"
    body = response.get("body")
    if "body" not in response:
        return "has no `body`"
    text = body.get("string", 0) if isinstance(body, dict) else 0
    if text is not None and not isinstance(text, (str, bytes)):
        return f"has `body: {_show(body)}`, not a mapping such as `{{string: '...'}}`"
    return None


def _is_status(code: object) -> bool:
    return isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599


def _show(value: object, limit: int = 60) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


_loaded: dict[Path, tuple[tuple[int, int], list[Interaction], dict[str, Any]]] = {}
_LOADED_MAX = 256


def load(path: Path) -> tuple[list[Interaction], dict[str, Any]]:
    """Load ``(interactions, metadata)`` from a cassette file, or raise :class:`CassetteError`.

    A missing file raises ``FileNotFoundError``. Files already loaded in this process and
    unchanged since (same size and mtime) are not parsed again: many tests share one
    cassette, and every xdist worker loads its own. Callers get a fresh list; the
    interactions themselves are never modified (scrubbing works on copies).
    """
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _loaded.get(path)
    if cached is not None and cached[0] == stamp:
        return list(cached[1]), dict(cached[2])
    interactions, metadata = _parse_file(path)
    if len(_loaded) >= _LOADED_MAX:
        _loaded.pop(next(iter(_loaded)))
    _loaded[path] = (stamp, interactions, metadata)
    return list(interactions), dict(metadata)


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except IsADirectoryError as exc:
        raise CassetteError(path, "it is a folder, not a file.") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CassetteError(path, f"not UTF-8 text (byte {exc.start}); is it a cassette?") from exc
    return parse(path, text)


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    metadata = data.get("metadata") or {}
    return metadata if isinstance(metadata, dict) else {}


def _parse_file(path: Path) -> tuple[list[Interaction], dict[str, Any]]:
    from vcr.request import Request
    from vcr.serializers.compat import convert_to_bytes

    data = _read(path)
    interactions: list[Interaction] = []
    for number, item in enumerate(data["interactions"], start=1):
        try:
            request = Request._from_dict(item["request"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise CassetteError(path, f"interaction {number}'s request is malformed ({exc!r}).") from exc
        interactions.append((request, convert_to_bytes(item["response"])))
    return interactions, _metadata(data)


def load_raw(path: Path) -> tuple[list[Raw], dict[str, Any]]:
    """The interactions of a file as stored (to be written back byte for byte), and its
    metadata; nothing when the file does not exist."""
    if not path.is_file():
        return [], {}
    data = _read(path)
    return list(data["interactions"]), _metadata(data)


def to_raw(interactions: list[Interaction]) -> list[Raw]:
    """Recorded ``(request, response)`` pairs as they are stored (copies: vcrpy's own
    conversion changes the response in place)."""
    from vcr.serializers.compat import convert_to_unicode

    return [
        {
            "request": convert_to_unicode(request._to_dict()),
            "response": convert_to_unicode(copy.deepcopy(response)),
        }
        for request, response in interactions
    ]


def dump(interactions: list[Raw], metadata: dict[str, Any]) -> str:
    """The YAML text of a cassette, as vcrpy writes it (its dumper, its layout)."""
    from vcr.serialize import CASSETTE_FORMAT_VERSION
    from vcr.serializers import yamlserializer

    data: dict[str, Any] = {"version": CASSETTE_FORMAT_VERSION, "interactions": interactions}
    if metadata:
        data["metadata"] = metadata
    return str(yamlserializer.serialize(data))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


LEFTOVER_AGE_S = 3600.0
"""A temporary file of another cassette this old was left by a killed run (no write lasts
that long)."""


def _remove_leftovers(path: Path) -> None:
    """Temporary files a killed write left: this cassette's (callers hold its lock), and
    other cassettes' of this folder once they are old."""
    now = time.time()
    for leftover in path.parent.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if leftover.name.startswith(f".{path.name}.") or now - leftover.stat().st_mtime > LEFTOVER_AGE_S:
                leftover.unlink()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, flushed to disk, and a rename,
    so that readers (other xdist workers, an interrupted run) never see a half-written
    cassette. The file gets the permissions of the umask (0644 typically). Temporary files
    left by a killed run are removed first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise


_WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file would exceed the size this process may write (disk full or file size limit)",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "it is not writable",
    errno.EPERM: "it is not writable",
}


def _write_error(path: Path, exc: OSError) -> CassetteWriteError:
    why = _WHY.get(exc.errno or 0, exc.strerror or str(exc))
    return CassetteWriteError(path, why)
