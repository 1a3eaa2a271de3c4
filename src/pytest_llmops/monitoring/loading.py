"""A REF to feature columns, whatever it names: a ``.jsonl``/``.parquet`` file, or runs,
sessions and experiments of an MLflow store (optionally within a time window)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_llmops.monitoring.columns import FeatureColumns
from pytest_llmops.monitoring.features import extract_all
from pytest_llmops.monitoring.files import is_file_ref, load_file_columns
from pytest_llmops.monitoring.window import TimeWindow

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class Loaded:
    """The features behind a REF, what the REF turned out to be, and where its runs live."""

    ref: str
    columns: FeatureColumns
    description: str
    experiment_ids: list[str] = field(default_factory=list)


def load(
    ref: str,
    tracking_uri: str | None = None,
    *,
    window: TimeWindow | None = None,
    client: MlflowClient | None = None,
    exclude_session: str | None = None,
) -> Loaded:
    """Load a REF: a file needs no store; anything else is looked up in the MLflow store."""
    if is_file_ref(ref):
        columns = load_file_columns(ref, window)
        return Loaded(ref, columns, f"file {ref} ({len(columns)} traces)")
    from pytest_llmops.monitoring.sources import client_for, resolve_ref, traces_of

    client = client or client_for(tracking_uri)
    resolved = resolve_ref(ref, client, exclude_session=exclude_session)
    traces = traces_of(resolved, client, window=window)
    return Loaded(
        ref, FeatureColumns.from_features(extract_all(traces)), resolved.description, resolved.experiment_ids
    )


def load_columns(
    ref: str, tracking_uri: str | None = None, *, window: TimeWindow | None = None
) -> FeatureColumns:
    """The feature columns of the traces behind a REF."""
    return load(ref, tracking_uri, window=window).columns
