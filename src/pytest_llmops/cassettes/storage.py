"""Reading and writing cassette files in vcrpy's format.

Loading uses vcrpy's safe YAML loader (libyaml when available) and turns every way a
file can be unusable into one :class:`CassetteError` that names the file and the
problem. Writing is atomic (temporary file in the same folder, then ``os.replace``) and
happens only after the secret scanner found nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pytest_llmops.errors import CassetteError

Interaction = tuple[Any, dict[str, Any]]


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
        if "status" not in response and "status_code" not in response:
            raise CassetteError(path, f"interaction {number}'s response has no status.")


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


def _parse_file(path: Path) -> tuple[list[Interaction], dict[str, Any]]:
    from vcr.request import Request
    from vcr.serializers.compat import convert_to_bytes

    try:
        raw = path.read_bytes()
    except IsADirectoryError as exc:
        raise CassetteError(path, "it is a folder, not a file.") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CassetteError(path, f"not UTF-8 text (byte {exc.start}); is it a cassette?") from exc
    data = parse(path, text)
    interactions: list[Interaction] = []
    for number, item in enumerate(data["interactions"], start=1):
        try:
            request = Request._from_dict(item["request"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise CassetteError(path, f"interaction {number}'s request is malformed ({exc!r}).") from exc
        interactions.append((request, convert_to_bytes(item["response"])))
    metadata = data.get("metadata") or {}
    return interactions, metadata if isinstance(metadata, dict) else {}


def dump(interactions: list[Interaction], metadata: dict[str, Any]) -> str:
    """The YAML text of a cassette, as vcrpy writes it."""
    from vcr.serialize import serialize
    from vcr.serializers import yamlserializer

    cassette_dict: dict[str, Any] = {
        "requests": [request for request, _ in interactions],
        "responses": [response for _, response in interactions],
    }
    if metadata:
        cassette_dict["metadata"] = metadata
    return str(serialize(cassette_dict, yamlserializer))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so that readers
    (other xdist workers, an interrupted run) never see a half-written cassette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
