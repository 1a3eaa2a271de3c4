"""How ``cassettes/record_app/test_chat_and_stream.yaml`` was made: recorded by
pytest-recording (not by pytest-llmops), the way a project using it records, against the
lab double. Kept so that the cassette can be made again; the suite only replays it
(tests/test_pytest_recording.py).

    python -m tests.double   # prints the variables to export (AZURE_OPENAI_ENDPOINT, ...)
    pytest -p no:llmops -p recording --noconftest --record-mode=all tests/data/pytest_recording/record_app.py

A project's usual ``vcr_config``: the key header filtered, and the request's host rewritten
to the Azure resource it stands for (as a project recording against a real resource has).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import openai
import pytest


def _real_looking_host(request):
    parts = urlsplit(request.uri)
    request.uri = parts._replace(scheme="https", netloc="contoso-openai.openai.azure.com").geturl()
    request.headers["host"] = "contoso-openai.openai.azure.com"
    return request


@pytest.fixture(scope="module")
def vcr_config():
    return {"filter_headers": ["api-key"], "before_record_request": _real_looking_host}


@pytest.mark.vcr
def test_chat_and_stream():
    client = openai.AzureOpenAI(
        azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"], api_key=os.environ["AZURE_OPENAI_API_KEY"],
        api_version="2024-10-21",
    )
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Name a colour of the rainbow."}]
    )
    assert reply.choices[0].message.content
    chunks = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Count to three."}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
