"""The body of the ``llmops_eval`` fixture: the test's :class:`~.scoring.LLMOpsEval`, on
its tracked run. Imported when the fixture first runs (mlflow after the extras check)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_llmops import extras

if TYPE_CHECKING:
    from pytest_llmops.evaluation.scoring import LLMOpsEval


def for_test(item: pytest.Item) -> LLMOpsEval:
    """The evaluation of ``item``, a tracked test (its run is active)."""
    extras.require("llmops_eval", "mlflow")
    from pytest_llmops.evaluation import state
    from pytest_llmops.evaluation.scoring import LLMOpsEval
    from pytest_llmops.tracking import hooks, testrun

    return LLMOpsEval(item, hooks.get(item.config), item.stash[testrun.tracked_key], state.of(item))
