"""Find a particle's Bragg peak and centre it: in theta, and on the detector where an arm is given."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from plans.metadata import check_experiment_md
from plans.rocking import rocking_angles


def peak_centre(positions: list[float], counts: list[float]) -> float | None:
    """Centroid of the points above half the maximum (background removed), or None without a peak."""
    if len(positions) != len(counts) or not positions:
        raise ValueError(f"need as many positions as counts, got {len(positions)} and {len(counts)}")
    floor = min(counts)
    top = max(counts) - floor
    if not top > 0:
        return None
    weights = [c - floor if c - floor >= top / 2 else 0.0 for c in counts]
    return sum(w * p for w, p in zip(weights, positions)) / sum(weights)


def align_peak(detector, stage, center_deg: float, width_deg: float = 2.0, num: int = 21, exposure_s: float = 0.1,
               *, arm=None, arm_deg_per_px: float | None = None, detector_center_px: float | None = None,
               md: dict | None = None):
    """A coarse rocking run reading the detector's total counts, then move theta to the peak's centroid.

    With a detector ``arm`` (a Movable), the arm also moves by ``arm_deg_per_px`` per pixel that the
    peak's row centroid (``detector.centroid_row_px``) lies away from ``detector_center_px``. The run is
    marked ``pipeline: False``: its frames are not a rocking scan for the pipeline. Returns the new theta.
    """
    if arm is not None and (arm_deg_per_px is None or detector_center_px is None):
        raise ValueError("align_peak with an arm needs arm_deg_per_px and detector_center_px")
    angles = rocking_angles(center_deg, width_deg, num)
    reads = [detector.total_counts, stage] + ([detector.centroid_row_px] if arm is not None else [])
    counts_key, theta_key = detector.total_counts.name, stage.name
    _md = {"plan_name": "align_peak", "pipeline": False, "detectors": [detector.name], "motors": [stage.name],
           "num_points": num, "center_deg": center_deg, "width_deg": width_deg, "exposure_s": exposure_s,
           "plan_args": {"center_deg": center_deg, "width_deg": width_deg, "num": num, "exposure_s": exposure_s},
           "hints": {"dimensions": [([stage.name], "primary")]}, **check_experiment_md(md)}
    readings = []

    @bpp.stage_decorator([detector, stage])
    @bpp.run_decorator(md=_md)
    def inner():
        for theta in angles:
            yield from bps.mv(stage, theta)
            yield from bps.trigger(detector, wait=True)
            readings.append((yield from bps.trigger_and_read(reads)))

    yield from bps.mv(detector.acquire_time, exposure_s)
    yield from inner()
    thetas = [r[theta_key]["value"] for r in readings]
    counts = [r[counts_key]["value"] for r in readings]
    found = peak_centre(thetas, counts)
    if found is None:
        raise RuntimeError(f"align_peak saw no peak: {detector.name} counted {counts[0]} at every angle in "
                           f"{angles[0]:.4f}..{angles[-1]:.4f} deg")
    moves = [stage, found]
    if arm is not None:
        best = max(range(len(counts)), key=counts.__getitem__)
        row = readings[best][detector.centroid_row_px.name]["value"]
        arm_now = yield from bps.rd(arm)
        moves += [arm, arm_now + (row - detector_center_px) * arm_deg_per_px]
    yield from bps.mv(*moves)
    return found
