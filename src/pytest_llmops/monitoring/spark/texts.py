"""Sums of n-gram profiles per side, computed where the data is: a pandas UDF over Arrow
batches runs the local engine's hashing (``text.profile_sum``) and emits one row per used
bucket; Spark adds them up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from pytest_llmops.monitoring.model import DriftSettings
from pytest_llmops.monitoring.text import FloatArray, profile_sum

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame


def profile_sums(texts: DataFrame, name: str, settings: DriftSettings) -> tuple[FloatArray, FloatArray]:
    """The sum of the profiles of column ``name`` per side (0: baseline, 1: current)."""
    from pyspark.sql import functions as F

    n, dim = settings.ngram, settings.ngram_dim

    def partial(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        for batch in batches:
            for side in (0, 1):
                values = batch.loc[batch["side"] == side, "text"].tolist()
                if not values:
                    continue
                sums = profile_sum(values, n, dim)
                used = np.flatnonzero(sums)
                yield pd.DataFrame({"side": side, "bucket": used.astype("int32"), "weight": sums[used]})

    rows = (
        texts.select("side", F.col(name).alias("text"))
        .mapInPandas(partial, schema="side int, bucket int, weight double")
        .groupBy("side", "bucket")
        .agg(F.sum("weight").alias("weight"))
        .collect()
    )
    result = (np.zeros(dim, dtype=np.float64), np.zeros(dim, dtype=np.float64))
    for row in rows:
        result[int(row["side"])][int(row["bucket"])] += float(row["weight"])
    return result
