"""Which Spark session the engine uses.

In order: the active session (a Databricks notebook or job, or one the caller started); a
Databricks Connect session when ``databricks-connect`` is installed and ``DATABRICKS_CLUSTER_ID``
or ``DATABRICKS_SERVERLESS_COMPUTE_ID`` names the compute (with the SDK's unified auth:
``DATABRICKS_HOST``, a token or a profile); else a local session (``local[*]``; Java 17+).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session() -> SparkSession:
    """The session to compare with (see the module docstring)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get("DATABRICKS_CLUSTER_ID") or os.environ.get("DATABRICKS_SERVERLESS_COMPUTE_ID"):
        try:
            from databricks.connect import DatabricksSession
        except ImportError:
            pass
        else:
            session: SparkSession = DatabricksSession.builder.getOrCreate()
            return session
    return local_session()


def local_session(cores: str = "*") -> SparkSession:
    """A local Spark session sized for one machine: few shuffle partitions, no UI, Arrow on."""
    import sys
    from pathlib import Path

    from pyspark.sql import SparkSession

    import pytest_llmops

    # The pandas UDF's Python workers import pytest_llmops (and pyarrow): run them on this
    # Python, and let them find the package where we did.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    root = str(Path(pytest_llmops.__file__).resolve().parents[1])
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p]])

    return (
        SparkSession.builder.master(f"local[{cores}]")
        # the Python workers of the pandas UDF (n-gram profiles) import pytest_llmops: this Python
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .appName("pytest-llmops drift")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .config("spark.sql.adaptive.coalescePartitions.initialPartitionNum", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
