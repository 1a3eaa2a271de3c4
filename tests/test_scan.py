"""``pytest-llmops scan``, black-box through its entry point: each rule the README promises
finds its secret in a cassette file (and names the file, the line and the rule, never the
value); the values of the secret environment variables are found in any encoding, binary
bodies included; a missing path is a usage error."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_llmops.cli import main

KEY_84 = "Xq7" * 17 + "a" + "JQQJ99" + "BA" + "ACOGb4Zkkkkkkkkk" + "C" + "d1ef23k"
JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQifQ.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA"


def _cassette(path: Path, body: object, headers: dict[str, list[str]] | None = None) -> Path:
    """A one-interaction vcrpy cassette whose response carries ``body`` (bytes: binary)."""
    interaction = {
        "request": {"method": "GET", "uri": "https://management.azure.com/x", "body": None, "headers": {}},
        "response": {
            "status": {"code": 200, "message": "OK"},
            "headers": headers or {"content-type": ["application/json"]},
            "body": {"string": body},
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump({"interactions": [interaction], "version": 1}))
    return path


def _scan(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, str, str]:
    code = main(["scan", *map(str, paths)])
    out = capsys.readouterr()
    return code, out.out, out.err


RULE_CASES = {
    "pem-private-key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "jwt": json.dumps({"id_token_hint": JWT}),
    "openai-api-key (sk-...)": json.dumps({"note": "sk-proj-" + "Ab1" * 12}),
    "bearer-token": "Authorization was Bearer abcdefghijklmnopqrstuvwxyz0123",
    "storage-account-key": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + "c2VjcmV0" * 6 + "==",
    "databricks-token (dapi...)": json.dumps({"token": "dapi" + "fedcba9876543210" * 2}),
    "azure-api-key (32 hex characters)": json.dumps({"key1": "0123456789abcdef0123456789abcdef"}),
    "azure-api-key (84 characters)": json.dumps({"value": KEY_84}),
    "subscription-id in path": "/subscriptions/3f2a6b1c-1234-4abc-9def-0123456789ab/resourceGroups/rg",
    "identity (an e-mail address in a user field)": json.dumps({"systemData": {"createdBy": "alice@contoso.com"}}),
}


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_rule_finds_its_secret(tmp_path: Path, capsys, rule: str):
    path = _cassette(tmp_path / "cassettes" / "a.yaml", RULE_CASES[rule])
    code, out, err = _scan(capsys, tmp_path / "cassettes")
    assert code == 1
    assert f": {rule}" in out, out
    assert out.startswith(f"{path}:")
    assert "pytest --llmops-record" in err


@pytest.mark.parametrize("placeholder", [
    json.dumps({"systemData": {"createdBy": "user-3f2a9c1b@example.com"}}),
    json.dumps({"creator_user_name": "test@test.com"}),
    "Authorization: Bearer <redacted>",
    json.dumps({"key1": "<redacted>"}),
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg",
])
def test_placeholders_are_not_findings(tmp_path: Path, capsys, placeholder: str):
    _cassette(tmp_path / "a.yaml", placeholder)
    assert _scan(capsys, tmp_path)[0] == 0


def test_upper_case_hex_keys_under_key_like_names(tmp_path: Path, capsys):
    _cassette(tmp_path / "a.yaml", "{}", {"Ocp-Apim-Subscription-Key": ["0123456789ABCDEF0123456789ABCDEF"]})
    code, out, _ = _scan(capsys, tmp_path)
    assert code == 1 and "azure-api-key (32 hex characters)" in out


def test_an_84_character_key_in_a_binary_body_at_any_offset(tmp_path: Path, capsys):
    """The body is stored as ``!!binary`` base64 wrapped at 76 columns: the key is cut over
    lines differently at each offset."""
    for offset in range(120):
        _cassette(tmp_path / f"o{offset:03}.yaml", b"\xff" * offset + KEY_84.encode() + b"\xfe\x00")
    assert "!!binary" in (tmp_path / "o000.yaml").read_text()
    code, out, _ = _scan(capsys, tmp_path)
    assert code == 1
    flagged = {line.split(":", 1)[0] for line in out.splitlines() if "azure-api-key (84 characters)" in line}
    assert len(flagged) == 120
    assert KEY_84 not in out


KNOWN = "Plain~value+not.shaped-ü-42"
"""A secret variable's value that no rule would recognise: only its known value can."""


def _known_forms() -> dict[str, object]:
    raw = KNOWN.encode()
    return {
        "raw": json.dumps({"text": f"the key is {KNOWN}"}, ensure_ascii=False),
        "escaped": '{"text":"' + KNOWN.replace("+", "\\u002B").replace("~", "\\u007e").replace("ü", "\\u00fc") + '"}',
        "urlencoded": "https://x.invalid/?q=" + "Plain%7Evalue%2Bnot.shaped-%C3%BC-42",
        **{f"base64_{n}": base64.b64encode(b"ab"[:n] + raw + b"!").decode() for n in range(3)},
        "base64_wrapped": "\n".join(base64.encodebytes(b"x" * 70 + raw).decode().split("\n")),
        "binary": b"\xff\x00" * 37 + raw + b"\xfe",
    }


@pytest.mark.parametrize("form", sorted(_known_forms()))
def test_the_values_of_secret_variables_are_found_in_any_form(tmp_path: Path, capsys, monkeypatch, form: str):
    _cassette(tmp_path / "a.yaml", _known_forms()[form])
    assert _scan(capsys, tmp_path)[0] == 0  # nothing secret-shaped without the variable
    monkeypatch.setenv("ARM_CLIENT_SECRET", KNOWN)
    code, out, _ = _scan(capsys, tmp_path)
    assert code == 1 and "known-secret" in out, out
    assert KNOWN not in out


def test_subscription_ids_inside_base64_tokens(tmp_path: Path, capsys, monkeypatch):
    subscription = "3f2a6b1c-1234-4abc-9def-0123456789ab"
    path_token = base64.b64encode(f"/subscriptions/{subscription}/resourceGroups/rg;op".encode()).decode()
    _cassette(tmp_path / "a.yaml", "{}", {"Azure-AsyncOperation": [f"https://management.azure.com/operations/{path_token}"]})
    code, out, _ = _scan(capsys, tmp_path)
    assert code == 1 and "subscription-id in a base64 token" in out
    # A token of the bare id: found once the id is known (AZURE_SUBSCRIPTION_ID).
    bare = base64.b64encode(f"{subscription};7fc0b38f".encode()).decode()
    _cassette(tmp_path / "a.yaml", "{}", {"Location": [f"https://management.azure.com/operationResults/{bare}"]})
    assert _scan(capsys, tmp_path)[0] == 0
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", subscription)
    code, out, _ = _scan(capsys, tmp_path)
    assert code == 1 and "known-id" in out


def test_a_missing_path_is_a_usage_error(tmp_path: Path):
    missing = tmp_path / "no-such-folder"
    done = subprocess.run(
        [sys.executable, "-m", "pytest_llmops.cli", "scan", str(missing)], capture_output=True, text=True
    )
    assert done.returncode == 2  # not 1, which means "secrets found"
    assert "Traceback" not in done.stderr
    assert f"no such file or folder: {missing}" in done.stderr
    assert "pytest-llmops scan cassettes/" in done.stderr
