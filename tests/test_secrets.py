"""Secrets never reach disk: every position a credential can take in real traffic is
recorded against the double, and the bytes of every written file are searched for the
exact values used. A secret that survives scrubbing stops the write."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from pytest_llmops.secrets.scan import scan_paths
from tests.conftest import SECRET_API_KEY, SECRET_DATABRICKS_TOKEN, all_bytes

CLIENT_SECRET = "Qx8~client.secret_value-42"
SUBSCRIPTION = "3f2a6b1c-1234-4abc-9def-0123456789ab"
TENANT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
ACCESS_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQifQ.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA"
REFRESH_TOKEN = "0.ARwA-refresh-token-value-0123456789"
ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LXZhbHVlLTAxMjM0NTY3ODk="
LIST_KEY1 = "0123456789abcdef0123456789abcdef"
LIST_KEY2 = "fedcba9876543210fedcba9876543210"
PASSWORD = "hunter2-but-longer"
SAS_SIG = "sv2024abcDEFghiJKLmnoPQRstuVWXyz0123%2F%2B%3D"
COOKIE = "session=cookie-value-abcdef123456"
REQUEST_ID = "7d3c1b5a-aaaa-bbbb-cccc-123456789abc"

EXACT_VALUES = [
    SECRET_API_KEY, SECRET_DATABRICKS_TOKEN, CLIENT_SECRET, SUBSCRIPTION, TENANT, ACCESS_TOKEN,
    REFRESH_TOKEN, ACCOUNT_KEY, LIST_KEY1, LIST_KEY2, PASSWORD, SAS_SIG, COOKIE, REQUEST_ID,
    base64.b64encode(f"user:{CLIENT_SECRET}".encode()).decode(), quote(CLIENT_SECRET, safe=""),
    base64.b64encode(f"token={SECRET_API_KEY}".encode()).decode(),
]


def _echo(request):
    """A route answering with every kind of secret a real service sends back."""
    from tests.double.routing import json_response

    payload = {
        "access_token": ACCESS_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        "token_type": "Bearer",
        "key1": LIST_KEY1,
        "key2": LIST_KEY2,
        "properties": {"connectionString": f"DefaultEndpointsProtocol=https;AccountKey={ACCOUNT_KEY}"},
        "password": PASSWORD,
        "echo_base64": base64.b64encode(f"user:{CLIENT_SECRET}".encode()).decode(),
        "echo_urlencoded": quote(CLIENT_SECRET, safe=""),
        "echo_key": f"the key is {SECRET_API_KEY}",
        "id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a",
        "tenant": TENANT,
    }
    headers = {"set-cookie": COOKIE, "x-ms-request-id": REQUEST_ID, "apim-request-id": REQUEST_ID}
    return json_response(200, payload, headers)


@pytest.fixture
def secret_env(lab_double, double_env, monkeypatch):
    lab_double.route("*", r"/echo/.*", _echo)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_RESOURCE_MANAGER_ENDPOINT", lab_double.url)
    return lab_double


LEAKY = """
import base64, os, requests
from urllib.parse import quote

URL = os.environ["AZURE_OPENAI_ENDPOINT"]
SECRET = os.environ["AZURE_CLIENT_SECRET"]
KEY = os.environ["AZURE_OPENAI_API_KEY"]
SUB = os.environ["AZURE_SUBSCRIPTION_ID"]
TENANT = os.environ["AZURE_TENANT_ID"]
SAS_SIG, ACCESS_TOKEN, COOKIE, REQUEST_ID, PASSWORD = VALUES


def test_every_position(azure_openai_client, azure_openai_deployment):
    # header api-key (the SDK), a chat completion that answers
    azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": "hello"}])
    # Authorization, cookies, request ids, SAS and OAuth query strings, a form body
    requests.post(
        f"{URL}/echo/{TENANT}/oauth2/v2.0/token?code=auth-code-123456&token=query-token-123456&sig={SAS_SIG}",
        headers={"Authorization": f"Bearer {ACCESS_TOKEN}", "Cookie": COOKIE, "x-ms-client-request-id": REQUEST_ID},
        data={"grant_type": "client_credentials", "client_id": "app", "client_secret": SECRET,
              "client_assertion": "assertion-value-123456", "scope": "https://management.azure.com/.default"},
    ).raise_for_status()
    # a JSON body with secrets, the subscription in the path, secrets base64/url-encoded in text
    requests.put(
        f"{URL}/echo/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a/listKeys",
        json={"properties": {"password": PASSWORD, "note": base64.b64encode(f"user:{SECRET}".encode()).decode(),
                             "encoded": quote(SECRET, safe=""), "tenant": TENANT}},
        headers={"x-api-note": base64.b64encode(f"token={KEY}".encode()).decode()},
    ).raise_for_status()
""".replace("= VALUES", "= " + repr((SAS_SIG, ACCESS_TOKEN, COOKIE, REQUEST_ID, PASSWORD)))


def test_no_secret_is_written_in_any_position(pytester: pytest.Pytester, secret_env):
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest("--llmops-record")
    result.assert_outcomes(passed=1)
    written = all_bytes(pytester.path / "cassettes")
    assert b"listKeys" in written and b"oauth2" in written  # the traffic was recorded
    for value in EXACT_VALUES:
        assert value.encode() not in written, f"a secret reached the cassette: {value[:4]}..."
    assert b"/subscriptions/00000000-0000-0000-0000-000000000000/" in written
    assert scan_paths([pytester.path / "cassettes"]) == []
    # and what was recorded replays
    secret_env.stop()
    pytester.runpytest().assert_outcomes(passed=1)


def test_user_extends_scrubbing_with_the_hook(pytester: pytest.Pytester, lab_double, double_env):
    pytester.makeconftest("""
        def pytest_llmops_configure(config, recorder):
            recorder.add_secret("my-own-service-secret-123", "MY_SECRET")
            recorder.add_secret_header("x-tenant-token")
    """)
    pytester.makepyfile(test_own="""
        import os, requests

        def test_own(llmops_cassette):
            requests.post(os.environ["AZURE_OPENAI_ENDPOINT"] + "/openai/deployments/gpt-4o/chat/completions"
                          "?api-version=2024-05-01-preview",
                          headers={"x-tenant-token": "tenant-token-value-987", "api-key": os.environ["AZURE_OPENAI_API_KEY"]},
                          json={"messages": [{"role": "user", "content": "my-own-service-secret-123"}], "model": "gpt-4o"})
    """)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=1)
    written = all_bytes(pytester.path / "cassettes")
    assert b"my-own-service-secret-123" not in written and b"<MY_SECRET>" in written
    assert b"tenant-token-value-987" not in written


def test_a_secret_that_survives_scrubbing_stops_the_write(pytester: pytest.Pytester, lab_double, double_env):
    leaked = "dapi" + "ab12" * 8  # not in any variable, so nothing knows to scrub it

    def answer(request):
        from tests.double.routing import json_response

        return json_response(200, {"comment": f"here is a token {leaked}"})

    lab_double.route("GET", r"/leak", answer)
    pytester.makepyfile(test_leak="""
        import os, requests

        def test_leak(llmops_cassette):
            requests.get(os.environ["AZURE_OPENAI_ENDPOINT"] + "/leak").raise_for_status()
    """)
    result = pytester.runpytest("--llmops-record")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*SecretLeak: Not writing cassette *test_leak.yaml: it still holds secret-shaped data "
        "(line *: databricks-token (dapi...)). Nothing was written.*pytest_llmops_configure*",
    ])
    assert leaked not in result.stdout.str()
    assert not (pytester.path / "cassettes" / "test_leak" / "test_leak.yaml").exists()
    assert not list(pytester.path.rglob("*.tmp"))


def test_scan_command(pytester: pytest.Pytester, capsys):
    from pytest_llmops.cli import main

    clean = pytester.path / "clean"
    clean.mkdir()
    (clean / "ok.yaml").write_text("interactions: []\nversion: 1\n")
    assert main(["scan", str(clean)]) == 0
    assert "No secrets found" in capsys.readouterr().out

    dirty = pytester.path / "dirty"
    dirty.mkdir()
    (dirty / "a.yaml").write_text(
        "interactions:\n- request:\n    headers:\n      api-key:\n      - 0123456789abcdef0123456789abcdef\n"
        "    uri: https://management.azure.com/subscriptions/3f2a6b1c-1234-4abc-9def-0123456789ab/x?sig=" + "A" * 30 + "\n"
    )
    (dirty / "b.json").write_text(json.dumps({"token": "dapi" + "0" * 32}))
    assert main(["scan", str(dirty)]) == 1
    out = capsys.readouterr()
    assert f"{dirty / 'a.yaml'}:5: azure-api-key (32 hex characters)" in out.out
    assert f"{dirty / 'a.yaml'}:6: subscription-id in path" in out.out
    assert f"{dirty / 'a.yaml'}:6: sas-signature (sig=)" in out.out
    assert f"{dirty / 'b.json'}:1: databricks-token (dapi...)" in out.out
    assert "0123456789abcdef0123456789abcdef" not in out.out + out.err
    assert "pytest --llmops-record" in out.err


def test_scan_finds_nothing_in_the_realworld_corpus(shared_dir):
    assert scan_paths([shared_dir / "realworld"]) == []
