"""The keys of what the plugin keeps on pytest's objects (``config.stash``, ``item.stash``),
shared by its hooks (:mod:`pytest_llmops.plugin`), fixtures (:mod:`pytest_llmops.fixtures`)
and domain modules. The session's settings are under :data:`pytest_llmops.settings.settings_key`.

PYTEST_DONT_REWRITE: loaded at start-up (see :mod:`pytest_llmops.plugin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette
    from pytest_llmops.traffic.faults import Faults

cassette_key: pytest.StashKey[Cassette] = pytest.StashKey()
"""The cassette of a test that has one (set by ``llmops_cassette``)."""
reports_key = pytest.StashKey[dict[str, pytest.TestReport]]()
"""A test's reports so far, by phase (``setup``, ``call``, ``teardown``)."""
faults_key: pytest.StashKey[Faults] = pytest.StashKey()
"""The faults of a test that uses ``llmops_faults``."""
tracked_item_key = pytest.StashKey[bool]()
"""Whether a collected test is tracked (marked ``llmops`` or using ``llmops_run``): decided
once per test, in the plugin's marker walk at collection."""
