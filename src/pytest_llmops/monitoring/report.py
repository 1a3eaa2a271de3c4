"""Render a :class:`~pytest_llmops.monitoring.drift.DriftReport` as a terminal table or as a
self-contained HTML page (plots are base64 PNGs drawn with matplotlib's Agg backend; the page
loads nothing from anywhere and runs no script)."""

from __future__ import annotations

import base64
import io
import math
from html import escape
from typing import TYPE_CHECKING, Any

from pytest_llmops.monitoring.stats import category_counts
from pytest_llmops.monitoring.text import top_ngram_shifts

if TYPE_CHECKING:
    from pytest_llmops.monitoring.drift import DriftReport, FeatureDrift

BASELINE_COLOR = "#4C72B0"
CURRENT_COLOR = "#DD8452"


# --- text ----------------------------------------------------------------------------------


def render_text(report: DriftReport, width: int = 110) -> str:
    """A terminal table: one line per feature, then warnings and the verdict."""
    paired = f", paired on {report.paired_prompts} prompts" if report.paired_prompts else ""
    lines = [
        f"Drift: baseline {report.baseline_label!r} ({report.n_baseline} traces) vs current "
        f"{report.current_label!r} ({report.n_current} traces)",
        f"alpha {report.alpha:g}, Benjamini-Hochberg across features{paired}",
        "",
    ]
    header = ("feature", "test", "n b/c", "change", "effect", "p", "q", "")
    rows = [header]
    for feature in report.features.values():
        rows.append(
            (
                feature.name,
                _short_test(feature.test),
                f"{feature.n_baseline}/{feature.n_current}",
                describe_change(feature),
                _effect(feature),
                _p(feature.p_value),
                _p(feature.p_adjusted),
                "DRIFT" if feature.drifted else ("!" if feature.warning else ""),
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
        lines.append("")
        lines.append("Warnings (!):")
        lines.extend(f"  - {note}" for note in [*report.warnings, *notes])
    lines.append("")
    lines.append(verdict(report))
    return "\n".join(lines) + "\n"


def verdict(report: DriftReport) -> str:
    """One line: drift or not, and where."""
    tested = sum(1 for f in report.features.values() if f.tested)
    if report.drifted:
        return (
            f"DRIFT in {len(report.drifted_features)} of {tested} tested features: "
            f"{', '.join(report.drifted_features)}"
        )
    return f"No drift detected ({tested} features tested at alpha {report.alpha:g})."


def describe_change(feature: FeatureDrift) -> str:
    """A short human reading of what changed."""
    d = feature.details
    if feature.kind in ("count", "continuous") and "median_baseline" in d:
        change = d.get("median_change")
        ratio = d.get("median_ratio_change")
        pct = ratio if isinstance(ratio, float) else change
        where = " per prompt" if isinstance(ratio, float) else ""
        suffix = f" ({pct:+.0%}{where})" if isinstance(pct, float) and math.isfinite(pct) else ""
        return f"median {_num(d['median_baseline'])} -> {_num(d['median_current'])}{suffix}"
    if feature.kind == "binary" and "rate_baseline" in d:
        return f"rate {_pct(d['rate_baseline'])} -> {_pct(d['rate_current'])}"
    if feature.kind == "categorical" and feature.baseline_values and feature.current_values:
        base = category_counts(feature.baseline_values)
        cur = category_counts(feature.current_values)
        nb, nc = sum(base.values()), sum(cur.values())
        moved = max(set(base) | set(cur), key=lambda c: abs(cur.get(c, 0) / nc - base.get(c, 0) / nb))
        return f"{moved} {_pct(base.get(moved, 0) / nb)} -> {_pct(cur.get(moved, 0) / nc)}"
    if feature.kind == "text" and "js_null_mean" in d:
        return f"JS {_num(feature.effect)} (chance {_num(d['js_null_mean'])})"
    return ""


def _effect(feature: FeatureDrift) -> str:
    if feature.effect is None or not feature.effect_name:
        return ""
    names = {"rank-biserial r": "r", "KS D": "D", "JS distance": "JS", "Cohen's h": "h"}
    return f"{names.get(feature.effect_name, feature.effect_name)}={feature.effect:+.2f}"


_SHORT_TESTS = {
    "Wilcoxon signed-rank (paired by prompt)": "Wilcoxon paired",
    "Kolmogorov-Smirnov": "KS",
    "Mann-Whitney U": "Mann-Whitney",
    "Fisher exact (Monte Carlo)": "Fisher (MC)",
    "permutation (n-gram JS)": "permutation",
    "permutation within prompts (n-gram JS)": "perm. in prompts",
    "two-proportion z": "2-prop z",
}


def _short_test(test: str) -> str:
    return _SHORT_TESTS.get(test, test)


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _num(value: object) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


# --- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left}
tr.drift td{background:#fde2e1}tr.warn td:last-child{color:#a15c00}
.verdict{font-weight:bold;padding:8px 12px;border-radius:4px;display:inline-block}
.verdict.drift{background:#fde2e1;color:#8a1c17}.verdict.ok{background:#e3f4e1;color:#1d5e1a}
.warning{color:#a15c00}.muted{color:#666;font-size:.85em}img{max-width:100%;height:auto}
details{margin:4px 0}code{background:#f4f4f4;padding:1px 4px}
"""


def render_html(report: DriftReport) -> str:
    """A self-contained HTML page: summary table, then per feature a plot and the statistics."""
    rows = []
    for feature in report.features.values():
        css = "drift" if feature.drifted else ("warn" if feature.warning else "")
        rows.append(
            f'<tr class="{css}"><td><a href="#f-{escape(feature.name)}">{escape(feature.name)}</a></td>'
            f"<td>{escape(feature.test)}</td><td>{feature.n_baseline}/{feature.n_current}</td>"
            f"<td>{escape(describe_change(feature))}</td><td>{escape(_effect(feature))}</td>"
            f"<td>{_p(feature.p_value)}</td><td>{_p(feature.p_adjusted)}</td>"
            f"<td>{'DRIFT' if feature.drifted else ('warning' if feature.warning else '')}</td></tr>"
        )
    sections = [_feature_section(feature) for feature in report.features.values()]
    status = "drift" if report.drifted else "ok"
    warnings = "".join(f'<li class="warning">{escape(w)}</li>' for w in report.warnings)
    paired = f" Numeric features paired on {report.paired_prompts} prompts." if report.paired_prompts else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Drift report: {escape(report.baseline_label)} vs {escape(report.current_label)}</title>
<style>{_CSS}</style></head>
<body>
<h1>Drift report</h1>
<p>Baseline <code>{escape(report.baseline_label)}</code> ({report.n_baseline} traces) vs current
<code>{escape(report.current_label)}</code> ({report.n_current} traces).
Created {escape(report.created_at)}.</p>
<p class="verdict {status}" id="verdict">{escape(verdict(report))}</p>
<p class="muted">alpha {report.alpha:g}, Benjamini-Hochberg across features (q = adjusted p-value).{paired}
Baseline in <span style="color:{BASELINE_COLOR}">blue</span>,
current in <span style="color:{CURRENT_COLOR}">orange</span>.</p>
<ul>{warnings}</ul>
<table id="summary"><thead><tr><th>feature</th><th>test</th><th>n b/c</th><th>change</th><th>effect</th>
<th>p</th><th>q</th><th></th></tr></thead><tbody>
{"".join(rows)}
</tbody></table>
{"".join(sections)}
<p class="muted">pytest-llmops drift report, schema {escape(report.to_dict()["schema"])}.</p>
</body></html>
"""


def _feature_section(feature: FeatureDrift) -> str:
    plot = plot_feature(feature)
    image = (
        f'<img class="plot" alt="{escape(feature.name)}: baseline vs current" '
        f'src="data:image/png;base64,{plot}">'
        if plot
        else '<p class="muted">No values to plot.</p>'
    )
    warning = f'<p class="warning">{escape(feature.warning)}</p>' if feature.warning else ""
    details = "".join(
        f"<tr><td>{escape(str(key))}</td><td>{escape(_detail(value))}</td></tr>"
        for key, value in feature.details.items()
    )
    return (
        f'<section id="f-{escape(feature.name)}"><h2>{escape(feature.name)}'
        f"{' &mdash; DRIFT' if feature.drifted else ''}</h2>"
        f"<p>{escape(feature.description)}. Test: {escape(feature.test)}; p = {_p(feature.p_value)}, "
        f"q = {_p(feature.p_adjusted)}; {escape(_effect(feature))}.</p>{warning}{image}"
        f"<details><summary>statistics</summary><table>{details}</table></details></section>"
    )


def _detail(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


# --- plots ---------------------------------------------------------------------------------


def plot_feature(feature: FeatureDrift) -> str | None:
    """A PNG (base64) comparing baseline and current for one feature, or None with nothing to plot."""
    if not feature.baseline_values and not feature.current_values:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 2.6), dpi=90, layout="constrained")
    if feature.kind in ("count", "continuous"):
        _plot_numeric(figure, feature)
    elif feature.kind == "text":
        _plot_text(figure, feature)
    else:
        _plot_categories(figure, feature)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot_numeric(figure: Any, feature: FeatureDrift) -> None:
    import numpy as np

    base = np.asarray(feature.baseline_values, dtype=float)
    cur = np.asarray(feature.current_values, dtype=float)
    both = np.concatenate([base, cur])
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    count = min(30, max(5, int(np.sqrt(both.size))))
    positive = both[both > 0]
    low = float(positive.min()) if positive.size else 1.0
    skewed = (
        both.size > 0 and both.min() >= 0 and np.quantile(both, 0.95) > 20 * max(np.quantile(both, 0.05), low)
    )
    if skewed and both.max() > low:  # tokens and latency span decades: log-spaced bins, log axis (0 kept)
        bins = np.geomspace(low, float(both.max()), count + 1)
        if both.min() == 0:
            bins = np.concatenate([[0.0], bins])
            for axis in (left, right):
                axis.set_xscale("symlog", linthresh=low)
        else:
            for axis in (left, right):
                axis.set_xscale("log")
    elif both.size and np.unique(both).size > 1:
        bins = np.histogram_bin_edges(both, bins=count)
    else:
        bins = np.array([both.min() - 0.5, both.max() + 0.5]) if both.size else np.array([0.0, 1.0])
    for values, color, label in ((base, BASELINE_COLOR, "baseline"), (cur, CURRENT_COLOR, "current")):
        if values.size:
            left.hist(
                values, bins=bins, density=True, alpha=0.5, color=color, label=f"{label} (n={values.size})"
            )
    left.set_xlabel(feature.name)
    left.set_ylabel("density")
    left.legend(fontsize=8)
    data = [values for values in (base, cur) if values.size]
    colors = [c for values, c in ((base, BASELINE_COLOR), (cur, CURRENT_COLOR)) if values.size]
    labels = [name for values, name in ((base, "baseline"), (cur, "current")) if values.size]
    parts = right.boxplot(data, orientation="horizontal", patch_artist=True, tick_labels=labels, widths=0.6)
    for patch, color in zip(parts["boxes"], colors, strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.6)
    right.set_xlabel(feature.name)


def _plot_categories(figure: Any, feature: FeatureDrift) -> None:
    import numpy as np

    def label(value: object) -> str:
        return ("error" if value else "ok") if isinstance(value, bool) else str(value)

    base = category_counts([label(v) for v in feature.baseline_values])
    cur = category_counts([label(v) for v in feature.current_values])
    categories = list(dict.fromkeys([*base, *cur]))[:12]
    nb, nc = max(1, sum(base.values())), max(1, sum(cur.values()))
    axis = figure.subplots()
    x = np.arange(len(categories))
    axis.bar(
        x - 0.2,
        [base.get(c, 0) / nb for c in categories],
        0.4,
        color=BASELINE_COLOR,
        label=f"baseline (n={sum(base.values())})",
    )
    axis.bar(
        x + 0.2,
        [cur.get(c, 0) / nc for c in categories],
        0.4,
        color=CURRENT_COLOR,
        label=f"current (n={sum(cur.values())})",
    )
    axis.set_xticks(x, [c[:24] for c in categories], fontsize=8)
    axis.set_ylabel("share")
    axis.legend(fontsize=8)


def _plot_text(figure: Any, feature: FeatureDrift) -> None:
    import numpy as np

    shifts = top_ngram_shifts(
        [str(v) for v in feature.baseline_values], [str(v) for v in feature.current_values]
    )
    axis = figure.subplots()
    if not shifts:
        axis.text(0.5, 0.5, "no text", ha="center", va="center")
        return
    y = np.arange(len(shifts))
    axis.barh(y - 0.2, [s[1] for s in shifts], 0.4, color=BASELINE_COLOR, label="baseline")
    axis.barh(y + 0.2, [s[2] for s in shifts], 0.4, color=CURRENT_COLOR, label="current")
    axis.set_yticks(y, [repr(s[0]) for s in shifts], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("share of character 3-grams (most changed)")
    axis.legend(fontsize=8)


__all__ = ["describe_change", "plot_feature", "render_html", "render_text", "verdict"]
