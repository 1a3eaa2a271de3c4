"""The pytest side of evaluation: one :class:`EvaluationPlugin` per pytest process,
registered by ``plugin.py`` (its hooks live on the object, like tracking's).

For every tracked test it:
- makes ``mlflow.genai.evaluate`` nest under the test's run while the test runs
  (:mod:`.evaluate`);
- runs the body of ``@pytest.mark.llmops(repeat=N)`` tests N times (:mod:`.repeat`);
- before the test's run ends, gives it ``llmops.cost_usd`` (:mod:`.cost`) and the
  evaluation metrics, and the summary row their notes.
Nothing heavy is imported until a tracked test runs.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_llmops.evaluation import state as state_mod
from pytest_llmops.tracking import hooks as tracking_hooks
from pytest_llmops.tracking import testrun
from pytest_llmops.validation import run_options

PLUGIN_NAME = "llmops-evaluation"


def register(config: pytest.Config) -> None:
    """Register this process's :class:`EvaluationPlugin` (from ``pytest_configure``)."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(EvaluationPlugin(), PLUGIN_NAME)


class EvaluationPlugin:
    """Evaluation hooks of one pytest process."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """While a tracked test's body runs, ``mlflow.genai.evaluate`` nests under its run."""
        tracked = item.stash.get(testrun.tracked_key, None)
        if tracked is None:
            return (yield)
        from pytest_llmops.evaluation import evaluate

        evaluate.install()
        plugin = tracking_hooks.get(item.config)
        evaluate.set_active(evaluate.ActiveTest(item, plugin, tracked, state_mod.of(item)))
        try:
            return (yield)
        finally:
            evaluate.set_active(None)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        """Run a repeated test's body N times."""
        mark = pyfuncitem.get_closest_marker("llmops")
        tracked = pyfuncitem.stash.get(testrun.tracked_key, None)
        if mark is None or tracked is None:
            return None
        options = run_options(pyfuncitem.nodeid, mark)
        if options.repeat == 1:
            return None
        from pytest_llmops.evaluation import repeat
        from pytest_llmops.stash import cassette_key

        plugin = tracking_hooks.get(pyfuncitem.config)
        state = state_mod.of(pyfuncitem)
        repeat.run(pyfuncitem, options, plugin, tracked, state, pyfuncitem.stash[cassette_key])
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> None:
        """When the test's outcome is decided (its call, or a setup that did not pass), before
        tracking ends its run with that report: cost and scores into the run's metrics."""
        if call.when != "call" and not (call.when == "setup" and call.excinfo is not None):
            return
        tracked = item.stash.get(testrun.tracked_key, None)
        if tracked is not None and tracked.outcome is None:
            _finish(item, tracked, item.stash.get(state_mod.state_key, None))


def _finish(
    item: pytest.Item, tracked: testrun.TrackedTest, state: state_mod.TestEvaluation | None
) -> None:
    from pytest_llmops.evaluation import cost

    tracked.collector.take_deferred()
    spent = cost.Cost(cost.prices(item.config))
    for trace in list(tracked.collector.traces):
        spent.add_trace(trace)
    tracked.metrics["llmops.cost_usd"] = spent.usd + (state.extra_usd if state is not None else 0.0)
    if note := spent.note():
        tracked.notes.append(note)
    if state is not None:
        tracked.metrics.update(state.metrics())
        tracked.notes.extend(n for n in state.notes if n not in tracked.notes)
