"""The secret scanner: runs before every cassette write and as ``pytest-llmops scan``.

A finding names the file, the line and the rule, never the secret itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Placeholder GUIDs, as in Azure's own API examples: the first group is one repeated digit
# (00000000-..., 11111111-..., 77777777-b0c6-...). Real subscription ids are random.
_PLACEHOLDER_GUID = r"(?!([0-9a-fA-F])\1{7}-)"
# A key-like name, then the value: on the same line (JSON, query) or as the first item of a
# YAML list on the next line (how vcrpy writes headers).
_KEY_NAME = (
    r"(?i:api[-_]?key|key[12]|subscription[-_]?key|primary_?key|secondary_?key|client[-_]?secret"
    r"|password|secret|access[-_]?key)"
)

RULES: dict[str, re.Pattern[str]] = {
    "azure-api-key (32 hex characters)": re.compile(
        _KEY_NAME + r"""["']?\s*[:=]\s*(?:\n\s*-\s*)?["']?[0-9a-f]{32}(?![0-9A-Za-z])"""
    ),
    "databricks-token (dapi...)": re.compile(r"\bdapi[0-9a-f]{32}(?:-\d+)?\b"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "sas-signature (sig=)": re.compile(r"[?&;]sig=(?!%3Credacted|<redacted)[A-Za-z0-9%+/=]{16,}"),
    "pem-private-key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "subscription-id in path": re.compile(rf"/subscriptions/{_PLACEHOLDER_GUID}{_GUID}"),
    "bearer-token": re.compile(r"\bBearer\s+(?!<redacted>)[A-Za-z0-9._~+/=-]{20,}"),
    "storage-account-key": re.compile(r"AccountKey=(?!<redacted>)[A-Za-z0-9+/=]{20,}"),
    "openai-api-key (sk-...)": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}"),
}
"""Rule name -> pattern of something that must never be written to disk."""


@dataclass(frozen=True)
class Finding:
    """One secret-shaped value: where, and which rule; never the value."""

    path: str
    line: int
    rule: str

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def scan_text(text: str, known_secrets: Iterable[str] = ()) -> list[tuple[int, str]]:
    """``(line, rule)`` of every secret-shaped value in ``text``, in line order.

    ``known_secrets`` are exact values (the session's secret variables) that must not appear.
    """
    hits: set[tuple[int, str]] = set()

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    for rule, pattern in RULES.items():
        for match in pattern.finditer(text):
            hits.add((line_of(match.end() - 1), rule))
    for secret in known_secrets:
        if not secret:
            continue
        start = text.find(secret)
        while start != -1:
            hits.add((line_of(start), "known-secret (value of a secret environment variable)"))
            start = text.find(secret, start + 1)
    return sorted(hits)


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml", ".json"}
            )
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")


def scan_paths(paths: Iterable[str | Path], known_secrets: Iterable[str] = ()) -> list[Finding]:
    """Scan files and folders (YAML and JSON files below a folder)."""
    findings: list[Finding] = []
    secrets = list(known_secrets)
    for path in _files(paths):
        text = path.read_text(encoding="utf-8", errors="replace")
        findings.extend(Finding(str(path), line, rule) for line, rule in scan_text(text, secrets))
    return findings
