"""Drift at scale: the report from features already extracted, 1k to 1M traces per side
(local engine), 10M rows per side (Spark engine, local session), and loading 10k traces
from the embedded MLflow store.

    python benchmarks/bench_drift.py local [--sizes 1000,10000,100000,1000000]
    python benchmarks/bench_drift.py spark [--rows 10000000]
    python benchmarks/bench_drift.py store [--traces 10000]

Each local size runs in its own process (so its peak memory is its own): the synthetic traces
are drawn as columns (``synthetic_columns``, traffic, the current side 2 % slower), then
``compare_columns`` is timed, wall and CPU, and the process's peak RSS is read. Time per trace
(CPU, which the machine's load does not inflate) is given as a ratio to the 10k run of the
same session, so linear growth reads as ~1.0x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import machine


def one_local(n: int) -> dict[str, float]:
    """Draw n traces per side and time one comparison (in this process)."""
    from pytest_llmops.monitoring.engine import compare_columns
    from pytest_llmops.monitoring.synthetic import Generator, Shift
    from pytest_llmops.monitoring.synthetic_columns import draw_columns

    generator = Generator(mode="traffic")
    baseline = draw_columns(generator, n, 1)
    current = draw_columns(generator, n, 2, Shift(latency_scale=1.02))
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    wall, cpu = time.perf_counter(), time.process_time()
    report = compare_columns(baseline, current)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_after_drawing_mb": rss_data,
        "peak_rss_mb": peak,
        "drifted": float(report.drifted),
        "latency_status_below": float(report.features["latency_ms"].status == "changed (below threshold)"),
    }


def local(sizes: list[int]) -> None:
    rows = []
    for n in sizes:
        done = subprocess.run(
            [sys.executable, __file__, "one-local", str(n)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{n}: {rows[-1]}", file=sys.stderr)
    reference = next((r for r in rows if r["n"] == 10_000), rows[0])
    per_trace = reference["cpu_s"] / reference["n"]
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end.\n")
    print(
        "| traces per side | compare (wall) | CPU | time per trace vs 10k | peak RSS | RSS of the data | verdict |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        verdict = "no drift" if not row["drifted"] else "DRIFT"
        if row["latency_status_below"]:
            verdict += " (latency changed below threshold)"
        print(
            f"| {row['n']:,} | {row['wall_s']:.2f} s | {row['cpu_s']:.2f} s | "
            f"{row['cpu_s'] / row['n'] / per_trace:.2f}x | {row['peak_rss_mb']:.0f} MB | "
            f"{row['rss_after_drawing_mb']:.0f} MB | {verdict} |"
        )


def spark(rows: int) -> None:
    """10M rows per side as Parquet (written in parts of 1M), compared on a local session."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pytest_llmops.monitoring.features import FEATURES
    from pytest_llmops.monitoring.spark.engine import compare_spark_refs
    from pytest_llmops.monitoring.spark.session import local_session
    from pytest_llmops.monitoring.synthetic import Generator, Shift
    from pytest_llmops.monitoring.synthetic_columns import draw_columns

    folder = Path(tempfile.mkdtemp(prefix="llmops-spark-bench-"))
    generator = Generator(mode="traffic")
    started = time.perf_counter()
    part = min(rows, 1_000_000)
    for side, shift in (("base", Shift()), ("cur", Shift(latency_scale=1.02))):
        (folder / f"{side}.parquet").mkdir()
        # one part of 1M synthetic rows per side, copied: drawing 10M rows in Python would take
        # longer than Spark's comparison (the figure measures Spark, not the generator)
        columns = draw_columns(generator, part, 1 + (side == "cur"), shift)
        table = {spec.name: columns[spec.name] for spec in FEATURES if spec.kind != "text"}
        table["prompt"] = columns["prompt_text"]
        table["response"] = columns["response_text"]
        table["key"] = columns.key
        first = folder / f"{side}.parquet" / "part-000.parquet"
        pq.write_table(pa.table({k: pa.array(list(v)) for k, v in table.items()}), first)
        for index in range(1, -(-rows // part)):
            shutil.copy(first, folder / f"{side}.parquet" / f"part-{index:03d}.parquet")
    print(f"wrote 2 x {rows:,} rows in {time.perf_counter() - started:.0f} s to {folder}", file=sys.stderr)
    session = local_session()
    session.sparkContext.setLogLevel("ERROR")
    wall, cpu = time.perf_counter(), time.process_time()
    report = compare_spark_refs(str(folder / "base.parquet"), str(folder / "cur.parquet"), spark=session)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end.\n")
    print(
        f"Spark local[*]: {rows:,} rows per side ({-(-rows // part)} copies of a {part:,}-row part) "
        f"compared in {wall:.0f} s (driver process CPU {cpu:.0f} s)."
    )
    print(report.to_text())


def store(traces: int) -> None:
    """Write ``traces`` autolog-shaped traces into a fresh embedded store, then time loading them."""
    folder = Path(tempfile.mkdtemp(prefix="llmops-store-bench-"))
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "write-store", str(folder), str(traces)], env=env, check=True)
    print(f"wrote {traces:,} traces in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    from pytest_llmops.monitoring.columns import FeatureColumns
    from pytest_llmops.monitoring.features import extract_all
    from pytest_llmops.monitoring.sources import load_traces

    uri = f"sqlite:///{folder}/mlflow.db"
    wall, cpu = time.perf_counter(), time.process_time()
    loaded = load_traces("bench", uri)
    load_s, load_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    columns = FeatureColumns.from_features(extract_all(loaded))
    extract_s, extract_cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end.\n")
    print(
        f"Loading {len(loaded):,} traces from the embedded store (sqlite, 500 per page): {load_s:.1f} s wall, "
        f"{load_cpu:.1f} s CPU ({load_s / len(loaded) * 1000:.2f} ms per trace); extracting their features: "
        f"{extract_s:.1f} s wall, {extract_cpu:.1f} s CPU ({len(columns):,} rows)."
    )


def write_store(folder: str, traces: int) -> None:
    """Traces shaped as mlflow.openai.autolog() writes them (one CHAT_MODEL span each)."""
    import mlflow

    from pytest_llmops.monitoring.synthetic import Generator

    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    experiment = mlflow.create_experiment("bench", artifact_location=f"{folder}/artifacts")
    rows = Generator(mode="traffic").traces(traces, 1)
    with mlflow.start_run(experiment_id=experiment):
        for row in rows:
            with mlflow.start_span("Completions", span_type="CHAT_MODEL") as span:
                span.set_inputs({"model": "gpt-4o", "messages": [{"role": "user", "content": row["prompt"]}]})
                if not row.get("error"):
                    usage = {
                        "prompt_tokens": row["prompt_tokens"],
                        "completion_tokens": row["completion_tokens"],
                    }
                    span.set_outputs(
                        {
                            "model": row["model"],
                            "choices": [
                                {
                                    "message": {"content": row["response"]},
                                    "finish_reason": row["finish_reason"],
                                }
                            ],
                            "usage": usage,
                        }
                    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("local", "spark", "store", "one-local", "write-store"))
    parser.add_argument("args", nargs="*")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--traces", type=int, default=10_000)
    options = parser.parse_args()
    if options.what == "one-local":
        print(json.dumps(one_local(int(options.args[0]))))
    elif options.what == "write-store":
        write_store(options.args[0], int(options.args[1]))
    elif options.what == "local":
        local([int(size) for size in options.sizes.split(",")])
    elif options.what == "spark":
        spark(options.rows)
    else:
        store(options.traces)


if __name__ == "__main__":
    main()
