"""Traces from files: JSON Lines (``.jsonl``) and Parquet (``.parquet``, a file or a folder of
parts), one trace per line or row, in the flat form ``features.from_flat_dict`` reads
(``prompt``, ``response``, ``prompt_tokens``, ``completion_tokens``, ``latency_ms``,
``finish_reason``, ``error``, ``tool_calls``, ``model``, ``deployment``, optional ``key``,
``trace_id``, ``timestamp_ms``), or rows of a Databricks serving inference table (``request``,
``response``, ``status_code``, ...: see ``serving.py``). Parquet is read with pyarrow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_llmops.monitoring.columns import FeatureColumns
from pytest_llmops.monitoring.features import from_flat_dict
from pytest_llmops.monitoring.serving import is_serving_row, serving_to_flat
from pytest_llmops.monitoring.sources import RefError
from pytest_llmops.monitoring.window import TimeWindow

FILE_SUFFIXES = (".jsonl", ".parquet")


def is_file_ref(ref: str) -> bool:
    """Whether a REF names a file (by its suffix) rather than something in MLflow."""
    return ref.strip().lower().endswith(FILE_SUFFIXES)


def load_file_columns(ref: str, window: TimeWindow | None = None) -> FeatureColumns:
    """The feature columns of the traces in a ``.jsonl`` or ``.parquet`` file."""
    return FeatureColumns.from_features([from_flat_dict(row) for row in flat_rows(ref, window)])


def flat_rows(ref: str, window: TimeWindow | None = None) -> Iterator[dict[str, Any]]:
    """The file's rows in flat form (inference-table rows converted), inside ``window``."""
    path = Path(ref.strip()).expanduser()
    if not path.exists():
        raise RefError(f"REF {ref!r}: no such file. Pass the path of a .jsonl or .parquet file of traces.")
    rows = _jsonl_rows(path) if path.name.lower().endswith(".jsonl") else _parquet_rows(path)
    for number, row in enumerate(rows, start=1):
        flat = serving_to_flat(row) if is_serving_row(row) else dict(row)
        if window is not None and window.bounded:
            timestamp = flat.get("timestamp_ms")
            if not isinstance(timestamp, int | float):
                raise RefError(
                    f"REF {ref!r}: row {number} has no timestamp_ms, so --since/--until cannot select "
                    "it. Add a timestamp_ms column (milliseconds since the epoch) or drop the window."
                )
            if not window.contains(float(timestamp)):
                continue
        yield flat


def _jsonl_rows(path: Path) -> Iterator[Mapping[str, Any]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as error:
        raise RefError(f"REF {str(path)!r}: cannot read it ({error.strerror}).") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise RefError(
                    f"REF {str(path)!r}: line {number} is not JSON ({error}). Each line holds one trace "
                    "as a JSON object."
                ) from None
            except UnicodeDecodeError:
                raise RefError(f"REF {str(path)!r}: not UTF-8 text around line {number}.") from None
            if not isinstance(row, dict):
                raise RefError(f"REF {str(path)!r}: line {number} is not a JSON object.")
            yield row


def _parquet_rows(path: Path) -> Iterator[Mapping[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RefError(
            f"REF {str(path)!r}: reading Parquet needs pyarrow: pip install 'pytest-llmops[spark]' "
            "(or pip install pyarrow)."
        ) from None
    import pyarrow as pa

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise RefError(f"REF {str(path)!r}: not a readable Parquet file ({error}).") from None
    for batch in table.to_batches(max_chunksize=10_000):
        yield from batch.to_pylist()
