"""Replay: the placeholder hosts cassettes are scrubbed to, and the variables app code
builds its clients from, set to placeholders when unset.

An app that calls ``AzureOpenAI()`` or ``WorkspaceClient()`` with no arguments reads its
endpoint and credentials from the environment, and stops before its first request when
they are missing. In replay nothing reaches a service, so placeholders do: the hosts are
the ones cassettes are scrubbed to (they match recorded requests), the credentials are not
secrets. Variables that are set are left alone; the old environment comes back at the end
of the session.


PYTEST_DONT_REWRITE: loaded at start-up (see :mod:`pytest_llmops.plugin`)."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

OPENAI_HOST = "resource.openai.azure.com"
DATABRICKS_HOST = "adb-0000000000000000.0.azuredatabricks.net"
ARM_HOST = "management.azure.com"
LOGIN_HOST = "login.microsoftonline.com"
LOCAL_HOST = "localhost"
"""The placeholder hosts of cassettes (:mod:`.sanitize` scrubs to them), defined here with
no scrubbing code, so that replay's set-up imports none of it."""

PLACEHOLDERS = {
    "AZURE_OPENAI_ENDPOINT": f"https://{OPENAI_HOST}/",
    "AZURE_OPENAI_API_KEY": "replay-api-key",
    "OPENAI_API_VERSION": "2024-05-01-preview",
    "AZURE_OPENAI_API_VERSION": "2024-05-01-preview",
    "DATABRICKS_HOST": f"https://{DATABRICKS_HOST}",
    "DATABRICKS_TOKEN": "replay-databricks-token",
}
"""What each unset variable holds during a replay session (documented in the README)."""


def apply(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the unset variables to their placeholders; returns the names set, for :func:`restore`."""
    env = os.environ if environ is None else environ
    added = {name: value for name, value in PLACEHOLDERS.items() if name not in env}
    env.update(added)
    return added


def restore(added: dict[str, str], environ: MutableMapping[str, str] | None = None) -> None:
    """Remove the placeholders :func:`apply` set (those still holding them)."""
    env = os.environ if environ is None else environ
    for name, value in added.items():
        if env.get(name) == value:
            del env[name]


def configured(name: str, environ: MutableMapping[str, str] | None = None) -> str | None:
    """The value the user gave ``name``: None when unset, empty or the replay placeholder
    (code that asks "did the user configure this?" must not count a placeholder)."""
    env = os.environ if environ is None else environ
    value = env.get(name) or None
    return None if value == PLACEHOLDERS.get(name) else value
