"""Secrets in the places and encodings an adversarial pass found them written raw: binary
bodies (stored as ``!!binary`` base64 wrapped at 76 columns), a value redacted in one place
and echoed in another, multipart/form-data fields, JSON-escaped, URL-encoded and base64
forms. Each test records against the double with pytester and reads the cassette's bytes and
its decoded strings."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml

from tests.conftest import SECRET_API_KEY
from tests.disk import cassette_strings

KEY_84 = "Xq7" * 17 + "a" + "JQQJ99" + "BA" + "ACOGb4Zkkkkkkkkk" + "C" + "d1ef23k"
"""An Azure key in its current 84-character form (the key-format signature inside)."""
assert len(KEY_84) == 84
ESCAPED_SECRET = "S\u00ebcret+\u00fc~value-123"
"""Non-ASCII, ``+`` and ``~``: what JSON encoders escape (``\\u00fc``, ``\\u002B``, ``\\u007e``)."""


def _cassette(root: Path, name: str) -> tuple[str, list[str]]:
    """A written cassette's text, and every string in it as its reader decodes it."""
    return cassette_strings(root / "cassettes" / "test_echo" / f"{name}.yaml")


def _assert_absent(value: str, text: str, strings: list[str]) -> None:
    for form in {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}:
        assert form not in text, f"{value[:6]}... is in the cassette's text"
    for string in strings:
        assert value not in string, f"{value[:6]}... is in the cassette, once decoded"


@pytest.fixture
def echo(lab_double, double_env, monkeypatch):
    """Routes answering with what a real service may send back (registered per test)."""
    return lab_double


def _run(pytester: pytest.Pytester, body: str, *extra: str) -> pytest.RunResult:
    pytester.makepyfile(test_echo="import base64, os, requests\nURL = os.environ['AZURE_OPENAI_ENDPOINT']\n" + body)
    return pytester.runpytest("--llmops-record", *extra)


# -- binary bodies ----------------------------------------------------------------------
def test_known_secrets_inside_binary_bodies_are_scrubbed(pytester: pytest.Pytester, echo, monkeypatch):
    from tests.double.routing import Response

    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", KEY_84)
    payload = b"\x89PNG\r\n\x1a\n\xff" * 5 + KEY_84.encode() + b"\xfe\x00" + SECRET_API_KEY.encode() + b"\xff"
    echo.route("GET", r"/echo/binary", lambda request: Response(200, payload, {"content-type": "image/png"}))
    result = _run(pytester, """
def test_binary(llmops_cassette):
    body = os.environ["DATABRICKS_CLIENT_SECRET"].encode() + b"\\xff\\x00"
    answer = requests.get(URL + "/echo/binary", data=b"\\x80\\x81" + body, headers={"content-type": "application/octet-stream"})
    assert answer.content.startswith(b"\\x89PNG")
""")
    result.assert_outcomes(passed=1)
    text, strings = _cassette(pytester.path, "test_binary")
    assert "!!binary" in text  # stored as vcrpy stores non-UTF-8 bodies
    for value in (KEY_84, SECRET_API_KEY):
        _assert_absent(value, text, strings)
    # Same-length filler: a binary body keeps its length (length-prefixed formats stay valid).
    from vcr.serializers.yamlserializer import _CassetteLoader

    stored = yaml.load(text, Loader=_CassetteLoader)["interactions"][0]["response"]["body"]["string"]
    assert len(stored) == len(payload) and stored.startswith(b"\x89PNG")


def test_the_pre_write_check_sees_through_binary_bodies(pytester: pytest.Pytester, echo):
    """Secret-shaped values nothing knows to scrub, inside a binary body (stored as base64
    wrapped at 76 columns, at every offset): the check decodes it and refuses the write."""
    from tests.double.routing import Response

    token = "dapi" + "fedcba9876543210" * 2  # not the DATABRICKS_TOKEN the double knows
    for offset in range(0, 120, 7):
        payload = b"\xff" * offset + KEY_84.encode() + b"\xfe\x00" + token.encode() + b"\xff"
        echo.route("GET", rf"/echo/blob{offset}", lambda request, p=payload: Response(200, p, {"content-type": "image/png"}))
    result = _run(pytester, """
import pytest

@pytest.mark.parametrize("offset", range(0, 120, 7))
def test_blob(llmops_cassette, offset):
    requests.get(f"{URL}/echo/blob{offset}").raise_for_status()
""")
    result.assert_outcomes(passed=18, errors=18)
    output = result.stdout.str()
    result.stdout.fnmatch_lines(["*SecretLeak*azure-api-key (84 characters)*databricks-token (dapi...)*"])
    assert KEY_84 not in output and token not in output
    assert not list((pytester.path / "cassettes").rglob("*.yaml"))


# -- a value redacted in one place, written in another -----------------------------------
def _echo_query(request):
    from tests.double.routing import json_response

    query = request.query
    return json_response(200, {"received": query, "text": f"your code is {query.get('code')}",
                               "key": f"key={query.get('api-key')}"})


def test_a_redacted_value_is_scrubbed_where_the_response_echoes_it(pytester: pytest.Pytester, echo):
    code, api_key = "AuthCode-0.AbCdEfGh-123456", "Not+Hex/Api~Key-value-9876"
    echo.route("GET", r"/echo/query", _echo_query)
    result = _run(pytester, f"""
def test_query(llmops_cassette):
    answer = requests.get(URL + "/echo/query", params={{"code": {code!r}, "api-key": {api_key!r}, "x": "1"}})
    assert answer.json()["received"]["code"] == {code!r}
""")
    result.assert_outcomes(passed=1)
    text, strings = _cassette(pytester.path, "test_query")
    assert any("your code is <redacted>" in string for string in strings)
    for value in (code, api_key):
        _assert_absent(value, text, strings)


def test_a_value_redacted_later_is_scrubbed_from_earlier_interactions(pytester: pytest.Pytester, echo):
    from tests.double.routing import json_response

    issued = "issued-grant-0123456789abcdef"
    echo.route("GET", r"/echo/issue", lambda request: json_response(200, {"grant": issued}))
    echo.route("POST", r"/echo/redeem", lambda request: json_response(200, {"ok": True}))
    result = _run(pytester, """
def test_later(llmops_cassette):
    grant = requests.get(URL + "/echo/issue").json()["grant"]
    requests.post(URL + "/echo/redeem", data={"grant_type": "authorization_code", "code": grant}).raise_for_status()
""")
    result.assert_outcomes(passed=1)
    text, strings = _cassette(pytester.path, "test_later")
    assert any('"grant":"<redacted>"' in string for string in strings)  # the earlier answer
    assert "code=%3Credacted%3E" in text  # the later form body
    _assert_absent(issued, text, strings)


# -- multipart/form-data ---------------------------------------------------------------
def test_multipart_fields_named_like_secrets_are_scrubbed(pytester: pytest.Pytester, echo):
    from tests.double.routing import json_response

    secret, password = "multipart-client-secret-42", "multipart-password-value"
    echo.route("POST", r"/echo/upload", lambda request: json_response(200, {"size": len(request.body)}))
    result = _run(pytester, f"""
def test_upload(llmops_cassette):
    requests.post(URL + "/echo/upload",
                  data={{"client_secret": {secret!r}, "Password": {password!r}, "note": "kept"}},
                  files={{"file": ("a.bin", b"\\x00\\xff binary part", "application/octet-stream")}}).raise_for_status()
""")
    result.assert_outcomes(passed=1)
    text, strings = _cassette(pytester.path, "test_upload")
    assert any('name="note"' in s and "kept" in s for s in strings)
    for value in (secret, password):
        _assert_absent(value, text, strings)


# -- encoded forms of known secrets ----------------------------------------------------
def _escaped(value: str) -> str:
    """How .NET's encoder writes it: ``\\u00fc``, ``\\u002B`` (upper-case hex), ``\\u007e``."""
    out = []
    for char in value:
        if char == "+":
            out.append("\\u002B")
        elif char == "~":
            out.append("\\u007e")
        elif ord(char) > 127:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


ENCODED = {
    "escaped": _escaped(ESCAPED_SECRET),
    "urlencoded": quote(ESCAPED_SECRET, safe=""),
    "urlencoded_lower": quote(ESCAPED_SECRET, safe="").replace("%C3%AB", "%c3%ab"),
    "plus": quote_plus(ESCAPED_SECRET),
    "base64_0": base64.b64encode(ESCAPED_SECRET.encode()).decode(),
    "base64_1": base64.b64encode(b"u:" + ESCAPED_SECRET.encode()).decode(),
    "base64_2": base64.b64encode(b"id:" + ESCAPED_SECRET.encode()).decode(),
    "base64url_1": base64.urlsafe_b64encode(b"u:" + ESCAPED_SECRET.encode() + b"?").decode(),
}


def test_encoded_forms_of_known_secrets_are_scrubbed(pytester: pytest.Pytester, echo, monkeypatch):
    from tests.double.routing import Response

    monkeypatch.setenv("AZURE_CLIENT_SECRET", ESCAPED_SECRET)
    body = "{" + ",".join(f'"{name}":"{value}"' for name, value in ENCODED.items()) + "}"
    json.loads(body)  # valid JSON, escapes as the server wrote them
    echo.route("GET", r"/echo/encoded",
               lambda request: Response(200, body.encode(), {"content-type": "application/json"}))
    result = _run(pytester, """
def test_encoded(llmops_cassette):
    requests.get(URL + "/echo/encoded").raise_for_status()
""")
    result.assert_outcomes(passed=1)
    text, strings = _cassette(pytester.path, "test_encoded")
    for name, form in ENCODED.items():
        assert form not in text, name
    _assert_absent(ESCAPED_SECRET, text, strings)
    decoded = json.loads(next(s for s in strings if s.startswith('{"escaped"')))
    for name in ("base64_0", "base64_1", "base64_2"):
        assert ESCAPED_SECRET.encode() not in base64.b64decode(decoded[name]), name
    assert ESCAPED_SECRET.encode() not in base64.urlsafe_b64decode(decoded["base64url_1"])


def test_a_report_with_an_embedded_image_is_scrubbed_in_one_pass() -> None:
    """A drift report's HTML embeds its plots as one base64 run of hundreds of kilobytes.
    Looking for wrapped base64 secrets tried every position of that run against all of it
    (hours for this text, and the session's end waited for it); each run is now tried once.
    A wrapped secret elsewhere in the report is still found."""
    from pytest_llmops.secrets.known import KnownSecrets

    known = KnownSecrets()
    known.add(SECRET_API_KEY)
    image = base64.b64encode(bytes(range(256)) * 2000).decode()  # 680 KB, one run
    wrapped = base64.encodebytes(b"x" * 70 + SECRET_API_KEY.encode()).decode()  # cut at 76 columns
    report = f"<html><img src='data:image/png;base64,{image}'>\n<pre>\n{wrapped}\n</pre>\n{image}</html>"
    scrubbed = known.scrub(report)
    assert scrubbed.count(image) == 2
    assert not list(known.find(scrubbed))
    assert list(known.find(report))
