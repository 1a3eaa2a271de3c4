"""A property of the whole plugin: 1,200 generated secrets (seeded, so a failure reproduces),
each sent in a position the plugin knows to be secret (a credential header, a query, form,
multipart or JSON field, a value the user added) and echoed back by the double in another
form (plain, in JSON, JSON-escaped, URL-encoded, base64 at each alignment and wrapped, in an
SSE chunk, in a binary body, in a response header), every pairing of the two many times;
96 more go through the openai SDK in tracked tests, into MLflow traces. Recorded, then
replayed; afterwards no file under the rootdir (cassettes, the MLflow store, the report)
holds any of them in any of those forms, and the cassettes' decoded strings (binary bodies
included) do not either. A request carries four secrets: in a header, two query parameters
and the body."""

from __future__ import annotations

import base64
import json
import random
import re
import string
from pathlib import Path
from urllib.parse import quote, quote_plus

import numpy as np
import pytest

from tests.disk import cassette_strings, written_files

SEED = 20261203
HEADERS = ("api-key", "authorization")
QUERY = ("code", "sig")
BODIES = ("form", "multipart", "json", "json-nested", "user-added")
ECHOED = ("text", "json", "escaped", "url", "b64_0", "b64_1", "b64_2", "b64url", "wrapped", "sse", "binary",
          "header")
PER_TEST = 12
HTTP_SECRETS = 1200
TRACED_NAMES = ("code", "sig", "token", "access_token", "client_secret", "refresh_token", "id_token", "password")
TRACED_SECRETS = 3 * 4 * len(TRACED_NAMES)  # three tests of four calls


def _secrets(count: int, rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits + "-._~+/=" + "üé"
    found: set[str] = set()
    while len(found) < count:
        value = rng.choice(string.ascii_letters) + "".join(rng.choice(alphabet) for _ in range(rng.randint(11, 89)))
        found.add(value)
    return sorted(found)


def _escaped(value: str) -> str:
    """JSON-escaped as encoders that escape symbols do: upper and lower-case hex mixed."""
    out = []
    for index, char in enumerate(value):
        if char.isascii() and char.isalnum():
            out.append(char)
        else:
            code = f"{ord(char):04x}"
            out.append("\\u" + (code.upper() if index % 2 else code))
    return "".join(out)


def _core(raw: bytes, offset: int, urlsafe: bool) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(b"\0" * offset + raw).decode()
    return encoded[(4 * offset + 2) // 3 : ((offset + len(raw)) * 4) // 3]


def _forms(value: str) -> set[str]:
    """The forms searched for on disk (independent of the plugin's own encoder)."""
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1], _escaped(value)}
    forms.update(_core(raw, offset, urlsafe) for offset in range(3) for urlsafe in (False, True))
    return {form for form in forms if len(form) >= 8}


def _sent(request) -> list[str]:
    """The secrets a request carries, from the positions the test put them in."""
    found = [request.headers["api-key"] if "api-key" in request.headers
             else request.headers["authorization"].split(" ", 1)[1]]
    found += [request.query[name] for name in QUERY]
    body = request.headers["x-body"]
    if body == "form":
        from urllib.parse import parse_qs

        found.append(parse_qs(request.body.decode())["client_secret"][0])
    elif body == "multipart":
        match = re.search(rb'name="password"\r\n\r\n(.*?)\r\n--', request.body, re.S)
        assert match is not None
        found.append(match.group(1).decode())
    else:
        data = request.json()
        found.append({"json": lambda: data["refresh_token"], "json-nested": lambda: data["a"][0]["id_token"],
                      "user-added": lambda: data["note"]}[body]())
    return found


def _echo(request):
    """Every secret of the request, back in the form ``x-echo`` names."""
    from tests.double.routing import Response

    secrets = _sent(request)
    raw = " ".join(secrets).encode()
    mode = request.headers["x-echo"]
    if mode == "binary":
        return Response(200, b"\x89\xff\x00" * 3 + b"\xfe".join(s.encode() for s in secrets) + b"\x81",
                        {"content-type": "application/octet-stream"})
    if mode == "sse":
        chunks = [{"choices": [{"delta": {"content": f"x {secret} y"}}]} for secret in secrets]
        body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
        return Response(200, body.encode(), {"content-type": "text/event-stream"})
    if mode == "header":
        return Response(200, b"{}", {"content-type": "application/json", "x-echoed-value": " ".join(secrets)})
    each = {
        "text": lambda secret: f"you sent {secret}.",
        "json": lambda secret: json.dumps({"echo": {"value": secret}}),
        "escaped": lambda secret: '{"echo":"' + _escaped(secret) + '"}',
        "url": lambda secret: f"next=https://x.invalid/?v={quote(secret, safe='')}",
        "b64_0": lambda secret: base64.b64encode(secret.encode()).decode(),
        "b64_1": lambda secret: base64.b64encode(b"u" + secret.encode()).decode(),
        "b64_2": lambda secret: base64.b64encode(b"u:" + secret.encode()).decode(),
        "b64url": lambda secret: base64.urlsafe_b64encode(b"id:" + secret.encode()).decode(),
        "wrapped": lambda secret: base64.encodebytes(b"preamble " * 5 + secret.encode()).decode(),
    }[mode]
    if mode in ("json", "escaped"):
        text = "[" + ",".join(each(secret) for secret in secrets) + "]"
        content_type = "application/json"
    else:
        text = "\n".join(each(secret) for secret in secrets)
        content_type = "text/plain"
    assert raw  # (every mode carries all of them)
    return Response(200, text.encode(), {"content-type": content_type})


HTTP_TESTS = """
import json, os, pytest, requests

URL = os.environ["AZURE_OPENAI_ENDPOINT"]
REQUESTS = json.loads(open(os.environ["T_CASES"]).read())["http"]
PER_TEST = {per_test}
SESSION = requests.Session()  # one connection, as clients keep them


def send(header, code, sig, body_secret, header_name, body, mode):
    headers = {{"x-body": body, "x-echo": mode}}
    headers[header_name] = header if header_name == "api-key" else "Bearer " + header
    kwargs = {{"params": {{"code": code, "sig": sig}}}}
    if body == "form":
        kwargs["data"] = {{"grant_type": "client_credentials", "client_secret": body_secret}}
    elif body == "multipart":
        kwargs["data"] = {{"password": body_secret}}
        kwargs["files"] = {{"f": ("a.bin", b"\\x00\\xff", "application/octet-stream")}}
    elif body == "json":
        kwargs["json"] = {{"refresh_token": body_secret}}
    elif body == "json-nested":
        kwargs["json"] = {{"a": [{{"id_token": body_secret}}]}}
    else:
        kwargs["json"] = {{"note": body_secret}}
    SESSION.post(URL + "/echo/prop", headers=headers, **kwargs).raise_for_status()


# Multipart boundaries are random: match without the body (identical requests replay in order).
@pytest.mark.llmops_cassette(match_on=["method", "path", "query"])
@pytest.mark.parametrize("chunk", range(len(REQUESTS) // PER_TEST))
def test_http(llmops_cassette, chunk):
    for request in REQUESTS[chunk * PER_TEST:(chunk + 1) * PER_TEST]:
        send(*request)
"""

TRACED_TESTS = """
import json, os, pytest

SECRETS = json.loads(open(os.environ["T_CASES"]).read())["traced"]
NAMES = {names!r}


@pytest.mark.llmops
@pytest.mark.parametrize("chunk", range(len(SECRETS) // (4 * len(NAMES))))
def test_traced(azure_openai_client, chunk):
    mine = SECRETS[chunk * 4 * len(NAMES):(chunk + 1) * 4 * len(NAMES)]
    for call in range(4):
        group = mine[call * len(NAMES):(call + 1) * len(NAMES)]
        azure_openai_client.chat.completions.create(
            model="gpt-4o", messages=[{{"role": "user", "content": "remember " + " and ".join(group)}}],
            extra_query=dict(zip(NAMES, group)))
"""

CONFTEST = """
import json, os

def pytest_llmops_configure(config, recorder):
    for secret in json.loads(open(os.environ["T_CASES"]).read())["user"]:
        recorder.add_secret(secret, "USER_SECRET")
"""


def _found(texts: list[bytes], forms: dict[str, str]) -> set[str]:
    """The secrets (values of ``forms``) any of whose forms occur in ``texts``. Every form is
    at least 8 bytes long: each text's 8-byte windows are compared with the forms' first 8
    bytes at once (numpy), and only those positions are checked in full."""
    encoded = {form.encode(): secret for form, secret in forms.items()}
    prefixes = np.array(sorted({int.from_bytes(form[:8], "little") for form in encoded}), dtype=np.uint64)
    by_prefix: dict[bytes, list[bytes]] = {}
    for form in encoded:
        by_prefix.setdefault(form[:8], []).append(form)
    found: set[str] = set()
    text = b"\0".join(texts) + b"\0" * 16  # one pass (no form holds a NUL byte)
    for shift in range(8):
        windows = np.frombuffer(text, dtype="<u8", count=(len(text) - shift) // 8, offset=shift)
        for index in np.flatnonzero(np.isin(windows, prefixes)):
            start = shift + 8 * int(index)
            for form in by_prefix[text[start : start + 8]]:
                if text.startswith(form, start):
                    found.add(encoded[form])
    return found


def _assert_none_on_disk(root: Path, secrets: list[str], decoded: bool = True) -> None:
    files = written_files(root)
    assert any(name.startswith(".llmops") for name in files) and any(name.startswith("cassettes") for name in files)
    texts = list(files.values())
    if decoded:  # the cassettes' strings as their reader decodes them (binary bodies included)
        for path in sorted((root / "cassettes").rglob("*.yaml")):
            texts += [text.encode() for text in cassette_strings(path)[1]]
    forms = {form: secret for secret in secrets for form in _forms(secret)}
    leaked = sorted(_found(texts, forms))
    assert not leaked, f"{len(leaked)} secret(s) reached disk, e.g. {[s[:6] + '...' for s in leaked[:5]]}"


def test_a_thousand_generated_secrets_reach_no_file(pytester: pytest.Pytester, lab_double, double_env,
                                                    monkeypatch, tmp_path_factory):
    rng = random.Random(SEED)
    secrets = _secrets(HTTP_SECRETS + TRACED_SECRETS, rng)
    rng.shuffle(secrets)
    http, traced = secrets[:HTTP_SECRETS], secrets[HTTP_SECRETS:]
    requests = []
    for number in range(HTTP_SECRETS // 4):
        header, code, sig, body_secret = http[4 * number : 4 * number + 4]
        body = BODIES[number % len(BODIES)]
        mode = ECHOED[(number // len(BODIES)) % len(ECHOED)]
        which = HEADERS[(number // (len(BODIES) * len(ECHOED))) % len(HEADERS)]
        requests.append((header, code, sig, body_secret, which, body, mode))
    pairings = {(r[4], r[5], r[6]) for r in requests}
    assert pairings == {(h, b, e) for h in HEADERS for b in BODIES for e in ECHOED}  # every pairing
    user = [r[3] for r in requests if r[5] == "user-added"]
    cases_file = tmp_path_factory.mktemp("outside-rootdir") / "cases.json"
    cases_file.write_text(json.dumps({"http": requests, "traced": traced, "user": user}))
    monkeypatch.setenv("T_CASES", str(cases_file))
    lab_double.route("POST", r"/echo/prop", _echo)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_http=HTTP_TESTS.format(per_test=PER_TEST),
                        test_traced=TRACED_TESTS.format(names=TRACED_NAMES))
    tests = len(requests) // PER_TEST + TRACED_SECRETS // (4 * len(TRACED_NAMES))

    pytester.runpytest("--llmops-record", "--llmops-report=report.json", "-p", "no:randomly").assert_outcomes(
        passed=tests
    )
    _assert_none_on_disk(pytester.path, secrets)
    lab_double.stop()
    pytester.runpytest("--llmops-report=report.md", "-p", "no:randomly").assert_outcomes(passed=tests)
    _assert_none_on_disk(pytester.path, secrets, decoded=False)  # replay writes no cassette
