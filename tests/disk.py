"""Reading every file a session wrote, the MLflow store included, without disturbing it.

SQLite's locks are per process: opening and closing the store's files from this process
(where MLflow keeps connections to them) would drop those locks, and another process (the
trace helper) could then reset the WAL index under this one and corrupt the store. So the
files are read by a child process.
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import yaml

_READER = """
import struct, sys
from pathlib import Path

root = Path(sys.argv[1])
out = sys.stdout.buffer
for path in sorted(root.rglob("*")):
    if path.is_file() and path.suffix not in (".py", ".pyc"):
        name, content = str(path.relative_to(root)).encode(), path.read_bytes()
        out.write(struct.pack(">QQ", len(name), len(content)) + name + content)
"""


def written_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except the test modules pytester wrote: path -> bytes."""
    data = subprocess.run([sys.executable, "-c", _READER, str(root)], capture_output=True, check=True).stdout
    files: dict[str, bytes] = {}
    offset = 0
    while offset < len(data):
        name_length, content_length = struct.unpack_from(">QQ", data, offset)
        offset += 16
        name = data[offset : offset + name_length].decode()
        offset += name_length
        files[name] = data[offset : offset + content_length]
        offset += content_length
    return files


def cassette_strings(path: Path) -> tuple[str, list[str]]:
    """A cassette file's text, and every string in it as its reader decodes it: YAML
    escapes and folding undone, binary bodies decoded, JSON bodies decoded too."""
    from vcr.serializers.yamlserializer import _CassetteLoader

    text = path.read_text()
    found: list[str] = []
    stack: list[object] = [yaml.load(text, Loader=_CassetteLoader)]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bytes):
            stack.append(item.decode("utf-8", "replace"))
        elif isinstance(item, str):
            found.append(item)
            if item.lstrip()[:1] in ("{", "["):
                with contextlib.suppress(ValueError):
                    stack.append(json.loads(item))
    return text, found
