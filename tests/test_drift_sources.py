"""Drift REFs that are files (JSON Lines, Parquet; flat traces or serving inference-table
rows), the command on them, and the monitoring package's structure (no import cycle, no
module over ~400 lines)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from pytest_llmops.cli import main
from pytest_llmops.monitoring import compare_refs
from pytest_llmops.monitoring.synthetic import Generator, Shift
from tests.serving_tables import serving_row, write_parquet

MONITORING = Path(__file__).resolve().parents[1] / "src" / "pytest_llmops" / "monitoring"


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def traces() -> dict[str, list[dict[str, object]]]:
    generator = Generator()
    return {
        "base": generator.traces(60, 1),
        "same": generator.traces(60, 2),
        "longer": generator.traces(60, 3, Shift(completion_scale=1.6)),
    }


def test_cli_compares_jsonl_files_without_mlflow(
    traces: dict[str, list[dict[str, object]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _write_jsonl(tmp_path / "a.jsonl", traces["base"])
    longer = _write_jsonl(tmp_path / "b.jsonl", traces["longer"])
    code = main(["drift", "--baseline", base, "--current", longer, "--no-log", "--fail-on-drift"])
    out = capsys.readouterr().out
    assert code == 1
    assert "DRIFT in" in out and "completion_tokens" in out.strip().splitlines()[-3]
    assert f"baseline: file {base} (60 traces)" in out
    same = _write_jsonl(tmp_path / "c.jsonl", traces["same"])
    assert main(["drift", "--baseline", base, "--current", same, "--no-log", "--fail-on-drift"]) == 0
    assert "No drift detected" in capsys.readouterr().out
    assert not (tmp_path / ".llmops").exists()  # no store was created or needed


def test_parquet_and_jsonl_give_the_same_report(
    traces: dict[str, list[dict[str, object]]], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in ("base", "longer"):
        pq.write_table(pa.Table.from_pylist(traces[name]), tmp_path / f"{name}.parquet")
        _write_jsonl(tmp_path / f"{name}.jsonl", traces[name])
    by_parquet = compare_refs(str(tmp_path / "base.parquet"), str(tmp_path / "longer.parquet"))
    by_jsonl = compare_refs(str(tmp_path / "base.jsonl"), str(tmp_path / "longer.jsonl"))
    assert by_parquet.to_dict()["features"] == by_jsonl.to_dict()["features"]
    assert by_parquet.drifted and by_parquet.paired_prompts == 60


def test_serving_inference_table_rows_are_read_as_traces(tmp_path: Path) -> None:
    traffic = Generator(mode="traffic")
    rows = traffic.traces(200, 5)
    write_parquet([serving_row(row, i) for i, row in enumerate(rows)], str(tmp_path / "served.parquet"))
    _write_jsonl(tmp_path / "flat.jsonl", rows)
    report = compare_refs(str(tmp_path / "flat.jsonl"), str(tmp_path / "served.parquet"))
    # the same calls, once flat and once as the serving endpoint logged them: nothing moved
    assert (
        not report.drifted
        and report.features["error"].details["rate_current"]
        == report.features["error"].details["rate_baseline"]
    )
    latency = report.features["latency_ms"]  # whole milliseconds in the table
    assert latency.details["median_current"] == pytest.approx(latency.details["median_baseline"], abs=1)


def test_file_windows_and_bad_files(
    traces: dict[str, list[dict[str, object]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timed = [dict(row, timestamp_ms=1_764_547_200_000 + i * 60_000) for i, row in enumerate(traces["base"])]
    path = _write_jsonl(tmp_path / "timed.jsonl", timed)
    # current: the first 30 minutes (30 traces); baseline: from then on (30 traces)
    code = main(
        [
            "drift",
            "--baseline",
            path,
            "--current",
            path,
            "--no-log",
            "--json",
            "-",
            "--since",
            "2025-12-01T00:00:00Z",
            "--until",
            "2025-12-01T00:30:00Z",
            "--baseline-since",
            "2025-12-01T00:30:00Z",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["current"]["traces"] == 30 and report["baseline"]["traces"] == 30

    untimed = _write_jsonl(tmp_path / "untimed.jsonl", traces["base"])
    assert main(["drift", "--baseline", untimed, "--current", path, "--no-log", "--baseline-since", "1d"]) == 2
    assert "has no timestamp_ms" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "hi"}\n{not json\n')
    assert main(["drift", "--baseline", str(broken), "--current", path, "--no-log"]) == 2
    err = capsys.readouterr().err
    assert "line 2 is not JSON" in err and "Traceback" not in err
    assert (
        main(["drift", "--baseline", str(tmp_path / "missing.parquet"), "--current", path, "--no-log"]) == 2
    )
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert main(["drift", "--baseline", str(tmp_path / "bad.parquet"), "--current", path, "--no-log"]) == 2
    assert "not a readable Parquet file" in capsys.readouterr().err


def test_file_refs_are_not_logged_without_a_run(
    traces: dict[str, list[dict[str, object]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_jsonl(tmp_path / "a.jsonl", traces["base"])
    assert main(["drift", "--baseline", path, "--current", path]) == 0
    assert "Not logged to MLflow: the current REF is not in an MLflow store" in capsys.readouterr().err


def _imports(path: Path) -> set[str]:
    """Every module of pytest_llmops.monitoring that ``path`` imports, anywhere in it
    (TYPE_CHECKING blocks and function bodies included)."""
    package = "pytest_llmops.monitoring"
    module = package + "." + ".".join(path.relative_to(MONITORING).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if (
                name.startswith(package + ".")
                and (MONITORING / Path(*name.split(".")[2:])).with_suffix(".py").exists()
            ) or (
                name.startswith(package + ".")
                and (MONITORING / Path(*name.split(".")[2:]) / "__init__.py").exists()
            ):
                found.add(name)
    found.discard(module)
    return found


def test_monitoring_has_no_import_cycle_and_no_module_over_400_lines() -> None:
    graph = {}
    for path in MONITORING.rglob("*.py"):
        name = "pytest_llmops.monitoring." + ".".join(path.relative_to(MONITORING).with_suffix("").parts)
        graph[name.removesuffix(".__init__")] = _imports(path)
        assert len(path.read_text().splitlines()) <= 400, f"{path} is over 400 lines"
    # the package's own __init__ only names modules lazily; a module importing its package is not a cycle
    graph.pop("pytest_llmops.monitoring", None)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            assert state.get(target) != 1, "import cycle: " + " -> ".join([*trail, node, target])
            if target not in state:
                visit(target, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
