"""Fault injection: the next calls of an Azure OpenAI client fail as the real service fails.

The ``llmops_faults`` fixture schedules faults. The plugin's clients (``azure_openai_client``,
``azure_openai_async_client``) always consult it; a test hands in its own client with
``llmops_faults.attach(client)``. A fault is answered inside the client's transport, above
the layer that vcrpy patches: it never touches the network and is never written to a
cassette, in replay, live and record modes alike.

Two HTTP stacks are covered: ``httpx2`` (what the openai SDK 3.x runs on, which respx does
not see) through a transport wrapper, and ``httpx`` (``http_client=httpx.Client()``) through a
respx router put in front of the client's own transport. Both serve the same bodies and
headers, so user code meets the exception the SDK raises for the real fault:

- ``429``: 429 with ``retry-after``/``retry-after-ms`` and the ``RateLimitReached`` body ->
  ``openai.RateLimitError``;
- ``500``, ``503``: Azure's bodies -> ``openai.InternalServerError``;
- ``"content_filter"``: 400 with ``code: content_filter`` and the ``innererror`` verdict ->
  ``openai.BadRequestError``; with ``where="completion"`` a 200 whose ``finish_reason`` is
  ``content_filter`` (plain or streamed), which raises nothing;
- ``"timeout"``: the read times out -> ``openai.APITimeoutError``;
- ``"cut_stream"``: the connection drops after ``after_chunks`` SSE events -> the chunks,
  then ``openai.APIConnectionError`` from ``RemoteProtocolError`` while iterating;
- ``"connection_error"``: the connection is refused -> ``openai.APIConnectionError``.

The SDK retries 429, 5xx, timeouts and connection errors itself (``max_retries``, 2 by
default): schedule ``count=max_retries + 1`` faults, or use ``client.with_options(max_retries=0)``,
for the error to reach the code under test.
"""

from pytest_llmops.traffic.faults.hub import KINDS, Fault, Injected
from pytest_llmops.traffic.faults.schedule import Faults

__all__ = ["KINDS", "Fault", "Faults", "Injected"]
