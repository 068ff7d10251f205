"""Offline analysis of reconstruction results (``bcdi-stream analyze``): one result's fields, or a series' events.

Given the contents of result files (streamer/recording/result_file.py reads them) this yields the same
fields and flags as live operation, through the same series tracker; the peak flags use the peak
metrics stored with each result. Pure: no files, sockets or clocks.
"""

from __future__ import annotations

import numpy as np

from streamer.analysis.config import AnalysisConfig, FlagConfig
from streamer.analysis.events import build_event
from streamer.analysis.series import SeriesTracker, TrackedScan
from streamer.geometry import OrthogonalGeometry


def result_geometry(result: dict) -> OrthogonalGeometry:
    """The geometry stored in a result's metadata, checked against its object."""
    geo = (result.get("metadata") or {}).get("geometry") or {}
    if not geo:
        raise ValueError("the result's metadata has no geometry")
    geometry = OrthogonalGeometry.from_dict(dict(geo))
    if tuple(np.shape(result["object"])) != geometry.shape_zyx:
        raise ValueError(f"object shape {np.shape(result['object'])} does not match its geometry {geometry.shape_zyx}")
    return geometry


def track_result(tracker: SeriesTracker, result: dict, *, xp) -> tuple[TrackedScan, list]:
    """Feed one result to ``tracker``: its stored peak, then its object (positions in the file's own array).
    Returns the tracked object and all its flags (defects first, as live)."""
    geometry = result_geometry(result)
    meta = result.get("metadata") or {}
    peak = dict(result.get("peak") or {})
    peak_flags = tracker.peak(peak, shape=geometry.shape_zyx, rocking_step_deg=geometry.rocking_step_deg) if peak else []
    tracked = tracker.observe(int(meta.get("scan", len(tracker.peaks))), np.asarray(result["object"]),
                              geometry=geometry, xp=xp, members=result.get("members"), positions="object")
    return tracked, tracked.flags + peak_flags


def _phasing(result: dict, tracked: TrackedScan) -> dict:
    info = {"recipe": result.get("recipe", ""), "support_voxels": tracked.analysis.support_voxels}
    a = tracked.alignment
    if a.correlation_to_previous is not None:
        info |= {"twin_flipped": a.twin_flipped, "shift_voxels": [round(s, 3) for s in a.shift_voxels],
                 "correlation_to_previous": round(a.correlation_to_previous, 4)}
    return info


def analyze_result(result: dict, *, xp, config: AnalysisConfig | None = None) -> dict:
    """The event of one result on its own (no previous scan, no flags)."""
    tracked, _ = track_result(SeriesTracker(config), result, xp=xp)
    meta = dict(result.get("metadata") or {})
    return build_event(run=meta.get("run", ""), scan=int(meta.get("scan", 0)), metadata=meta,
                       peak=dict(result.get("peak") or {}), flags=[], latency_s=0.0, analysis=tracked.analysis)


def analyze_series(results: list[dict], *, xp, config: AnalysisConfig | None = None,
                   flags: FlagConfig | None = None) -> list[dict]:
    """One event (the events.jsonl record) per result, in the order given (scan order), with the
    flags of the same scan-to-scan comparison as live operation."""
    tracker = SeriesTracker(config, flags)
    events = []
    for result in results:
        meta = dict(result.get("metadata") or {})
        tracked, found = track_result(tracker, result, xp=xp)
        events.append(build_event(
            run=meta.get("run", ""), scan=int(meta.get("scan", len(events))), metadata=meta,
            peak=dict(result.get("peak") or {}), flags=found, latency_s=0.0,
            phasing=_phasing(result, tracked),
            reconstruction={"status": "done", "compared_with_scan": None if len(events) == 0 else events[-1]["scan"],
                            "source": "offline"},
            analysis=tracked.analysis,
        ))
    return events
