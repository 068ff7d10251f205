"""Offline analysis of reconstruction results (``bcdi-stream analyze``): one result's fields, or a series' events.

Given the contents of result files (streamer/recording/result_file.py reads them) this yields the same
fields and flags as live operation, through the same series tracker; the peak flags use the peak
metrics stored with each result. Results of detector-geometry scans hold their object in the lab frame
(``metadata.frame``); one that still holds it on the detector grid is resampled first. Pure: no files,
sockets or clocks.
"""

from __future__ import annotations

import numpy as np

from streamer.analysis.config import AnalysisConfig, FlagConfig
from streamer.analysis.events import build_event
from streamer.analysis.scan import frame_info, lab_grid, to_lab
from streamer.analysis.series import SeriesTracker, TrackedScan
from streamer.geometry import DetectorGeometry, OrthogonalGeometry, from_dict


def in_lab_frame(result: dict) -> dict:
    """The result with its object in the lab frame: as it is when its geometry is orthogonal; an object
    on a detector geometry's (step, row, col) grid is resampled onto a lab grid (its metadata then says so)."""
    meta = result.get("metadata") or {}
    geo = meta.get("geometry") or {}
    if geo.get("kind") != "detector":
        return result
    det = from_dict(dict(geo))
    obj = np.asarray(result["object"])
    if obj.shape != det.stack_shape:
        raise ValueError(f"object shape {obj.shape} does not match its detector geometry's stack {det.stack_shape}")
    support = result.get("support")
    lab = lab_grid(det, support if support is not None and np.any(support) else np.abs(obj) > 0.1 * np.abs(obj).max())
    errors = {k: result.get(k) for k in ("amplitude_error", "phase_error")}
    moved = to_lab(det, lab, obj, support=support, errors=errors, members=result.get("members"),
                   replicas=result.get("replicas"))
    return {**result, "object": moved.rho, "support": moved.support, "members": moved.members,
            "replicas": moved.replicas, **moved.errors,
            "metadata": {**meta, "geometry": lab.to_dict(), "detector_geometry": det.to_dict(),
                         "frame": frame_info(lab, det), "voxel_nm_zyx": [lab.voxel_nm] * 3}}


def result_geometry(result: dict) -> OrthogonalGeometry:
    """The (orthogonal, lab-frame) geometry stored in a result's metadata, checked against its object."""
    geo = (result.get("metadata") or {}).get("geometry") or {}
    if not geo:
        raise ValueError("the result's metadata has no geometry")
    if geo.get("kind") == "detector":
        raise ValueError("the result's object is on the detector grid: resample it first (in_lab_frame)")
    geometry = OrthogonalGeometry.from_dict(dict(geo))
    if tuple(np.shape(result["object"])) != geometry.shape_zyx:
        raise ValueError(f"object shape {np.shape(result['object'])} does not match its geometry {geometry.shape_zyx}")
    return geometry


def result_strain_energy(result: dict) -> dict:
    """``strain_energy_estimate`` of a lab-frame result (a live result file, ``reconstruct``'s output) as the service
    reads its object: with its members and noise replicas when the result kept them."""
    from streamer.analysis.displacement import strain_energy_estimate
    from streamer.analysis.objects import fields_of

    geometry = result_geometry(result)
    return strain_energy_estimate(fields_of(result["object"], geometry), voxel_nm=geometry.voxel_nm,
                                  q_inv_nm=geometry.q_bragg_inv_nm, members=result.get("members"),
                                  replicas=result.get("replicas"))


def _peak_grid(result: dict, geometry: OrthogonalGeometry) -> tuple[tuple[int, int, int], float]:
    """(shape, rocking step) against which the stored peak's centre is judged: the detector frames'
    (rows, cols, steps) for a detector scan, else the object's grid."""
    det = (result.get("metadata") or {}).get("detector_geometry")
    if det:
        d = DetectorGeometry.from_dict(dict(det))
        steps, rows, cols = d.stack_shape
        return (rows, cols, steps), d.rocking_step_deg
    return geometry.shape_zyx, geometry.rocking_step_deg


def track_result(tracker: SeriesTracker, result: dict, *, xp) -> tuple[TrackedScan, list]:
    """Feed one result to ``tracker``: its stored peak, then its object (positions in the file's own array).
    Returns the tracked object and all its flags (defects first, as live)."""
    result = in_lab_frame(result)
    geometry = result_geometry(result)
    meta = result.get("metadata") or {}
    peak = dict(result.get("peak") or {})
    shape, step = _peak_grid(result, geometry)
    peak_flags = tracker.peak(peak, shape=shape, rocking_step_deg=step) if peak else []
    tracked = tracker.observe(int(meta.get("scan", len(tracker.peaks))), np.asarray(result["object"]),
                              geometry=geometry, xp=xp, members=result.get("members"), positions="object",
                              replicas=result.get("replicas"))
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
    result = in_lab_frame(result)
    tracked, _ = track_result(SeriesTracker(config), result, xp=xp)
    meta = dict(result.get("metadata") or {})
    return build_event(run=meta.get("run", ""), scan=int(meta.get("scan", 0)), metadata=meta,
                       peak=dict(result.get("peak") or {}), flags=[], latency_s=0.0, analysis=tracked.analysis,
                       **_frame(meta))


def _frame(meta: dict) -> dict:
    """The event's ``frame`` field, for results that say theirs (detector scans, in the lab frame)."""
    return {"frame": meta["frame"]} if isinstance(meta.get("frame"), dict) else {}


def analyze_series(results: list[dict], *, xp, config: AnalysisConfig | None = None,
                   flags: FlagConfig | None = None) -> list[dict]:
    """One event (the events.jsonl record) per result, in the order given (scan order), with the
    flags of the same scan-to-scan comparison as live operation."""
    tracker = SeriesTracker(config, flags)
    events = []
    for result in results:
        result = in_lab_frame(result)
        meta = dict(result.get("metadata") or {})
        tracked, found = track_result(tracker, result, xp=xp)
        events.append(build_event(
            run=meta.get("run", ""), scan=int(meta.get("scan", len(events))), metadata=meta,
            peak=dict(result.get("peak") or {}), flags=found, latency_s=0.0,
            phasing=_phasing(result, tracked),
            reconstruction={"status": "done", "compared_with_scan": None if len(events) == 0 else events[-1]["scan"],
                            "source": "offline"},
            analysis=tracked.analysis, **_frame(meta),
        ))
    return events
