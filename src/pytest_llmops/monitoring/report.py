"""The drift report: its data (:class:`~pytest_llmops.monitoring.model.ReportData`) with its
renderings as a terminal table and a self-contained HTML page."""

from __future__ import annotations

from pytest_llmops.monitoring.model import ReportData


class DriftReport(ReportData):
    """Drift between a baseline and a current set of traces.

    ``drifted``/``drifted_features``: features significant after Benjamini-Hochberg at
    ``alpha`` whose effect reaches their minimum; ``changed_below_threshold``: significant but
    smaller; ``examples``: paired prompts whose answers changed most.
    """

    def to_text(self, width: int = 110) -> str:
        """The report as a terminal table."""
        from pytest_llmops.monitoring.render_text import render_text

        return render_text(self, width=width)

    def to_html(self) -> str:
        """The report as a self-contained HTML page with plots (matplotlib, imported here)."""
        from pytest_llmops.monitoring.render_html import render_html

        return render_html(self)
