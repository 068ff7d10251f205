"""An HTML report of a run: timelines against capacity and slices of reconstructions (see docs/analysis.md)."""

from streamer.report.html import build_report, write_report

__all__ = ["build_report", "write_report"]
