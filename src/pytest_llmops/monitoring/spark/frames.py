"""DataFrames of features: what a REF names, read with Spark, and the feature columns computed
in Spark SQL exactly as ``features.from_flat_dict`` (and ``serving.serving_to_flat`` for
inference tables) compute them in Python; ``tests/test_drift_spark.py`` checks both agree.

REFs: ``PATH.parquet`` (a file or a folder), ``PATH.jsonl``, ``delta:PATH`` (needs Delta Lake:
built into Databricks, ``delta-spark`` elsewhere), ``table:CATALOG.SCHEMA.TABLE`` (any table
the session sees, Unity Catalog on Databricks). Rows are flat traces, or rows of a serving
inference table (``request``/``response`` JSON columns), recognised by their columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_llmops.monitoring.sources import RefError
from pytest_llmops.monitoring.window import TimeWindow

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

NUMERIC = ("prompt_tokens", "completion_tokens", "total_tokens", "latency_ms")
# Python's str.split() whitespace; Java's \s with (?U) is Unicode White_Space
_WHITESPACE = "(?U)\\s+"
_REQUEST_SCHEMA = "struct<messages: array<struct<role: string, content: string>>, model: string>"
_RESPONSE_SCHEMA = (
    "struct<model: string, error: string, choices: array<struct<finish_reason: string, "
    "message: struct<content: string, tool_calls: array<string>>>>, "
    "usage: struct<prompt_tokens: double, completion_tokens: double, total_tokens: double>>"
)


def read_ref(spark: SparkSession, ref: str, window: TimeWindow | None = None) -> DataFrame:
    """The feature DataFrame of a REF (see the module docstring), inside ``window``."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    text = ref.strip()
    try:
        if text.startswith("table:"):
            frame = spark.table(text.removeprefix("table:"))
        elif text.startswith("delta:"):
            frame = spark.read.format("delta").load(text.removeprefix("delta:"))
        elif text.lower().endswith(".parquet"):
            frame = spark.read.parquet(text)
        elif text.lower().endswith(".jsonl"):
            frame = spark.read.json(text)
        else:
            raise RefError(
                f"REF {ref!r}: --engine spark reads PATH.parquet, PATH.jsonl, delta:PATH and table:NAME; "
                "MLflow REFs (runs, sessions, experiments) need --engine local."
            )
        frame = feature_frame(frame.withColumn("_row", F.monotonically_increasing_id()))
        if window is not None and window.bounded:
            if window.since_ms is not None:
                frame = frame.where(F.col("timestamp_ms") >= F.lit(window.since_ms))
            if window.until_ms is not None:
                frame = frame.where(F.col("timestamp_ms") < F.lit(window.until_ms))
        return frame
    except PySparkException as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RefError(f"REF {ref!r}: Spark cannot read it ({first[:300]}).") from None


def feature_frame(frame: DataFrame) -> DataFrame:
    """The features of every row (flat traces or inference-table rows), plus ``key``,
    ``trace_id``, ``timestamp_ms`` and ``_row`` (the row's order, kept when present)."""
    columns = set(frame.columns)
    flat = (
        serving_flat(frame)
        if {"request", "response", "status_code"} <= columns and "prompt" not in columns
        else frame
    )
    return _features(flat)


def serving_flat(frame: DataFrame) -> DataFrame:
    """Inference-table rows as flat traces (``serving.serving_to_flat`` in SQL; chat format)."""
    from pyspark.sql import functions as F

    columns = set(frame.columns)
    request = F.from_json(F.col("request").cast("string"), _REQUEST_SCHEMA)
    response = F.from_json(F.col("response").cast("string"), _RESPONSE_SCHEMA)
    parsed = frame.withColumn("_req", request).withColumn("_resp", response)
    status = F.coalesce(F.expr("try_cast(`status_code` AS INT)"), F.lit(200))
    error = (status >= 400) | F.col("_resp").isNull() | F.col("_resp.error").isNotNull()
    choice = F.col("_resp.choices").getItem(0)
    contents = F.transform(F.col("_req.messages"), lambda m: m["content"])
    prompt = F.concat_ws("\n", F.filter(contents, lambda c: c.isNotNull() & (c != "")))
    metadata = (
        F.col("request_metadata").getItem("endpoint_name") if "request_metadata" in columns else F.lit(None)
    )
    served = F.col("served_entity_id") if "served_entity_id" in columns else F.lit(None)
    latency = [F.col(name) for name in ("execution_time_ms", "execution_duration_ms") if name in columns]
    timestamps = []
    if "timestamp_ms" in columns:
        timestamps.append(F.col("timestamp_ms").cast("double"))
    if "request_time" in columns:
        timestamps.append(F.unix_micros(F.col("request_time").cast("timestamp")) / 1000.0)
    ids = [F.col(name) for name in ("databricks_request_id", "client_request_id") if name in columns]
    row = [F.col("_row")] if "_row" in columns else []
    return parsed.select(
        *row,
        F.coalesce(*ids, F.lit("")).alias("trace_id") if ids else F.lit("").alias("trace_id"),
        prompt.alias("prompt"),
        F.when(error, F.lit(""))
        .otherwise(F.coalesce(choice["message"]["content"], F.lit("")))
        .alias("response"),
        F.col("_resp.usage.prompt_tokens").alias("prompt_tokens"),
        F.col("_resp.usage.completion_tokens").alias("completion_tokens"),
        F.col("_resp.usage.total_tokens").alias("total_tokens"),
        (F.coalesce(*latency) if latency else F.lit(None)).cast("double").alias("latency_ms"),
        F.when(error, F.lit(None))
        .otherwise(F.nullif(choice["finish_reason"], F.lit("")))
        .alias("finish_reason"),
        error.alias("error"),
        F.when(error, F.lit(None))
        .otherwise(
            F.when(choice["message"]["tool_calls"].isNull(), F.lit(0.0)).otherwise(
                F.size(choice["message"]["tool_calls"]).cast("double")
            )
        )
        .alias("tool_calls"),
        F.nullif(F.col("_resp.model"), F.lit("")).alias("model"),
        F.coalesce(F.nullif(metadata, F.lit("")), served, F.col("_req.model")).alias("deployment"),
        (F.coalesce(*timestamps) if timestamps else F.lit(None).cast("double")).alias("timestamp_ms"),
    )


def _features(frame: DataFrame) -> DataFrame:
    """``from_flat_dict`` in SQL."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType

    columns = {field.name: field.dataType for field in frame.schema.fields}

    def column(name: str) -> Column:
        return F.col(name) if name in columns else F.lit(None)

    def number(name: str) -> Column:
        value = F.expr(f"try_cast(`{name}` AS DOUBLE)") if name in columns else F.lit(None).cast("double")
        return F.when(F.isnan(value) | (F.abs(value) == float("inf")), F.lit(None)).otherwise(value)

    error = F.coalesce(
        F.expr("try_cast(`error` AS BOOLEAN)") if "error" in columns else F.lit(None), F.lit(False)
    )
    prompt = F.coalesce(column("prompt").cast("string"), F.lit(""))
    response = F.when(error, F.lit("")).otherwise(F.coalesce(column("response").cast("string"), F.lit("")))
    if isinstance(columns.get("tool_calls"), ArrayType):
        tool_calls = F.when(F.col("tool_calls").isNull(), F.lit(None)).otherwise(
            F.size("tool_calls").cast("double")
        )
    else:
        tool_calls = number("tool_calls")
    tool_calls = F.when(tool_calls.isNull() & ~error, F.lit(0.0)).otherwise(tool_calls)
    stripped = F.regexp_replace(response, f"^{_WHITESPACE}|{_WHITESPACE}$", "")
    words = F.when(stripped == "", F.lit(0)).otherwise(F.size(F.split(stripped, _WHITESPACE)))
    hashed = F.substring(F.sha1(F.encode(prompt, "UTF-8")), 1, 16)
    key = F.coalesce(column("key").cast("string"), F.when(prompt != "", hashed))
    total = F.coalesce(number("total_tokens"), number("prompt_tokens") + number("completion_tokens"))
    return frame.select(
        (F.col("_row") if "_row" in columns else F.monotonically_increasing_id()).alias("_row"),
        F.coalesce(column("trace_id").cast("string"), F.lit("")).alias("trace_id"),
        number("prompt_tokens").alias("prompt_tokens"),
        number("completion_tokens").alias("completion_tokens"),
        total.alias("total_tokens"),
        number("latency_ms").alias("latency_ms"),
        F.when(error, F.lit(None)).otherwise(F.length(response).cast("double")).alias("response_chars"),
        F.when(error, F.lit(None)).otherwise(words.cast("double")).alias("response_words"),
        tool_calls.alias("tool_calls"),
        F.when(error, F.lit(None))
        .otherwise(F.nullif(column("finish_reason").cast("string"), F.lit("")))
        .alias("finish_reason"),
        error.alias("error"),
        F.nullif(column("model").cast("string"), F.lit("")).alias("model"),
        F.nullif(column("deployment").cast("string"), F.lit("")).alias("deployment"),
        prompt.alias("prompt_text"),
        response.alias("response_text"),
        key.alias("key"),
        number("timestamp_ms").alias("timestamp_ms"),
    )
