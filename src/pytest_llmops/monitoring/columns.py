"""Features of many traces as columns: one numpy array per feature.

The local engine works on columns: memory is a few arrays per side (linear in the number of
traces), and every statistic is vectorised. Numeric columns are float64 with NaN where a
trace has no value; categorical ones object arrays of ``str`` or ``None``; ``error`` a bool
array; text columns object arrays of ``str`` (``""`` when absent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pytest_llmops.monitoring.features import FEATURES, TraceFeatures

ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True)
class FeatureColumns:
    """One column per feature of :data:`~pytest_llmops.monitoring.features.FEATURES`, plus the
    pairing ``key`` and the ``trace_id`` of each row."""

    columns: Mapping[str, np.ndarray]
    key: ObjectArray
    trace_id: ObjectArray

    def __len__(self) -> int:
        return int(self.key.shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, rows: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> FeatureColumns:
        """The rows selected by an index or mask."""
        return FeatureColumns(
            {name: column[rows] for name, column in self.columns.items()}, self.key[rows], self.trace_id[rows]
        )

    @classmethod
    def from_features(cls, traces: Sequence[TraceFeatures]) -> FeatureColumns:
        """Columns of extracted features."""
        columns: dict[str, np.ndarray] = {}
        for spec in FEATURES:
            values = [getattr(trace, spec.name) for trace in traces]
            columns[spec.name] = _column(spec.kind, values)
        return cls(
            columns,
            _objects([trace.key for trace in traces]),
            _objects([trace.trace_id for trace in traces]),
        )

    @classmethod
    def from_lists(
        cls, data: Mapping[str, Sequence[object]], key: Sequence[object], trace_id: Sequence[object]
    ) -> FeatureColumns:
        """Columns from one list per feature (a missing feature is all-missing)."""
        size = len(key)
        columns: dict[str, np.ndarray] = {}
        for spec in FEATURES:
            values = data.get(spec.name)
            if values is None:
                values = (
                    [False] * size
                    if spec.kind == "binary"
                    else ([""] * size if spec.kind == "text" else [None] * size)
                )
            columns[spec.name] = _column(spec.kind, list(values))
        return cls(columns, _objects(list(key)), _objects(list(trace_id)))


def empty_columns() -> FeatureColumns:
    """No traces."""
    return FeatureColumns.from_features([])


def _column(kind: str, values: list[object]) -> np.ndarray:
    if kind in ("count", "continuous"):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)  # type: ignore[arg-type]
    if kind == "binary":
        return np.array([bool(v) for v in values], dtype=np.bool_)
    if kind == "text":
        return _objects([str(v) if v else "" for v in values])
    return _objects([None if v is None else str(v) for v in values])


def _objects(values: list[object]) -> ObjectArray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
