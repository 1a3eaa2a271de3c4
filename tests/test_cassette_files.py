"""Cassette files that cannot be used fail with one message naming the file and the
problem, before the test runs."""

from __future__ import annotations

import pytest

GOOD = """interactions:
- request:
    body: null
    headers: {}
    method: GET
    uri: https://resource.openai.azure.com/openai/models?api-version=2024-05-01-preview
  response:
    body: {string: '{"data": []}'}
    headers: {content-type: [application/json]}
    status: {code: 200, message: OK}
version: 1
"""

BAD = {
    "not a cassette": ("hello: world\n", "*not a vcrpy cassette: expected a mapping with a list of `interactions`*"),
    "truncated": (GOOD[:170], "*not valid YAML at line *(a truncated file?)*"),
    "unsafe tag": (
        "interactions:\n- !!python/object/apply:os.system ['echo pwned']\nversion: 1\n",
        "*it carries a YAML tag the safe loader refuses at line 2*never loaded with an unsafe loader*",
    ),
    "empty": ("", "*the file is empty (a truncated write?)*"),
    "no response": (
        "interactions:\n- request: {method: GET, uri: 'https://x'}\nversion: 1\n",
        "*interaction 1 lacks a `request` or a `response` mapping*",
    ),
}


def _response(text: str) -> str:
    """GOOD with its response side replaced by ``text`` (indented as a response)."""
    head = GOOD.split("  response:")[0]
    return head + "  response:\n" + "".join(f"    {line}\n" for line in text.strip().splitlines()) + "version: 1\n"


OK_BODY = "body: {string: '{}'}"
OK_HEADERS = "headers: {content-type: [application/json]}"
OK_STATUS = "status: {code: 200, message: OK}"
BAD.update({
    "response without body": (_response(f"{OK_HEADERS}\n{OK_STATUS}"), "*interaction 1's response has no `body`."),
    "response without headers": (_response(f"{OK_BODY}\n{OK_STATUS}"), "*interaction 1's response has no `headers`."),
    "status is a number": (
        _response(f"{OK_BODY}\n{OK_HEADERS}\nstatus: 200"),
        "*interaction 1's response has `status: 200`, not a mapping such as `{code: 200, message: OK}`.",
    ),
    "body is a number": (
        _response(f"body: 5\n{OK_HEADERS}\n{OK_STATUS}"),
        "*interaction 1's response has `body: 5`, not a mapping such as `{string: '...'}`.",
    ),
    "headers are a list": (
        _response(f"{OK_BODY}\nheaders: [a, b]\n{OK_STATUS}"),
        "*interaction 1's response has `headers: ['a', 'b']`, not a mapping of names to lists of values.",
    ),
    "cut inside status": (
        GOOD.split("    status:")[0] + "    status:\n",
        "*interaction 1's response has `status: null`, not a mapping such as `{code: 200, message: OK}` "
        "(a truncated file?).",
    ),
    "status code is text": (
        _response(f"{OK_BODY}\n{OK_HEADERS}\nstatus: {{code: abc, message: OK}}"),
        "*interaction 1's response has `status.code: 'abc'`, not an HTTP status such as 200.",
    ),
})


@pytest.mark.parametrize("case", sorted(BAD))
def test_unusable_cassette(pytester: pytest.Pytester, case: str):
    content, message = BAD[case]
    path = pytester.path / "cassettes" / "test_file" / "test_it.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    pytester.makepyfile(test_file="import pytest\n\n@pytest.mark.llmops_cassette\ndef test_it():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"CassetteError: Cassette {path} cannot be used: {message.lstrip('*')}"])
    result.stdout.fnmatch_lines(["*Fix or delete the file, then record it again with `pytest --llmops-record`*"])
    assert "pwned" not in result.stdout.str() or case == "unsafe tag"


def test_binary_file(pytester: pytest.Pytester):
    path = pytester.path / "cassettes" / "test_file" / "test_it.yaml"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    pytester.makepyfile(test_file="import pytest\n\n@pytest.mark.llmops_cassette\ndef test_it():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot be used: not UTF-8 text (byte 0); is it a cassette?"])


def test_a_good_cassette_named_by_the_marker(pytester: pytest.Pytester):
    path = pytester.path / "cassettes" / "shared" / "models.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(GOOD)
    pytester.makepyfile(test_file="""
        import pytest, requests

        @pytest.mark.llmops_cassette(name="shared/models")
        def test_it(llmops_cassette):
            url = "https://my-resource.openai.azure.com/openai/models?api-version=2024-05-01-preview"
            assert requests.get(url).json() == {"data": []}
            assert llmops_cassette.played == llmops_cassette.recorded == 1
    """)
    pytester.runpytest().assert_outcomes(passed=1)
