"""What a cassette file becomes when a test writes it, and who may write it when.

- Re-recording without churn: an interaction recorded again that equals the stored one
  except for volatile headers (``Date``, request ids, rate-limit counters, the SDK's
  ``x-stainless-*``) and a chat completion's ``id`` and ``created`` keeps the stored bytes,
  so an unchanged test leaves its file unchanged.
- Sharing: tests that name one cassette (``llmops_cassette(name=...)``) in one session merge
  their interactions into it, in order and without duplicates, also across xdist workers:
  each write happens under a file lock and merges into what the file holds by then.
- The first write of a file in a session replaces what an earlier session recorded there
  (``--llmops-record-mode=all``); later writes in the same session merge into it.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_llmops.cassettes.storage import Raw

VOLATILE_HEADERS = frozenset({
    "date", "age", "expires", "set-cookie", "cf-ray", "server-timing", "traceparent", "user-agent",
    "x-request-id", "request-id", "apim-request-id", "x-ms-request-id", "x-ms-client-request-id",
    "x-ms-correlation-request-id", "x-ms-routing-request-id", "x-correlation-id", "x-databricks-request-id",
    "x-envoy-upstream-service-time", "openai-processing-ms", "azureml-model-session", "x-ms-rai-invoked",
    "x-request-time",
})
"""Headers whose values differ on every request by nature; they never make a re-recorded
interaction count as changed."""
VOLATILE_PREFIXES = ("x-stainless-", "x-ratelimit-remaining-", "x-ratelimit-reset-")
_VOLATILE_BODY = (
    (re.compile(r'"created"\s*:\s*\d+'), '"created":0'),
    (re.compile(r'"id"\s*:\s*"chatcmpl-[^"]*"'), '"id":"chatcmpl-"'),
)
"""A chat completion's id and creation time (JSON and each chunk of a stream): new on every
answer, even when the answer is the same."""


def _volatile(name: str) -> bool:
    lowered = name.lower()
    return lowered in VOLATILE_HEADERS or lowered.startswith(VOLATILE_PREFIXES)


def _body(body: Any) -> Any:
    text = body.get("string") if isinstance(body, dict) else None
    if not isinstance(text, str):
        return body
    for pattern, replacement in _VOLATILE_BODY:
        text = pattern.sub(replacement, text)
    return {**body, "string": text}


def _side(side: Any) -> Any:
    if not isinstance(side, dict):
        return side
    headers = side.get("headers")
    if isinstance(headers, dict):
        side = {**side, "headers": {k.lower(): v for k, v in headers.items() if not _volatile(str(k))}}
    return {**side, "body": _body(side["body"])} if "body" in side else side


def comparable(interaction: Raw) -> tuple[Any, Any]:
    """An interaction without its volatile headers, for equality."""
    return _side(interaction.get("request")), _side(interaction.get("response"))


def _pair(recorded: list[Raw], stored: list[Raw]) -> list[int | None]:
    """For each recorded interaction, an equal stored one (volatile headers aside), each
    stored one used once; None where there is none."""
    pool = [comparable(item) for item in stored]
    used: set[int] = set()
    pairs: list[int | None] = []
    for item in recorded:
        key = comparable(item)
        found = next((i for i, other in enumerate(pool) if i not in used and other == key), None)
        if found is not None:
            used.add(found)
        pairs.append(found)
    return pairs


def reuse_stored(recorded: list[Raw], stored: list[Raw]) -> list[Raw]:
    """``recorded``, each interaction replaced by its equal stored one where there is one."""
    pairs = _pair(recorded, stored)
    return [item if i is None else stored[i] for item, i in zip(recorded, pairs, strict=True)]


def merge_into(stored: list[Raw], recorded: list[Raw]) -> list[Raw]:
    """``stored`` followed by the ``recorded`` interactions it does not hold yet (each stored
    interaction stands for one recorded one: a poll recorded PENDING, PENDING, RUNNING by two
    tests is kept three times, not six)."""
    pairs = _pair(recorded, stored)
    return stored + [item for item, i in zip(recorded, pairs, strict=True) if i is None]


class SessionFiles:
    """The cassette files this pytest session (all its xdist workers) has written, and a
    lock per file. ``run_dir`` is the session's shared folder; without one (a recorder
    built outside pytest) the process is the session."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self._written: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: Path) -> str:
        return hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:20]

    def written(self, path: Path) -> bool:
        """Whether a test of this session has written ``path`` already."""
        key = self._key(path)
        if key in self._written:
            return True
        return self.run_dir is not None and (self.run_dir / "written" / key).exists()

    def mark(self, path: Path) -> None:
        key = self._key(path)
        self._written.add(key)
        if self.run_dir is not None:
            folder = self.run_dir / "written"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / key).touch()

    @contextmanager
    def locked(self, path: Path) -> Iterator[None]:
        """Hold the lock of ``path`` (between threads, and between processes when there is
        a run folder)."""
        with self._lock:
            if self.run_dir is None:
                yield
                return
            from filelock import FileLock

            folder = self.run_dir / "locks"
            folder.mkdir(parents=True, exist_ok=True)
            with FileLock(str(folder / f"{self._key(path)}.lock")):
                yield
