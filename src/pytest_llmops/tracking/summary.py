"""The session summary: one row per marked test, totals, and how to open the store.

Rows are built where the test ran and travel to the xdist controller on the test's teardown
report (:data:`REPORT_ATTRIBUTE`, serialised by pytest with the report), so the controller,
or the only process, renders the same table, JSON or Markdown either way.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

REPORT_ATTRIBUTE = "llmops_run"
"""Name of the teardown report attribute that carries a :class:`TestRecord` as a dict."""
UNTRACKED_ATTRIBUTE = "llmops_untracked"
"""Teardown report attribute of a tracked test that ran without its run: the store's failure."""


@dataclass
class TestRecord:
    """What the summary shows of one marked test."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: str
    run_id: str
    experiment: str
    worker: str = "main"
    duration_s: float = 0.0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latency_ms_mean: float | None = None
    latency_ms_max: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    """Metrics evaluation added to the run: ``llmops.cost_usd``, ``llmops.repetitions``,
    ``llmops.repetitions_passed``, ``llmops.pass_rate`` and ``eval.<scorer>.<aggregate>``."""
    notes: list[str] = field(default_factory=list)

    @property
    def cost_usd(self) -> float | None:
        return self.metrics.get("llmops.cost_usd")

    @property
    def scores(self) -> dict[str, float]:
        """``eval.<scorer>.<aggregate>`` metrics, by name without the ``eval.`` prefix."""
        return {name[5:]: value for name, value in sorted(self.metrics.items()) if name.startswith("eval.")}

    @property
    def repetitions(self) -> str | None:
        """``passed/total`` for a repeated test."""
        total = self.metrics.get("llmops.repetitions")
        if total is None:
            return None
        return f"{int(self.metrics.get('llmops.repetitions_passed', 0))}/{int(total)}"

    def extras(self) -> str:
        """Repetitions and scores, for the end of the terminal row."""
        parts = [f"{self.repetitions} passed"] if self.repetitions else []
        parts += [f"{name} {value:.2f}" for name, value in self.scores.items()]
        return f"  [{'; '.join(parts)}]" if parts else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Summary:
    """The tracking summary of a session."""

    tracking_uri: str
    ui_command: str
    session_id: str
    records: list[TestRecord] = field(default_factory=list)
    parent_runs: list[dict[str, str]] = field(default_factory=list)
    """``{"experiment", "experiment_id", "parent_run_id", "status"}`` per experiment used."""
    errors: list[str] = field(default_factory=list)
    untracked: int = 0
    """Tracked tests that ran without their run, because the store failed (see ``errors``)."""

    def sorted_records(self) -> list[TestRecord]:
        return sorted(self.records, key=lambda r: r.nodeid)

    def totals(self) -> dict[str, Any]:
        """Counts and sums over all rows; the mean latency is over all LLM calls."""
        outcomes = Counter(r.outcome for r in self.records)
        calls = sum(r.llm_calls for r in self.records)
        weighted = sum((r.latency_ms_mean or 0.0) * r.llm_calls for r in self.records)
        maxima = [r.latency_ms_max for r in self.records if r.latency_ms_max is not None]
        return {
            "tests": len(self.records),
            "outcomes": dict(sorted(outcomes.items())),
            "llm_calls": calls,
            "prompt_tokens": sum(r.prompt_tokens for r in self.records),
            "completion_tokens": sum(r.completion_tokens for r in self.records),
            "total_tokens": sum(r.total_tokens for r in self.records),
            "latency_ms_mean": weighted / calls if calls else None,
            "latency_ms_max": max(maxima) if maxima else None,
            "duration_s": sum(r.duration_s for r in self.records),
            "cost_usd": sum(r.cost_usd or 0.0 for r in self.records),
        }

    # -- renderings ------------------------------------------------------------------
    def lines(self) -> list[str]:
        """The terminal table, totals and the command that opens the store; only the
        warnings when no marked test ran (nothing else to show)."""
        if not self.records:
            return self._warnings()
        header = f"{'outcome':<11} {'calls':>5} {'tokens':>8} {'mean ms':>9} {'cost $':>9}  test"
        lines = [header]
        for record in self.sorted_records():
            lines.append(
                f"{record.outcome:<11} {record.llm_calls:>5} {record.total_tokens:>8} "
                f"{_ms(record.latency_ms_mean):>9} {_usd(record.cost_usd):>9}  "
                f"{record.nodeid}{record.extras()}"
            )
        totals = self.totals()
        lines.append(
            f"{'total':<11} {totals['llm_calls']:>5} {totals['total_tokens']:>8} "
            f"{_ms(totals['latency_ms_mean']):>9} {_usd(totals['cost_usd']):>9}  {_tests(totals)}; tokens: "
            f"{totals['prompt_tokens']} prompt + {totals['completion_tokens']} completion"
        )
        for parent in self.parent_runs:
            lines.append(
                f"experiment {parent['experiment']!r} (id {parent['experiment_id']}), "
                f"session run {parent['parent_run_id']} ({parent.get('status', 'RUNNING')})"
            )
        lines.append(f"tracking store: {self.tracking_uri}")
        lines.append(f"open it: {self.ui_command}")
        lines.extend(self._warnings())
        lines.extend(f"note: {r.nodeid}: {note}" for r in self.sorted_records() for note in r.notes)
        return lines

    def _warnings(self) -> list[str]:
        lines = [f"warning: {error}" for error in self.errors]
        if self.untracked:
            lines.append(
                f"warning: {self.untracked} tracked test{'' if self.untracked == 1 else 's'} ran without "
                "tracking: their outcomes are their own; --llmops-strict makes them fail instead."
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "tracking_uri": self.tracking_uri,
            "ui_command": self.ui_command,
            "parent_runs": self.parent_runs,
            "totals": self.totals(),
            "tests": [
                {**r.to_dict(), "cost_usd": r.cost_usd, "scores": r.scores, "repetitions": r.repetitions}
                for r in self.sorted_records()
            ],
            "errors": self.errors,
            "untracked": self.untracked,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_markdown(self) -> str:
        totals = self.totals()
        scores = sorted({name for r in self.records for name in r.scores})
        repeated = any(r.repetitions for r in self.records)
        extra = (["repetitions passed"] if repeated else []) + scores
        out = [
            "# pytest-llmops: MLflow runs",
            "",
            "| outcome | LLM calls | prompt tokens | completion tokens | total tokens | mean latency (ms) "
            "| cost (USD) | " + "".join(f"{_md(name)} | " for name in extra) + "test | run |",
            "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(extra) + "---|---|",
        ]
        for r in self.sorted_records():
            cells = ([r.repetitions or "-"] if repeated else []) + [_score(r.scores.get(n)) for n in scores]
            out.append(
                f"| {r.outcome} | {r.llm_calls} | {r.prompt_tokens} | {r.completion_tokens} | "
                f"{r.total_tokens} | {_ms(r.latency_ms_mean)} | {_usd(r.cost_usd)} | "
                + "".join(f"{cell} | " for cell in cells)
                + f"`{_md(r.nodeid)}` | `{r.run_id}` |"
            )
        out.append(
            f"| **total** | {totals['llm_calls']} | {totals['prompt_tokens']} | "
            f"{totals['completion_tokens']} | {totals['total_tokens']} | {_ms(totals['latency_ms_mean'])} | "
            f"{_usd(totals['cost_usd'])} | " + "| " * len(extra) + f"{_tests(totals)} | |"
        )
        out += ["", f"Tracking store: `{self.tracking_uri}`", ""]
        for parent in self.parent_runs:
            out.append(
                f"- experiment `{parent['experiment']}` (id {parent['experiment_id']}): session run "
                f"`{parent['parent_run_id']}` ({parent.get('status', 'RUNNING')})"
            )
        out += ["", "Open it:", "", "```", self.ui_command, "```", ""]
        out.extend(f"> {line}" for line in self._warnings())
        out.extend(f"> note: `{_md(r.nodeid)}`: {note}" for r in self.sorted_records() for note in r.notes)
        return "\n".join(out) + "\n"

    def write(self, path: Path, scrub: Callable[[str], str] | None = None) -> None:
        """Write the report: Markdown for ``.md``, JSON otherwise (``scrub``: the session's
        secret scrubbing, applied to the text before it is written)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        text = self.to_markdown() if path.suffix.lower() in (".md", ".markdown") else self.to_json()
        path.write_text(scrub(text) if scrub is not None else text, encoding="utf-8")


def session_metrics(records: list[TestRecord]) -> dict[str, float]:
    """Totals of a session's tests in one experiment, logged on its session run."""
    if not records:
        return {}
    totals = Summary("", "", "", records).totals()
    metrics = {
        "llmops.tests": float(totals["tests"]),
        "llmops.llm_calls": float(totals["llm_calls"]),
        "llmops.prompt_tokens": float(totals["prompt_tokens"]),
        "llmops.completion_tokens": float(totals["completion_tokens"]),
        "llmops.total_tokens": float(totals["total_tokens"]),
        "llmops.cost_usd": float(totals["cost_usd"]),
    }
    for name, count in totals["outcomes"].items():
        metrics[f"llmops.{name}"] = float(count)
    return metrics


def _tests(totals: Mapping[str, Any]) -> str:
    """``1 test (1 passed)``, ``12 tests (2 error, 1 failed, 9 passed)``."""
    count = totals["tests"]
    outcomes = ", ".join(f"{n} {name}" for name, n in totals["outcomes"].items())
    return f"{count} test{'' if count == 1 else 's'} ({outcomes})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def merge(records: Iterable[Mapping[str, Any]]) -> list[TestRecord]:
    return [TestRecord.from_dict(r) for r in records]
