"""A property of the whole plugin: 1,200 generated secrets (seeded, so a failure reproduces),
each sent in one position the plugin knows to be secret (a credential header, a query,
form, multipart or JSON field, a value the user added) and echoed back by the double in
another form (plain, in JSON, JSON-escaped, URL-encoded, base64 at each alignment and
wrapped, in an SSE chunk, in a binary body, in a response header); 100 more go through the
openai SDK in tracked tests, into MLflow traces. Recorded, then replayed; afterwards no
file under the rootdir (cassettes, the MLflow store, the report) holds any of them in any
of those forms, and the cassettes' decoded strings (binary bodies included) do not either."""

from __future__ import annotations

import base64
import json
import random
import re
import string
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml

from tests.disk import written_files

SEED = 20261203
DECLARED = ("header-api-key", "header-bearer", "query-code", "query-sig", "form", "multipart", "json",
            "json-nested", "user-added")
ECHOED = ("text", "json", "escaped", "url", "b64_0", "b64_1", "b64_2", "b64url", "wrapped", "sse", "binary",
          "header")
PER_TEST = 40
HTTP_SECRETS = 1200
TRACED_SECRETS = 100


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


def _find_secret(request) -> str:
    """The secret a request carries, from the position the test put it in."""
    where = request.headers["x-from"]
    if where == "header-api-key":
        return request.headers["api-key"]
    if where == "header-bearer":
        return request.headers["authorization"].split(" ", 1)[1]
    if where in ("query-code", "query-sig"):
        return request.query[where.split("-")[1]]
    if where == "form":
        from urllib.parse import parse_qs

        return parse_qs(request.body.decode())["client_secret"][0]
    if where == "multipart":
        match = re.search(rb'name="password"\r\n\r\n(.*?)\r\n--', request.body, re.S)
        assert match is not None
        return match.group(1).decode()
    data = request.json()
    return {"json": lambda: data["refresh_token"], "json-nested": lambda: data["a"][0]["id_token"],
            "user-added": lambda: data["note"]}[where]()


def _echo(request):
    from tests.double.routing import Response

    secret = _find_secret(request)
    raw = secret.encode()
    mode = request.headers["x-echo"]
    if mode == "binary":
        return Response(200, b"\x89\xff\x00" * 3 + raw + b"\xfe\x81", {"content-type": "application/octet-stream"})
    if mode == "sse":
        chunks = [{"choices": [{"delta": {"content": "a"}}]}, {"choices": [{"delta": {"content": f"x {secret} y"}}]}]
        body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
        return Response(200, body.encode(), {"content-type": "text/event-stream"})
    if mode == "header":
        return Response(200, b"{}", {"content-type": "application/json", "x-echoed-value": secret})
    text = {
        "text": lambda: f"you sent {secret}.",
        "json": lambda: json.dumps({"echo": {"value": secret}}),
        "escaped": lambda: '{"echo":"' + _escaped(secret) + '"}',
        "url": lambda: f"next=https://x.invalid/?v={quote(secret, safe='')}",
        "b64_0": lambda: base64.b64encode(raw).decode(),
        "b64_1": lambda: base64.b64encode(b"u" + raw).decode(),
        "b64_2": lambda: base64.b64encode(b"u:" + raw).decode(),
        "b64url": lambda: base64.urlsafe_b64encode(b"id:" + raw).decode(),
        "wrapped": lambda: base64.encodebytes(b"preamble " * 5 + raw).decode(),
    }[mode]()
    content_type = "application/json" if mode in ("json", "escaped") else "text/plain"
    return Response(200, text.encode(), {"content-type": content_type})


HTTP_TESTS = """
import json, os, pytest, requests

URL = os.environ["AZURE_OPENAI_ENDPOINT"]
CASES = json.loads(open(os.environ["T_CASES"]).read())["http"]
PER_TEST = {per_test}
SESSION = requests.Session()  # one connection, as clients keep them


def send(secret, where, mode):
    headers = {{"x-from": where, "x-echo": mode}}
    kwargs = {{}}
    if where == "header-api-key":
        headers["api-key"] = secret
    elif where == "header-bearer":
        headers["Authorization"] = "Bearer " + secret
    elif where in ("query-code", "query-sig"):
        kwargs["params"] = {{where.split("-")[1]: secret}}
    elif where == "form":
        kwargs["data"] = {{"grant_type": "client_credentials", "client_secret": secret}}
    elif where == "multipart":
        kwargs["data"] = {{"password": secret}}
        kwargs["files"] = {{"f": ("a.bin", b"\\x00\\xff", "application/octet-stream")}}
    elif where == "json":
        kwargs["json"] = {{"refresh_token": secret}}
    elif where == "json-nested":
        kwargs["json"] = {{"a": [{{"id_token": secret}}]}}
    else:
        kwargs["json"] = {{"note": secret}}
    answer = SESSION.post(URL + "/echo/prop", headers=headers, **kwargs)
    answer.raise_for_status()
    return answer


# Multipart boundaries are random: match without the body (identical requests replay in order).
@pytest.mark.llmops_cassette(match_on=["method", "path", "query"])
@pytest.mark.parametrize("chunk", range(len(CASES) // PER_TEST))
def test_http(llmops_cassette, chunk):
    for secret, where, mode in CASES[chunk * PER_TEST:(chunk + 1) * PER_TEST]:
        send(secret, where, mode)
"""

TRACED_TESTS = """
import json, os, pytest

SECRETS = json.loads(open(os.environ["T_CASES"]).read())["traced"]


@pytest.mark.llmops
@pytest.mark.parametrize("chunk", range(len(SECRETS) // 10))
def test_traced(azure_openai_client, chunk):
    for secret in SECRETS[chunk * 10:(chunk + 1) * 10]:
        azure_openai_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"remember {secret}"}],
            extra_query={"code": secret})
"""

CONFTEST = """
import json, os

def pytest_llmops_configure(config, recorder):
    for secret in json.loads(open(os.environ["T_CASES"]).read())["user"]:
        recorder.add_secret(secret, "USER_SECRET")
"""


def _decoded_cassette_strings(root: Path) -> list[str]:
    from vcr.serializers.yamlserializer import _CassetteLoader

    found: list[str] = []
    for path in (root / "cassettes").rglob("*.yaml"):
        stack: list[object] = [yaml.load(path.read_text(), Loader=_CassetteLoader)]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend([*item.keys(), *item.values()])
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, bytes):
                found.append(item.decode("utf-8", "replace"))
            elif isinstance(item, str):
                found.append(item)
    return found


def _found(texts: list[str], forms: dict[str, str]) -> set[str]:
    """The secrets (values of ``forms``) any of whose forms occur in ``texts``: one pass over
    each text, positions looked up by their first 8 characters (every form is as long)."""
    by_prefix: dict[str, list[str]] = {}
    for form in forms:
        by_prefix.setdefault(form[:8], []).append(form)
    found: set[str] = set()
    for text in texts:
        for index in range(len(text) - 7):
            for form in by_prefix.get(text[index : index + 8], ()):
                if text.startswith(form, index):
                    found.add(forms[form])
    return found


def _assert_none_on_disk(root: Path, secrets: list[str]) -> None:
    files = written_files(root)
    assert any(name.startswith(".llmops") for name in files) and any(name.startswith("cassettes") for name in files)
    texts = [content.decode("utf-8", "replace") for content in files.values()]
    texts += _decoded_cassette_strings(root)
    forms = {form: secret for secret in secrets for form in _forms(secret)}
    leaked = sorted(_found(texts, forms))
    assert not leaked, f"{len(leaked)} secret(s) reached disk, e.g. {[s[:6] + '...' for s in leaked[:5]]}"


def test_a_thousand_generated_secrets_reach_no_file(pytester: pytest.Pytester, lab_double, double_env,
                                                    monkeypatch, tmp_path_factory):
    rng = random.Random(SEED)
    secrets = _secrets(HTTP_SECRETS + TRACED_SECRETS, rng)
    rng.shuffle(secrets)
    http, traced = secrets[:HTTP_SECRETS], secrets[HTTP_SECRETS:]
    cases = [(secret, DECLARED[i % len(DECLARED)], ECHOED[(i // len(DECLARED)) % len(ECHOED)])
             for i, secret in enumerate(http)]
    assert {(d, e) for _, d, e in cases} == {(d, e) for d in DECLARED for e in ECHOED}  # every pairing
    user = [secret for secret, where, _ in cases if where == "user-added"]
    cases_file = tmp_path_factory.mktemp("outside-rootdir") / "cases.json"
    cases_file.write_text(json.dumps({"http": cases, "traced": traced, "user": user}))
    monkeypatch.setenv("T_CASES", str(cases_file))
    lab_double.route("POST", r"/echo/prop", _echo)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_http=HTTP_TESTS.format(per_test=PER_TEST), test_traced=TRACED_TESTS)

    pytester.runpytest("--llmops-record", "--llmops-report=report.json", "-p", "no:randomly").assert_outcomes(
        passed=HTTP_SECRETS // PER_TEST + TRACED_SECRETS // 10
    )
    _assert_none_on_disk(pytester.path, secrets)
    lab_double.stop()
    pytester.runpytest("--llmops-report=report.md", "-p", "no:randomly").assert_outcomes(
        passed=HTTP_SECRETS // PER_TEST + TRACED_SECRETS // 10
    )
    _assert_none_on_disk(pytester.path, secrets)
