"""The extension point of pytest-llmops.

PYTEST_DONT_REWRITE: loaded at start-up (see :mod:`pytest_llmops.plugin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Recorder


@pytest.hookspec(historic=True)
def pytest_llmops_configure(config: pytest.Config, recorder: Recorder) -> None:
    """Configure cassettes for the whole session, in a ``conftest.py`` or a plugin.

    ``recorder`` lets you add what the built-in rules do not cover::

        def pytest_llmops_configure(config, recorder):
            recorder.add_secret(os.environ.get("MY_SERVICE_TOKEN"))      # scrubbed everywhere
            recorder.add_sanitizer(drop_my_header)                       # request/response hook
            recorder.add_ignored_body_field("seed")                      # volatile JSON field
            recorder.add_matcher("tenant", my_matcher)                   # vcrpy matcher

    Called once per session (and once per xdist worker), after the plugin's defaults are set.
    """
