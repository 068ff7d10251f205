"""Bluesky plans of bcdi-stream."""

from plans.rocking import operando_series, rocking_scan

__all__ = ["operando_series", "rocking_scan"]
