"""What ``llmops_traces`` returns: the finished traces of one test, flushed when used."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from mlflow.entities import Trace

    from pytest_llmops.tracking.hooks import TrackingPlugin
    from pytest_llmops.tracking.testrun import TrackedTest


class TestTraces(Sequence["Trace"]):
    """The finished traces of one test so far, flushed to the store when used."""

    __test__ = False  # not a pytest test class

    def __init__(self, plugin: TrackingPlugin, tracked: TrackedTest) -> None:
        self._plugin = plugin
        self._tracked = tracked

    def __call__(self) -> list[Trace]:
        """The traces recorded so far in this test, oldest first."""
        self._plugin.flush_test(self._tracked.collector)
        return list(self._tracked.collector.traces)

    @overload
    def __getitem__(self, index: int) -> Trace: ...

    @overload
    def __getitem__(self, index: slice) -> list[Trace]: ...

    def __getitem__(self, index: Any) -> Any:
        return self()[index]

    def __len__(self) -> int:
        return len(self())

    def __repr__(self) -> str:
        count = len(self._tracked.collector.traces)
        return f"<llmops traces of run {self._tracked.run.info.run_id}: {count}>"
