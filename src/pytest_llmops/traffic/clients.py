"""What the plugin's own Azure OpenAI clients get: fault injection (every mode) and pacing
(live and record; in replay only the recorded 429s' retries), at their transports."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from pytest_llmops.traffic.pacer import pacer

ClientT = TypeVar("ClientT")


def instrument(client: ClientT, config: pytest.Config, deployment: Any = None) -> ClientT:
    """Give one of the plugin's openai clients fault injection (every mode) and pacing
    (live and record; in replay only the recorded 429s' retries), at its transports."""
    from pytest_llmops.traffic.faults.hub import hub
    from pytest_llmops.traffic.faults.transports import FaultTransport
    from pytest_llmops.traffic.paced_transport import PacedTransport

    http: Any = getattr(client, "_client")  # noqa: B009 - private to openai, not to mypy
    the_pacer = pacer(config)
    if the_pacer is not None and deployment is not None:
        the_pacer.note_deployment(deployment)
    faults_hub = hub(config)

    def wrap(transport: Any) -> Any:
        inner = PacedTransport(transport, the_pacer) if the_pacer is not None else transport
        return FaultTransport(inner, faults_hub)

    http._transport = wrap(http._transport)
    http._mounts = {pattern: (wrap(t) if t is not None else None) for pattern, t in http._mounts.items()}
    return client
