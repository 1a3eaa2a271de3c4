"""Credentials per mode, and the sealed network of replay."""

from __future__ import annotations

import pytest

from tests.conftest import all_bytes

JOKE = """
def test_joke(azure_openai_client, azure_openai_deployment):
    reply = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment, messages=[{"role": "user", "content": "Tell me a joke about animals."}])
    assert reply.choices[0].message.content
"""


@pytest.mark.parametrize("mode", ["--llmops-live", "--llmops-record"])
def test_missing_endpoint_skips_naming_the_variable(pytester: pytest.Pytester, mode: str):
    pytester.makepyfile(JOKE)
    result = pytester.runpytest(mode, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*AZURE_OPENAI_ENDPOINT not set: azure_openai_deployment needs it in * mode*"])


def test_strict_turns_the_skip_into_a_failure(pytester: pytest.Pytester):
    pytester.makepyfile(JOKE)
    result = pytester.runpytest("--llmops-live", "--llmops-strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*MissingCredential: AZURE_OPENAI_ENDPOINT not set*--llmops-strict*"])


def test_live_mode_neither_reads_nor_writes_cassettes(pytester: pytest.Pytester, lab_double, double_env):
    pytester.makepyfile(JOKE)
    result = pytester.runpytest("--llmops-live")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "cassettes").exists()
    assert len(lab_double.requests_to(r"/openai/.*")) == 1


ENTRA_CONFTEST = """
import time
import pytest
from azure.core.credentials import AccessToken


class DoubleCredential:
    '''A TokenCredential for the local double: azure-identity refuses non-https
    authorities, so tests override the documented azure_credential fixture.'''

    def get_token(self, *scopes, **kwargs):
        assert scopes == ("https://cognitiveservices.azure.com/.default",)
        return AccessToken("double-bearer-token", int(time.time()) + 3600)

    def get_token_info(self, *scopes, options=None):
        from azure.core.credentials import AccessTokenInfo
        return AccessTokenInfo("double-bearer-token", int(time.time()) + 3600)


@pytest.fixture(scope="session")
def azure_credential(llmops_mode):
    return None if llmops_mode == "replay" else DoubleCredential()
"""


def test_entra_id_when_no_api_key(pytester: pytest.Pytester, lab_double, double_env, monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    pytester.makeconftest(ENTRA_CONFTEST)
    pytester.makepyfile(JOKE)
    pytester.runpytest("--llmops-record").assert_outcomes(passed=1)
    sent = lab_double.requests_to(r"/openai/.*")[0]
    assert sent.headers["authorization"] == "Bearer double-bearer-token"
    written = all_bytes(pytester.path / "cassettes")
    assert b"double-bearer-token" not in written
    lab_double.stop()
    for name in double_env:
        monkeypatch.delenv(name, raising=False)
    pytester.runpytest().assert_outcomes(passed=1)


SEALED = """
import socket
import pytest
from pytest_llmops.seal import sockets as network

calls = []

@pytest.fixture(autouse=True)
def no_real_connect(monkeypatch):
    # Belt and braces: if the guard let a connection through, it would stop here, so
    # this test never sends a packet beyond loopback.
    def refuse(sock, address):
        calls.append(address)
        raise ConnectionRefusedError("test stand-in for the real connect")
    monkeypatch.setitem(network._state, "connect", refuse)


def test_non_loopback_is_refused():
    assert network.is_sealed()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(network.NetworkBlocked, match="Replay is sealed: a connection to 192.0.2.10:443 was refused"):
        sock.connect(("192.0.2.10", 443))
    with pytest.raises(network.NetworkBlocked, match="resource.openai.azure.com"):
        sock.connect(("resource.openai.azure.com", 443))
    sock.close()
    assert calls == []


def test_loopback_stays_open():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError, match="test stand-in"):
        sock.connect(("127.0.0.1", 9))
    assert calls == [("127.0.0.1", 9)]
"""


def test_replay_is_sealed(pytester: pytest.Pytester):
    pytester.makepyfile(SEALED)
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


def test_live_is_not_sealed(pytester: pytest.Pytester):
    pytester.makepyfile(
        "from pytest_llmops.seal import sockets as network\n\n"
        "def test_open():\n    assert not network.is_sealed()\n"
    )
    # A subprocess: this suite itself runs in replay, sealed.
    pytester.runpytest_subprocess("--llmops-live").assert_outcomes(passed=1)
