"""The drift report as a terminal table: one line per feature, the warnings, the examples and
the verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping

from pytest_llmops.monitoring.model import Example, FeatureDrift, ReportData

STATUS_MARK = {"drift": "DRIFT", "changed (below threshold)": "changed (below threshold)"}


def render_text(report: ReportData, width: int = 110) -> str:
    """A terminal table: one line per feature, then warnings, examples and the verdict."""
    paired = f", paired on {report.paired_prompts} prompts" if report.paired_prompts else ""
    engine = f", {report.engine} engine" if report.engine != "local" else ""
    lines = [
        f"Drift: baseline {report.baseline_label!r} ({report.n_baseline} traces) vs current "
        f"{report.current_label!r} ({report.n_current} traces)",
        f"alpha {report.alpha:g}, Benjamini-Hochberg across features, DRIFT needs the minimum effect"
        f"{paired}{engine}",
        "",
    ]
    header = ("feature", "test", "n b/c", "change", "effect", "min effect", "p", "q", "")
    rows = [header]
    for feature in report.features.values():
        rows.append(
            (
                feature.name,
                short_test(feature),
                f"{feature.n_baseline}/{feature.n_current}",
                describe_change(feature),
                effect_text(feature),
                min_effect_text(feature),
                p_text(feature.p_value),
                p_text(feature.p_adjusted),
                STATUS_MARK.get(feature.status, "!" if feature.warning else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        lines.append(line)
        if index == 0:
            lines.append("-" * min(width, len(line)))
    notes = [f"{f.name}: {f.warning}" for f in report.features.values() if f.warning]
    if notes or report.warnings:
        lines += ["", "Warnings (!):"]
        lines.extend(f"  - {note}" for note in [*report.warnings, *notes])
    if report.examples:
        lines += ["", f"Answers that changed most ({len(report.examples)} paired prompts):"]
        for example in report.examples:
            lines.extend(example_lines(example))
    lines += ["", verdict(report)]
    return "\n".join(lines) + "\n"


def verdict(report: ReportData) -> str:
    """One line: drift or not, and where."""
    tested = sum(1 for f in report.features.values() if f.tested)
    below = report.changed_below_threshold
    small = f"; changed below the minimum effect: {', '.join(below)}" if below else ""
    if report.drifted:
        return (
            f"DRIFT in {len(report.drifted_features)} of {tested} tested features: "
            f"{', '.join(report.drifted_features)}{small}"
        )
    return f"No drift detected ({tested} features tested at alpha {report.alpha:g}){small}."


def example_lines(example: Example, width: int = 100) -> list[str]:
    """Prompt, baseline answer and current answer of one example, each on one line."""

    def answer(text: str, details: Mapping[str, object]) -> str:
        reason = details.get("finish_reason") or ("error" if details.get("error") else None)
        return (_one_line(text, width) or "(no text)") + (f" [{reason}]" if reason else "")

    return [
        f"  prompt:   {_one_line(example.prompt, width)}",
        f"  baseline: {answer(example.baseline, example.baseline_details)}",
        f"  current:  {answer(example.current, example.current_details)}",
    ]


def describe_change(feature: FeatureDrift) -> str:
    """A short human reading of what changed."""
    d = feature.details
    if feature.kind in ("count", "continuous") and "median_baseline" in d:
        change = d.get("median_change")
        ratio = d.get("median_ratio_change")
        pct = ratio if isinstance(ratio, float) else change
        where = " per prompt" if isinstance(ratio, float) else ""
        suffix = f" ({pct:+.0%}{where})" if isinstance(pct, float) and math.isfinite(pct) else ""
        return f"median {num(d['median_baseline'])} -> {num(d['median_current'])}{suffix}"
    if feature.kind == "binary" and "rate_baseline" in d:
        return f"rate {pct_text(d['rate_baseline'])} -> {pct_text(d['rate_current'])}"
    if feature.kind == "categorical":
        base = {k[len("share_baseline[") : -1]: v for k, v in d.items() if k.startswith("share_baseline[")}
        cur = {k[len("share_current[") : -1]: v for k, v in d.items() if k.startswith("share_current[")}
        if base and cur:
            moved = max(sorted(set(base) | set(cur)), key=lambda c: abs(_share(cur, c) - _share(base, c)))
            return f"{moved} {pct_text(_share(base, moved))} -> {pct_text(_share(cur, moved))}"
    if feature.kind == "text" and "js_null_mean" in d:
        return f"JS {num(feature.effect)} (chance {num(d['js_null_mean'])})"
    return ""


def effect_text(feature: FeatureDrift) -> str:
    """``r=+0.42``-style effect of the test."""
    if feature.effect is None or not feature.effect_name:
        return ""
    names = {"rank-biserial r": "r", "KS D": "D", "JS distance": "JS", "Cohen's h": "h"}
    return f"{names.get(feature.effect_name, feature.effect_name)}={feature.effect:+.2f}"


def min_effect_text(feature: FeatureDrift) -> str:
    """The practical effect against its minimum, e.g. ``p90 12% < 20%``."""
    if feature.min_effect is None or feature.practical_effect is None or not feature.tested:
        return ""
    metric = feature.min_effect.metric
    short = {"median_change": "median", "p90_change": "p90", "wasserstein": "W", "cohens_h": "h"}
    name = short.get(metric, metric)
    value, minimum = feature.practical_effect, feature.min_effect.value
    relation = ">=" if value >= minimum else "<"
    if metric.endswith("_change"):
        shown = "inf" if math.isinf(value) else f"{value:.0%}"
        return f"{name} {shown} {relation} {minimum:.0%}"
    return f"{name} {value:.2f} {relation} {minimum:g}"


_SHORT_TESTS = {
    "Wilcoxon signed-rank (paired by prompt)": "Wilcoxon paired",
    "Kolmogorov-Smirnov": "KS",
    "Mann-Whitney U": "Mann-Whitney",
    "Fisher exact (Monte Carlo)": "Fisher (MC)",
    "permutation (n-gram JS)": "permutation",
    "permutation within prompts (n-gram JS)": "perm. in prompts",
    "two-proportion z": "2-prop z",
}


def short_test(feature: FeatureDrift) -> str:
    """The test's short name, with ``(asymp.)`` when its p-value is asymptotic where an exact
    one exists for small samples."""
    name = feature.test.split(", on a sample")[0]
    short = _SHORT_TESTS.get(name, name)
    if ", on a sample" in feature.test:
        short += " (sample)"
    if (feature.p_method == "asymptotic" and name in ("Kolmogorov-Smirnov", "Mann-Whitney U")) or (
        feature.p_method == "asymptotic" and name.startswith("Wilcoxon")
    ):
        short += " (asymp.)"
    return short


def p_text(value: float | None) -> str:
    """A p-value, in 3 decimals or 2 significant digits below 0.001."""
    if value is None:
        return "-"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def num(value: object) -> str:
    """A number for a table cell."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def pct_text(value: object) -> str:
    """A share as a percentage."""
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _share(shares: Mapping[str, object], category: str) -> float:
    value = shares.get(category, 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
