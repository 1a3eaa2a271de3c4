"""Each scrubbing promise of the README's "Secrets never reach disk", one test each: recorded
against the double with pytester, then the cassette's bytes and decoded strings are read."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.disk import cassette_strings

VALUE = "Promise-secret.Value_0123456789"


def _echo(request):
    from tests.double.routing import json_response

    return json_response(200, {"note": f"echo {request.headers.get('x-note', '')}"})


CASES = {
    # the values of secret variables, wherever they appear
    "env DATABRICKS_CLIENT_SECRET": ("DATABRICKS_CLIENT_SECRET", "requests.get(URL + '/echo/p', headers={'x-note': V})"),
    "env ARM_CLIENT_SECRET": ("ARM_CLIENT_SECRET", "requests.post(URL + '/echo/p', json={'text': 'value ' + V})"),
    "env OPENAI_API_KEY": ("OPENAI_API_KEY", "requests.get(URL + '/echo/p?q=' + V)"),
    # JSON fields, query parameters and form fields, by name
    "json id_token": (None, "requests.post(URL + '/echo/p', json={'nested': [{'id_token': V}]})"),
    "json token_value": (None, "requests.post(URL + '/echo/p', json={'token_value': V})"),
    "query access_token": (None, "requests.get(URL + '/echo/p', params={'access_token': V})"),
    "query client_secret": (None, "requests.get(URL + '/echo/p', params={'client_secret': V})"),
    "form password": (None, "requests.post(URL + '/echo/p', data={'username': 'u', 'password': V})"),
    "form refresh_token": (None, "requests.post(URL + '/echo/p', data={'grant_type': 'r', 'refresh_token': V})"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_scrubbing_promise(pytester: pytest.Pytester, lab_double, double_env, monkeypatch, case: str):
    variable, call = CASES[case]
    if variable:
        monkeypatch.setenv(variable, VALUE)
    monkeypatch.setenv("T_VALUE", VALUE)
    lab_double.route("*", r"/echo/p", _echo)
    pytester.makepyfile(test_promise=f"""
import os, requests

URL, V = os.environ["AZURE_OPENAI_ENDPOINT"], os.environ["T_VALUE"]

def test_it(llmops_cassette):
    {call}.raise_for_status()
""")
    pytester.runpytest("--llmops-record").assert_outcomes(passed=1)
    text, strings = cassette_strings(pytester.path / "cassettes" / "test_promise" / "test_it.yaml")
    assert "/echo/p" in text  # the request was recorded
    for form in (VALUE, quote(VALUE, safe=""), json.dumps(VALUE)):
        assert form not in text
    assert not [s for s in strings if VALUE in s]
    placeholder = f"<{variable}>" if variable else "<redacted>"
    assert any(placeholder in s or quote(placeholder) in s for s in strings), placeholder
