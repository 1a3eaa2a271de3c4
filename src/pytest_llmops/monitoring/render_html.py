"""The drift report as a self-contained HTML page: the summary table, the examples (answers
side by side), then per feature a plot (a base64 PNG from ``plots.py``) and the statistics.
The page loads nothing from anywhere and runs no script."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from pytest_llmops.monitoring.model import Example, FeatureDrift, ReportData
from pytest_llmops.monitoring.plots import BASELINE_COLOR, CURRENT_COLOR, plot_feature
from pytest_llmops.monitoring.render_text import (
    describe_change,
    effect_text,
    min_effect_text,
    p_text,
    verdict,
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
tr.drift td{background:#fde2e1}tr.small td{background:#fff6e0}tr.warn td:last-child{color:#a15c00}
.verdict{font-weight:bold;padding:8px 12px;border-radius:4px;display:inline-block}
.verdict.drift{background:#fde2e1;color:#8a1c17}.verdict.ok{background:#e3f4e1;color:#1d5e1a}
.warning{color:#a15c00}.muted{color:#666;font-size:.85em}img{max-width:100%;height:auto}
details{margin:4px 0}code{background:#f4f4f4;padding:1px 4px}
table.examples td{width:50%;white-space:pre-wrap}table.examples td.prompt{background:#f7f7f7}
"""
_ROW_CLASS = {"drift": "drift", "changed (below threshold)": "small"}
_STATUS_CELL = {"drift": "DRIFT", "changed (below threshold)": "changed (below threshold)"}


def render_html(report: ReportData) -> str:
    """A self-contained HTML page: summary table, examples, then per feature a plot and the statistics."""
    rows = []
    for feature in report.features.values():
        css = _ROW_CLASS.get(feature.status, "warn" if feature.warning else "")
        status = _STATUS_CELL.get(feature.status, "warning" if feature.warning else "")
        rows.append(
            f'<tr class="{css}"><td><a href="#f-{escape(feature.name)}">{escape(feature.name)}</a></td>'
            f"<td>{escape(feature.test)}</td><td>{escape(feature.p_method or '')}</td>"
            f"<td>{feature.n_baseline}/{feature.n_current}</td>"
            f"<td>{escape(describe_change(feature))}</td><td>{escape(effect_text(feature))}</td>"
            f"<td>{escape(min_effect_text(feature))}</td>"
            f"<td>{p_text(feature.p_value)}</td><td>{p_text(feature.p_adjusted)}</td>"
            f"<td>{escape(status)}</td></tr>"
        )
    sections = [_feature_section(feature) for feature in report.features.values()]
    status = "drift" if report.drifted else "ok"
    warnings = "".join(f'<li class="warning">{escape(w)}</li>' for w in report.warnings)
    paired = f" Numeric features paired on {report.paired_prompts} prompts." if report.paired_prompts else ""
    examples_link = (
        f'<p><a href="#examples">The answers that changed most</a> ({len(report.examples)} paired prompts, '
        "side by side) follow the plots.</p>"
        if report.examples
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Drift report: {escape(report.baseline_label)} vs {escape(report.current_label)}</title>
<style>{_CSS}</style></head>
<body>
<h1>Drift report</h1>
<p>Baseline <code>{escape(report.baseline_label)}</code> ({report.n_baseline} traces) vs current
<code>{escape(report.current_label)}</code> ({report.n_current} traces), {escape(report.engine)} engine.
Created {escape(report.created_at)}.</p>
<p class="verdict {status}" id="verdict">{escape(verdict(report))}</p>
<p class="muted">alpha {report.alpha:g}, Benjamini-Hochberg across features (q = adjusted p-value); a
feature is DRIFT when q &le; alpha and its effect reaches the minimum effect.{paired}
Baseline in <span style="color:{BASELINE_COLOR}">blue</span>,
current in <span style="color:{CURRENT_COLOR}">orange</span>.</p>
<ul>{warnings}</ul>
{examples_link}
<table id="summary"><thead><tr><th>feature</th><th>test</th><th>p-value</th><th>n b/c</th><th>change</th>
<th>effect</th><th>min effect</th><th>p</th><th>q</th><th></th></tr></thead><tbody>
{"".join(rows)}
</tbody></table>
{"".join(sections)}
{_examples_section(report.examples)}
<p class="muted">pytest-llmops drift report, schema {escape(report.to_dict()["schema"])}.</p>
</body></html>
"""


def _examples_section(examples: list[Example]) -> str:
    if not examples:
        return ""
    rows = []
    for example in examples:
        rows.append(
            f'<tr><td class="prompt" colspan="2"><b>Prompt</b> (change {example.score:.2f}): '
            f"{escape(example.prompt)}</td></tr>"
            f"<tr><td>{escape(example.baseline) or '<i>(no text)</i>'}<br>"
            f'<span class="muted">{escape(_details(example.baseline_details))}</span></td>'
            f"<td>{escape(example.current) or '<i>(no text)</i>'}<br>"
            f'<span class="muted">{escape(_details(example.current_details))}</span></td></tr>'
        )
    return (
        '<section id="examples"><h2>Answers that changed most</h2>'
        '<p class="muted">Paired prompts ranked by the change of their answer (n-gram JS distance '
        "plus the absolute log ratio of the lengths); the first answer of each side.</p>"
        '<table class="examples"><thead><tr><th>baseline</th><th>current</th></tr></thead><tbody>'
        f"{''.join(rows)}</tbody></table></section>"
    )


def _details(details: Mapping[str, object]) -> str:
    return ", ".join(f"{key} {_detail(value)}" for key, value in details.items())


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
    status = {"drift": " &mdash; DRIFT", "changed (below threshold)": " &mdash; changed (below threshold)"}
    minimum = min_effect_text(feature)
    return (
        f'<section id="f-{escape(feature.name)}"><h2>{escape(feature.name)}'
        f"{status.get(feature.status, '')}</h2>"
        f"<p>{escape(feature.description)}. Test: {escape(feature.test)} ({escape(feature.p_method or '-')} "
        f"p-value); p = {p_text(feature.p_value)}, q = {p_text(feature.p_adjusted)}; "
        f"{escape(effect_text(feature))}{'; minimum effect: ' + escape(minimum) if minimum else ''}.</p>"
        f"{warning}{image}"
        f"<details><summary>statistics</summary><table>{details}</table></details></section>"
    )


def _detail(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
