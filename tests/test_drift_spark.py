"""The Spark engine on a local Spark session (Java 17, pyspark from the registry; `./dev`
installs the `[spark]` extra): the same features and the same tests as the local engine, so
on the same data both reach the same DRIFT decisions with effects within 1 %.

Databricks Connect and a Databricks cluster cannot run here (loopback only); the session
selection for them is documented in docs/monitoring.md, and what they run is this code.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmops.cli import main
from pytest_llmops.monitoring import DriftReport, compare_refs
from pytest_llmops.monitoring.features import from_flat_dict
from pytest_llmops.monitoring.serving import serving_to_flat
from pytest_llmops.monitoring.synthetic import Generator, Shift
from tests.serving_tables import serving_row, write_parquet

pyspark = pytest.importorskip(
    "pyspark", reason="the Spark engine needs pip install -e '.[spark]' (./dev does it)"
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

SHIFT = Shift(completion_scale=1.3, preamble="Sure! Here it is: ", latency_scale=1.05)


@pytest.fixture(scope="module")
def spark() -> Any:
    from pytest_llmops.monitoring.spark.session import local_session

    session = local_session("2")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A suite run twice (flat Parquet), and the same traffic as serving inference tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("spark-drift")
    generator = Generator()
    baseline, current = generator.traces(200, 1), generator.traces(200, 2, SHIFT)
    paths = {}
    for name, rows in (("flat_base", baseline), ("flat_cur", current)):
        paths[name] = str(folder / f"{name}.parquet")
        pq.write_table(pa.Table.from_pylist(rows), paths[name])
    traffic = Generator(mode="traffic")
    for name, rows in (
        ("serving_base", traffic.traces(300, 3)),
        ("serving_cur", traffic.traces(300, 4, SHIFT)),
    ):
        paths[name] = str(folder / f"{name}.parquet")
        write_parquet([serving_row(row, i) for i, row in enumerate(rows)], paths[name])
    return paths


def assert_same_report(local: DriftReport, spark: DriftReport) -> None:
    assert spark.engine == "spark" and local.engine == "local"
    assert (spark.n_baseline, spark.n_current, spark.paired_prompts) == (
        local.n_baseline,
        local.n_current,
        local.paired_prompts,
    )
    assert spark.drifted_features == local.drifted_features
    for name, ours in local.features.items():
        theirs = spark.features[name]
        assert (theirs.status, theirs.test, theirs.n_baseline, theirs.n_current) == (
            ours.status,
            ours.test,
            ours.n_baseline,
            ours.n_current,
        ), name
        for a, b in ((ours.effect, theirs.effect), (ours.practical_effect, theirs.practical_effect)):
            assert (a is None) == (b is None), name
            if a is not None and b is not None and math.isfinite(a):
                assert b == pytest.approx(a, rel=0.01, abs=1e-9), name
    assert [e.key for e in spark.examples] == [e.key for e in local.examples]


def test_spark_and_local_engines_agree_on_a_suite_in_parquet(spark: Any, files: dict[str, str]) -> None:
    from pytest_llmops.monitoring.spark.engine import compare_spark_refs

    local = compare_refs(files["flat_base"], files["flat_cur"])
    remote = compare_spark_refs(files["flat_base"], files["flat_cur"], spark=spark)
    assert local.drifted and {"completion_tokens", "response_text"} <= set(local.drifted_features)
    assert local.paired_prompts == 200
    assert_same_report(local, remote)


def test_spark_reads_serving_inference_tables_like_the_local_engine(
    spark: Any, files: dict[str, str]
) -> None:
    """Rows of a serving inference table (request/response JSON columns): Spark's SQL features
    equal Python's row by row, and both engines reach the same report."""
    from pytest_llmops.monitoring.spark.engine import compare_spark_refs
    from pytest_llmops.monitoring.spark.frames import read_ref

    frame = read_ref(spark, files["serving_cur"]).orderBy("_row").collect()
    import pyarrow.parquet as pq

    rows = pq.read_table(files["serving_cur"]).to_pylist()
    assert len(frame) == len(rows) == 300
    for row, features in zip(rows, frame, strict=True):
        expected = from_flat_dict(serving_to_flat(row))
        for name in ("prompt_tokens", "completion_tokens", "total_tokens", "latency_ms", "response_chars"):
            assert features[name] == getattr(expected, name), name
        for name in ("response_words", "tool_calls", "finish_reason", "error", "model", "deployment", "key"):
            assert features[name] == getattr(expected, name), name
        assert (features["prompt_text"], features["response_text"]) == (
            expected.prompt_text,
            expected.response_text,
        )
    assert any(f["error"] for f in frame) and any(f["tool_calls"] for f in frame)

    local = compare_refs(files["serving_base"], files["serving_cur"])
    remote = compare_spark_refs(files["serving_base"], files["serving_cur"], spark=spark)
    assert local.drifted and "response_text" in local.drifted_features
    assert_same_report(local, remote)


def test_spark_histograms_of_many_distinct_latencies_stay_within_1_percent(
    spark: Any, files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past EXACT_DISTINCT distinct values a continuous feature is counted in 0.23 % wide
    logarithmic bins (here from 10 on, so these 200 latencies are binned)."""
    from pytest_llmops.monitoring.spark import engine

    monkeypatch.setattr(engine, "EXACT_DISTINCT", 10)
    local = compare_refs(files["flat_base"], files["flat_cur"])
    remote = engine.compare_spark_refs(files["flat_base"], files["flat_cur"], spark=spark)
    ours, theirs = local.features["latency_ms"], remote.features["latency_ms"]
    assert theirs.status == ours.status
    for key in ("median_baseline", "median_current", "p90_baseline", "p90_current"):
        assert theirs.details[key] == pytest.approx(ours.details[key], rel=0.01)
    assert theirs.practical_effect == pytest.approx(ours.practical_effect, rel=0.01, abs=0.002)


def test_spark_profile_sums_of_texts_beyond_the_sample(spark: Any, files: dict[str, str]) -> None:
    """Past ``text_sample`` texts per side, the JS distance of all texts comes from profile sums
    computed in Spark's Python workers (a pandas UDF); it equals the local engine's."""
    from pytest_llmops.monitoring import DriftSettings
    from pytest_llmops.monitoring.spark.engine import compare_spark_refs

    settings = DriftSettings(text_sample=50, permutations=199)
    local = compare_refs(files["flat_base"], files["flat_cur"], settings=settings)
    remote = compare_spark_refs(files["flat_base"], files["flat_cur"], settings=settings, spark=spark)
    for name in ("prompt_text", "response_text"):
        ours, theirs = local.features[name], remote.features[name]
        assert "on a sample of" in ours.test and "on a sample of" in theirs.test
        assert theirs.effect == pytest.approx(ours.effect, rel=0.01, abs=1e-9), name
        assert theirs.status == ours.status, name


def test_spark_tables_and_the_command(
    spark: Any, files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table REF (``table:NAME``) and ``pytest-llmops drift --engine spark``."""
    from pytest_llmops.monitoring.spark.engine import compare_spark_refs

    spark.read.parquet(files["flat_base"]).write.mode("overwrite").option(
        "path", str(tmp_path / "t")
    ).saveAsTable("drift_baseline_traces")
    by_table = compare_spark_refs("table:drift_baseline_traces", files["flat_cur"], spark=spark)
    assert by_table.n_baseline == 200 and by_table.drifted

    out = tmp_path / "report.json"
    code = main(
        [
            "drift",
            "--engine",
            "spark",
            "--baseline",
            files["flat_base"],
            "--current",
            files["flat_cur"],
            "--no-log",
            "--json",
            str(out),
            "--fail-on-drift",
        ]
    )
    printed = capsys.readouterr()
    assert code == 1, printed.err
    report = json.loads(out.read_text())
    assert report["engine"] == "spark" and "completion_tokens" in report["drifted_features"]
    assert report["examples"] and report["examples"][0]["baseline"] != report["examples"][0]["current"]

    assert (
        main(["drift", "--engine", "spark", "--baseline", "lab", "--current", files["flat_cur"], "--no-log"])
        == 2
    )
    assert "MLflow REFs (runs, sessions, experiments) need --engine local" in capsys.readouterr().err


def test_pyspark_is_not_imported_at_plugin_load() -> None:
    code = (
        "import sys, pytest_llmops.plugin, pytest_llmops.monitoring, pytest_llmops.monitoring.cli; "
        "print([m for m in ('pyspark', 'pyarrow', 'numpy', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
