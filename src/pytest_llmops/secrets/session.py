"""The secrets of one pytest session, shared by everything that writes to disk: the
cassettes' sanitizer, the MLflow writer, the report and the drift artifacts."""

from __future__ import annotations

import os

import pytest

from pytest_llmops.secrets.known import KnownSecrets
from pytest_llmops.secrets.records import RecordScrubber
from pytest_llmops.secrets.rules import Names

known_key = pytest.StashKey[KnownSecrets]()
names_key = pytest.StashKey[Names]()


def of(config: pytest.Config) -> KnownSecrets:
    """This session's known secrets: the secret variables and ids of the environment, then
    every value the user added or the scrubbing redacted by name."""
    if known_key not in config.stash:
        config.stash[known_key] = KnownSecrets.from_environ(os.environ)
    return config.stash[known_key]


def names(config: pytest.Config) -> Names:
    """The header, query, form and JSON field names this session redacts."""
    if names_key not in config.stash:
        config.stash[names_key] = Names()
    return config.stash[names_key]


def record_scrubber(config: pytest.Config) -> RecordScrubber:
    """Scrubs what the session writes to MLflow and to its report, with its known secrets
    and the names its cassettes redact."""
    return RecordScrubber(of(config), names(config))
