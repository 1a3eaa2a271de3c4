"""The secret scanner: runs before every cassette write and as ``pytest-llmops scan``.

A finding names the file, the line and the rule, never the secret itself.

Each file is read twice: as text (the rules and the known values in any encoding, base64
broken over lines included), and through its structure, every string as the YAML or JSON
parser decodes it: ``!!binary`` bodies, YAML escapes and folded lines, JSON ``\\u``
escapes. What only the decoded string shows is reported at the line its value starts on.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_llmops.secrets.identities import PLACEHOLDER_DOMAIN
from pytest_llmops.secrets.known import Kind, KnownSecrets

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Placeholder GUIDs, as in Azure's own API examples: the first group is one repeated digit
# (00000000-..., 11111111-..., 77777777-b0c6-...). Real subscription ids are random.
_PLACEHOLDER_GUID = r"(?!([0-9a-fA-F])\1{7}-)"
# A name, then its value: on the same line (JSON, also escaped inside a YAML string; query
# strings) or as the first item of a YAML list on the next line (how vcrpy writes headers).
_VALUE_AFTER = r"""\\*["']?\s*[:=]\s*(?:\n\s*-\s*)?\\*["']?"""
_KEY_NAME = (
    r"(?i:api[-_]?key|key[12]|subscription[-_]?key|primary_?key|secondary_?key|client[-_]?secret"
    r"|password|secret|access[-_]?key)"
)
_IDENTITY_NAME = (
    r"(?i:createdBy|lastModifiedBy|updatedBy|userName|user_name|single_user_name|creator_user_name"
    r"|owner_user_name|run_as_user_name)"
)
_ALNUM = "A-Za-z0-9"

RULES: dict[str, re.Pattern[str]] = {
    "azure-api-key (32 hex characters)": re.compile(
        _KEY_NAME + _VALUE_AFTER + rf"(?:[0-9a-f]{{32}}|[0-9A-F]{{32}})(?![{_ALNUM}])"
    ),
    "azure-api-key (84 characters)": re.compile(
        rf"(?<![{_ALNUM}])[{_ALNUM}]{{52}}JQQJ9[9DH][{_ALNUM}][A-L][{_ALNUM}]{{16}}[A-Za-z][{_ALNUM}]{{7}}(?![{_ALNUM}])"
        rf"|{_KEY_NAME}{_VALUE_AFTER}[{_ALNUM}]{{84}}(?![{_ALNUM}])"
    ),
    "databricks-token (dapi...)": re.compile(r"\bdapi[0-9a-f]{32}(?:-\d+)?\b"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "sas-signature (sig=)": re.compile(r"[?&;]sig=(?!%3Credacted|<redacted)[A-Za-z0-9%+/=]{16,}"),
    "pem-private-key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "subscription-id in path": re.compile(rf"/subscriptions/{_PLACEHOLDER_GUID}{_GUID}"),
    "bearer-token": re.compile(r"\bBearer\s+(?!<redacted>)[A-Za-z0-9._~+/=-]{20,}"),
    "storage-account-key": re.compile(r"AccountKey=(?!<redacted>)[A-Za-z0-9+/=]{20,}"),
    "openai-api-key (sk-...)": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}"),
    "identity (an e-mail address in a user field)": re.compile(
        _IDENTITY_NAME + _VALUE_AFTER
        + rf"[A-Za-z0-9._%+-]+@(?!{PLACEHOLDER_DOMAIN.pattern}(?![A-Za-z0-9.-]))"
        + r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    ),
}
"""Rule name -> pattern of something that must never be written to disk."""

KNOWN_RULES: dict[Kind, str] = {
    "secret": "known-secret (a secret value of this session or environment)",
    "id": "known-id (a subscription or tenant id, raw or base64)",
    "identity": "identity (a user's e-mail or object id)",
}
SUBSCRIPTION_IN_TOKEN = "subscription-id in a base64 token"
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
_SUBSCRIPTION_PATH = re.compile(rf"(?i)/subscriptions/{_PLACEHOLDER_GUID}{_GUID}")


@dataclass(frozen=True)
class Finding:
    """One secret-shaped value: where, and which rule; never the value."""

    path: str
    line: int
    rule: str

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def _known(values: KnownSecrets | Iterable[str]) -> KnownSecrets:
    if isinstance(values, KnownSecrets):
        return values
    known = KnownSecrets()
    for value in values:
        known.add(value)
    return known


def _shapes(text: str, known: KnownSecrets) -> Iterator[tuple[int, str]]:
    """``(offset, rule)`` of everything secret-shaped in one text."""
    for rule, pattern in RULES.items():
        for match in pattern.finditer(text):
            yield match.end() - 1, rule
    for hit in known.find(text):
        yield hit.start, KNOWN_RULES[hit.kind]
    for match in _BASE64_RUN.finditer(text):
        if any(_SUBSCRIPTION_PATH.search(decoded) for decoded in _decodings(match.group())):
            yield match.start(), SUBSCRIPTION_IN_TOKEN


def _decodings(run: str) -> Iterator[str]:
    """A base64-looking run decoded, as a whole and from after each ``/`` (a token at the end
    of a URL path)."""
    slashes = [i + 1 for i, char in enumerate(run) if char == "/"]
    # A few starts are enough (a path's first segments, its last ones): a long blob with many
    # slashes is not decoded from each of them.
    for start in dict.fromkeys([0, *slashes[:4], *slashes[-4:]]):
        token = run[start:].replace("-", "+").replace("_", "/").rstrip("=")
        if len(token) < 24:
            break
        try:
            yield base64.b64decode(token + "=" * (-len(token) % 4)).decode("latin-1")
        except (binascii.Error, ValueError):
            continue


def scan_text(text: str, known_secrets: KnownSecrets | Iterable[str] = ()) -> list[tuple[int, str]]:
    """``(line, rule)`` of every secret-shaped value in ``text`` (a YAML or JSON cassette),
    in line order.

    ``known_secrets``: exact values that must not appear in any form (the session's
    secrets, ids and identities, or plain strings).
    """
    known = _known(known_secrets)
    hits: set[tuple[int, str]] = set()

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    for offset, rule in _shapes(text, known):
        hits.add((line_of(offset), rule))
    for line, value in _decoded_strings(text):
        hits.update((line, rule) for _, rule in _shapes(value, known))
    return sorted(hits)


def _decoded_strings(text: str) -> Iterator[tuple[int, str]]:
    """``(line, string)`` for each string of the document whose decoded value does not appear
    as such in the text (escaped, folded, or a ``!!binary`` body)."""
    if text.lstrip()[:1] in ("{", "["):
        yield from _json_strings(text)
    else:
        yield from _yaml_strings(text)


def _yaml_strings(text: str) -> Iterator[tuple[int, str]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            value = node.value
            if node.tag == "tag:yaml.org,2002:binary":
                try:
                    value = base64.b64decode("".join(value.split())).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    continue
            elif value in text:
                continue
            yield node.start_mark.line + 1, value
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))


def _json_strings(text: str) -> Iterator[tuple[int, str]]:
    try:
        data = json.loads(text)
    except ValueError:
        return
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node not in text:
            encoded = json.dumps(node)[1:21]
            offset = text.find(encoded)
            yield (text.count("\n", 0, offset) + 1 if offset >= 0 else 1), node


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


def missing_paths(paths: Iterable[str | Path]) -> list[str]:
    """The paths among ``paths`` that are neither a file nor a folder."""
    return [str(p) for p in paths if not Path(p).exists()]


def scan_paths(
    paths: Iterable[str | Path], known_secrets: KnownSecrets | Iterable[str] = ()
) -> list[Finding]:
    """Scan files and folders (YAML and JSON files below a folder)."""
    findings: list[Finding] = []
    known = _known(known_secrets)
    for path in _files(paths):
        text = path.read_text(encoding="utf-8", errors="replace")
        findings.extend(Finding(str(path), line, rule) for line, rule in scan_text(text, known))
    return findings
