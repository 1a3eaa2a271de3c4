"""The Spark engine: reduce both sides to the summaries the tests need, in a few Spark jobs,
then run the shared tests and decision (``summaries.py``, ``decide.py``) on the driver.

- numbers: value counts per side (``groupBy(side, feature, value).count()``, one job for every
  numeric feature). Continuous features with more than ``EXACT_DISTINCT`` distinct values are
  counted in a histogram of logarithmic bins 0.23 % wide (``10 ** round(log10(v), 3)``): the
  medians and quantiles move by at most 0.12 %;
- paired prompts: per prompt and side, the sum of ``log1p(value)`` and the count;
- categories and errors: counts per side; texts: sums of n-gram profiles per side (a pandas
  UDF over Arrow batches, the same hashing as the local engine) and a bounded sample of texts
  (all of them up to ``settings.text_sample`` per side) for the permutation test, in row order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_llmops.monitoring.columns import FeatureColumns
from pytest_llmops.monitoring.decide import build_report, selected_specs
from pytest_llmops.monitoring.examples import find_examples
from pytest_llmops.monitoring.model import DriftSettings
from pytest_llmops.monitoring.pairing import pair_prompts
from pytest_llmops.monitoring.report import DriftReport
from pytest_llmops.monitoring.spark.frames import read_ref
from pytest_llmops.monitoring.spark.session import spark_session
from pytest_llmops.monitoring.spark.texts import profile_sums
from pytest_llmops.monitoring.stats.weighted import Weighted
from pytest_llmops.monitoring.summaries import (
    CategorySummary,
    NumericSummary,
    RateSummary,
    Summary,
    TextSummary,
    feature_result,
)
from pytest_llmops.monitoring.text import js_distance, profile_matrix
from pytest_llmops.monitoring.window import TimeWindow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EXACT_DISTINCT = 100_000
EXAMPLE_COLUMNS = (
    "prompt_text",
    "response_text",
    "finish_reason",
    "completion_tokens",
    "latency_ms",
    "model",
    "error",
)


def compare_spark_refs(
    baseline: str,
    current: str,
    *,
    settings: DriftSettings | None = None,
    windows: tuple[TimeWindow | None, TimeWindow | None] = (None, None),
    spark: SparkSession | None = None,
) -> DriftReport:
    """Compare two REFs (Parquet/JSON Lines paths, ``delta:PATH``, ``table:NAME``) with Spark;
    ``windows``: the time windows of the baseline's and the current's rows."""
    spark = spark or spark_session()
    return compare_dataframes(
        read_ref(spark, baseline, windows[0]),
        read_ref(spark, current, windows[1]),
        settings=settings,
        baseline_label=baseline,
        current_label=current,
    )


def compare_dataframes(
    baseline: DataFrame,
    current: DataFrame,
    *,
    settings: DriftSettings | None = None,
    baseline_label: str = "baseline",
    current_label: str = "current",
) -> DriftReport:
    """Compare two DataFrames of flat traces or inference-table rows (or of features, from
    ``frames.read_ref``/``frames.feature_frame``)."""
    from pyspark.sql import functions as F

    from pytest_llmops.monitoring.spark.frames import feature_frame

    settings = settings or DriftSettings()
    base = baseline if "response_text" in baseline.columns else feature_frame(baseline)
    cur = current if "response_text" in current.columns else feature_frame(current)
    both = base.withColumn("side", F.lit(0)).unionByName(cur.withColumn("side", F.lit(1))).cache()
    try:
        specs = selected_specs(settings)
        sizes = _sizes(both, [s.name for s in specs if s.kind == "continuous"])
        paired_keys, pairs = _pairing(both, settings, sizes)
        summaries: dict[str, Summary] = {}
        numeric = [s.name for s in specs if s.kind in ("count", "continuous")]
        summaries.update(_numeric(both, numeric, sizes, paired_keys, settings))
        summaries.update(_categories(both, [s.name for s in specs if s.kind == "categorical"]))
        if any(s.name == "error" for s in specs):
            summaries["error"] = RateSummary(
                sizes["errors_0"], sizes["rows_0"], sizes["errors_1"], sizes["rows_1"]
            )
        texts = [s.name for s in specs if s.kind == "text"]
        small = [n for n in texts if max(sizes[f"{n}_0"], sizes[f"{n}_1"]) <= settings.text_sample]
        collected = _collect_texts(both, small) if small else []
        for name in texts:
            keys = paired_keys if pairs > 0 and name != "prompt_text" else None
            summaries[name] = _text(both, name, sizes, keys, settings, collected if name in small else None)
        results = {spec.name: feature_result(spec, summaries[spec.name], settings) for spec in specs}
        examples = _examples(both, paired_keys, settings) if pairs else []
    finally:
        both.unpersist()
    return build_report(
        results,
        settings,
        labels=(baseline_label, current_label),
        sizes=(sizes["rows_0"], sizes["rows_1"]),
        paired_prompts=pairs,
        examples=examples,
        engine="spark",
    )


def _sizes(both: DataFrame, continuous: list[str]) -> dict[str, int]:
    """Rows, errors and non-empty texts per side, and the distinct values of the continuous
    features (approximately), in one job."""
    from pyspark.sql import functions as F

    aggregates = [F.approx_count_distinct(name).alias(f"distinct_{name}") for name in continuous]
    for side in (0, 1):
        on_side = F.col("side") == side
        aggregates += [
            F.sum(on_side.cast("long")).alias(f"rows_{side}"),
            F.sum((on_side & F.col("error")).cast("long")).alias(f"errors_{side}"),
            F.sum((on_side & (F.length("prompt_text") > 0)).cast("long")).alias(f"prompt_text_{side}"),
            F.sum((on_side & (F.length("response_text") > 0)).cast("long")).alias(f"response_text_{side}"),
        ]
    row = both.agg(*aggregates).first()
    return {key: int(value or 0) for key, value in (row.asDict() if row is not None else {}).items()}


def _pairing(both: DataFrame, settings: DriftSettings, sizes: dict[str, int]) -> tuple[DataFrame | None, int]:
    """The paired prompts (as a DataFrame of keys) and their number, as ``pairing.pair_prompts``
    decides it: prompts asked equally often on both sides, enough of them, covering half of each side."""
    from pyspark.sql import functions as F

    if settings.pairing == "off":
        return None, 0
    counts = (
        both.where(F.col("key").isNotNull() & (F.col("key") != ""))
        .groupBy("key")
        .agg(F.sum(1 - F.col("side")).alias("nb"), F.sum("side").alias("nc"))
    )
    paired = counts.where((F.col("nb") > 0) & (F.col("nb") == F.col("nc"))).select("key", "nb", "nc").cache()
    row = paired.agg(F.count("*").alias("k"), F.sum("nb").alias("nb"), F.sum("nc").alias("nc")).first()
    k, nb, nc = (
        (int(row["k"] or 0), int(row["nb"] or 0), int(row["nc"] or 0)) if row is not None else (0, 0, 0)
    )
    if k < settings.min_pairs or nb < sizes["rows_0"] / 2 or nc < sizes["rows_1"] / 2:
        paired.unpersist()
        return None, 0
    return paired.select("key"), k


def _numeric(
    both: DataFrame,
    names: list[str],
    sizes: dict[str, int],
    paired_keys: DataFrame | None,
    settings: DriftSettings,
) -> dict[str, NumericSummary]:
    from pyspark.sql import functions as F

    if not names:
        return {}
    binned = {name for name in names if sizes.get(f"distinct_{name}", 0) > EXACT_DISTINCT}

    def value(name: str) -> Any:
        column = F.col(name)
        if name in binned:
            return F.when(column > 0, F.pow(F.lit(10.0), F.round(F.log10(column), 3))).otherwise(column)
        return column

    pairs = F.explode(F.array(*[F.struct(F.lit(n).alias("feature"), value(n).alias("value")) for n in names]))
    long = (
        both.select("side", pairs.alias("kv"))
        .select("side", "kv.feature", "kv.value")
        .where(F.col("value").isNotNull())
    )
    counts: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    for row in long.groupBy("side", "feature", "value").count().collect():
        values, weights = counts.setdefault((row["feature"], int(row["side"])), ([], []))
        values.append(float(row["value"]))
        weights.append(float(row["count"]))
    differences = _differences(both, names, paired_keys, settings) if paired_keys is not None else {}
    return {
        name: NumericSummary(
            Weighted.from_counts(*counts.get((name, 0), ([], []))),
            Weighted.from_counts(*counts.get((name, 1), ([], []))),
            differences.get(name),
        )
        for name in names
    }


def _differences(
    both: DataFrame, names: list[str], paired_keys: DataFrame, settings: DriftSettings
) -> dict[str, np.ndarray]:
    """Per numeric feature, per paired prompt with as many values on each side: the change in
    mean ``log1p`` (``Pairing.differences``)."""
    from pyspark.sql import functions as F

    aggregates = []
    for name in names:
        for side in (0, 1):
            present = (F.col("side") == side) & F.col(name).isNotNull()
            aggregates += [
                F.sum(F.when(present, F.log1p(F.col(name)))).alias(f"{name}__s{side}"),
                F.sum(present.cast("long")).alias(f"{name}__c{side}"),
            ]
    rows = both.join(F.broadcast(paired_keys), "key").groupBy("key").agg(*aggregates).collect()
    result: dict[str, np.ndarray] = {}
    for name in names:
        diffs = [
            r[f"{name}__s1"] / r[f"{name}__c1"] - r[f"{name}__s0"] / r[f"{name}__c0"]
            for r in rows
            if r[f"{name}__c0"] and r[f"{name}__c0"] == r[f"{name}__c1"]
        ]
        if len(diffs) >= settings.min_pairs:
            result[name] = np.array(diffs, dtype=np.float64)
    return result


def _categories(both: DataFrame, names: list[str]) -> dict[str, CategorySummary]:
    from pyspark.sql import functions as F

    if not names:
        return {}
    pairs = F.explode(F.array(*[F.struct(F.lit(n).alias("feature"), F.col(n).alias("value")) for n in names]))
    long = (
        both.select("side", pairs.alias("kv"))
        .select("side", "kv.feature", "kv.value")
        .where(F.col("value").isNotNull())
    )
    counts: dict[tuple[str, int], dict[str, int]] = {}
    for row in long.groupBy("side", "feature", "value").count().collect():
        counts.setdefault((row["feature"], int(row["side"])), {})[str(row["value"])] = int(row["count"])
    return {name: CategorySummary(counts.get((name, 0), {}), counts.get((name, 1), {})) for name in names}


def _collect_texts(both: DataFrame, names: list[str]) -> list[Any]:
    """Every row with a non-empty text of ``names``, in row order (one job for all of them)."""
    from pyspark.sql import functions as F

    present = F.lit(False)
    for name in names:
        present = present | (F.length(name) > 0)
    return both.where(present).select("side", "key", *names, "_row").orderBy("_row").collect()


def _text(
    both: DataFrame,
    name: str,
    sizes: dict[str, int],
    paired_keys: DataFrame | None,
    settings: DriftSettings,
    collected: list[Any] | None,
) -> TextSummary:
    from pyspark.sql import functions as F

    counts = sizes[f"{name}_0"], sizes[f"{name}_1"]
    texts = both.where(F.length(name) > 0)
    full_js = None
    if collected is None:
        sums = profile_sums(texts, name, settings)
        full_js = float(js_distance(sums[0], sums[1])[0])
        if paired_keys is not None:
            share = settings.text_sample / max(counts)
            chosen = paired_keys.where(F.rand(settings.seed) < share)
            texts = texts.join(F.broadcast(chosen), "key")
        else:
            texts = texts.where(F.rand(settings.seed) < settings.text_sample / max(counts))
    if collected is None:
        collected = texts.select("side", "key", name, "_row").orderBy("_row").collect()
    rows = [row for row in collected if row[name]]
    by_side: tuple[list[str], list[str]] = ([], [])
    keys: tuple[list[str | None], list[str | None]] = ([], [])
    for row in rows:
        by_side[int(row["side"])].append(str(row[name]))
        keys[int(row["side"])].append(row["key"])
    blocks = None
    if paired_keys is not None:
        order = {key: i for i, key in enumerate(sorted({k for k in [*keys[0], *keys[1]] if k}))}
        blocks = [order.get(k or "", len(order)) if k else len(order) for k in [*keys[0], *keys[1]]]
    return TextSummary(
        profile_matrix(by_side[0], settings.ngram, settings.ngram_dim),
        profile_matrix(by_side[1], settings.ngram, settings.ngram_dim),
        counts,
        blocks=blocks,
        full_js=full_js,
        texts=(by_side[0][:500], by_side[1][:500]),
    )


def _examples(both: DataFrame, paired_keys: DataFrame | None, settings: DriftSettings) -> list[Any]:
    """The first row of each paired prompt on each side (at most 5,000 prompts, chosen at
    random beyond), through the local engine's ranking."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if paired_keys is None or settings.examples <= 0:
        return []
    keys = paired_keys.orderBy(F.xxhash64("key", F.lit(settings.seed))).limit(5000)
    first = F.row_number().over(Window.partitionBy("key", "side").orderBy("_row"))
    rows = (
        both.join(F.broadcast(keys), "key")
        .withColumn("_first", first)
        .where(F.col("_first") == 1)
        .select("side", "key", "trace_id", *EXAMPLE_COLUMNS)
        .orderBy("key", "side")
        .collect()
    )
    sides: tuple[list[Any], list[Any]] = ([], [])
    for row in rows:
        sides[int(row["side"])].append(row)
    columns = [
        FeatureColumns.from_lists(
            {name: [r[name] for r in side] for name in EXAMPLE_COLUMNS},
            [r["key"] for r in side],
            [r["trace_id"] for r in side],
        )
        for side in sides
    ]
    return find_examples(columns[0], columns[1], pair_prompts(columns[0], columns[1], settings), settings)
