"""Bluesky plans for operando BCDI: rocking scans, peak alignment and operando series."""

from plans.align import align_peak
from plans.metadata import experiment_md
from plans.operando import ParticleTarget, Remeasure, operando_series
from plans.rocking import rocking_scan

__all__ = ["ParticleTarget", "Remeasure", "align_peak", "experiment_md", "operando_series", "rocking_scan"]
