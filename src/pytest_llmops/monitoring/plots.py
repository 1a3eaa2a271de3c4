"""Plots of one feature, baseline against current, as base64 PNGs (matplotlib's Agg backend).

They are drawn from each feature's ``summary`` (value counts, category counts, a sample of
texts), never from the raw values, so a report of a million traces per side, or one computed
by Spark, plots the same way.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from pytest_llmops.monitoring.model import FeatureDrift
from pytest_llmops.monitoring.stats.weighted import Weighted
from pytest_llmops.monitoring.text import top_ngram_shifts

BASELINE_COLOR = "#4C72B0"
CURRENT_COLOR = "#DD8452"


def plot_feature(feature: FeatureDrift) -> str | None:
    """A PNG (base64) comparing baseline and current for one feature, or None with nothing to plot."""
    summary = feature.summary
    if not summary or (feature.n_baseline == 0 and feature.n_current == 0):
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 2.6), dpi=90, layout="constrained")
    if "weighted" in summary:
        _plot_numeric(figure, feature.name, *summary["weighted"])
    elif "texts" in summary:
        _plot_text(figure, *summary["texts"])
    elif "counts" in summary:
        _plot_categories(figure, *summary["counts"])
    else:
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot_numeric(figure: Any, name: str, base: Weighted, cur: Weighted) -> None:
    sides = [
        (s, c, label)
        for s, c, label in ((base, BASELINE_COLOR, "baseline"), (cur, CURRENT_COLOR, "current"))
        if s.total
    ]
    values = np.concatenate([s.values for s, _, _ in sides]) if sides else np.zeros(0)
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    both = Weighted.from_counts(values, np.concatenate([s.counts for s, _, _ in sides])) if sides else None
    count = min(30, max(5, int(np.sqrt(both.total)))) if both is not None else 5
    positive = values[values > 0]
    low = float(positive.min()) if positive.size else 1.0
    skewed = (
        both is not None and values.min() >= 0 and both.quantile(0.95) > 20 * max(both.quantile(0.05), low)
    )
    if skewed and values.max() > low:  # tokens and latency span decades: log-spaced bins, log axis (0 kept)
        bins = np.geomspace(low, float(values.max()), count + 1)
        if values.min() == 0:
            bins = np.concatenate([[0.0], bins])
            for axis in (left, right):
                axis.set_xscale("symlog", linthresh=low)
        else:
            for axis in (left, right):
                axis.set_xscale("log")
    elif values.size > 1:
        bins = np.histogram_bin_edges(values, bins=count)
    else:
        bins = np.array([values.min() - 0.5, values.max() + 0.5]) if values.size else np.array([0.0, 1.0])
    for sample, color, label in sides:
        left.hist(
            sample.values,
            bins=bins,
            weights=sample.counts,
            density=True,
            alpha=0.5,
            color=color,
            label=f"{label} (n={sample.total})",
        )
    left.set_xlabel(name)
    left.set_ylabel("density")
    left.legend(fontsize=8)
    boxes = [_box_stats(sample, label) for sample, _, label in sides]
    if boxes:
        parts = right.bxp(boxes, orientation="horizontal", patch_artist=True, showfliers=False, widths=0.6)
        for patch, (_, color, _) in zip(parts["boxes"], sides, strict=True):
            patch.set_facecolor(color)
            patch.set_alpha(0.6)
    right.set_xlabel(name)


def _box_stats(sample: Weighted, label: str) -> dict[str, Any]:
    """What ``Axes.bxp`` draws: quartiles, median and whiskers at 1.5 IQR (within the data)."""
    q1, median, q3 = sample.quantile(0.25), sample.quantile(0.5), sample.quantile(0.75)
    spread = 1.5 * (q3 - q1)
    inside = sample.values[(sample.values >= q1 - spread) & (sample.values <= q3 + spread)]
    low, high = (float(inside.min()), float(inside.max())) if inside.size else (q1, q3)
    return {"label": label, "q1": q1, "med": median, "q3": q3, "whislo": low, "whishi": high}


def _plot_categories(figure: Any, base: dict[str, int], cur: dict[str, int]) -> None:
    categories = sorted(set(base) | set(cur), key=lambda c: -(base.get(c, 0) + cur.get(c, 0)))[:12]
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


def _plot_text(figure: Any, base: list[str], cur: list[str]) -> None:
    shifts = top_ngram_shifts([str(v) for v in base], [str(v) for v in cur])
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
