"""Scan-to-scan comparison: the flags that tell the operator something changed.

Each flag is a dict with ``kind`` and its evidence (positions, values, thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FlagConfig:
    """When a change is worth a flag."""

    vortex_match_radius_nm: float = 60.0
    vortex_move_threshold_nm: float = 18.0
    broadening_threshold: float = 0.25  # relative increase of a peak width over the baseline
    baseline_scans: int = 2
    surface_exit_distance_nm: float = 80.0  # a lost line last seen this close to the surface left through it
    peak_drift_fraction: float = 0.25  # peak centre off the grid centre by this fraction of the half-range

    def __post_init__(self):
        if self.vortex_match_radius_nm <= self.vortex_move_threshold_nm:
            raise ValueError("vortex_match_radius_nm must exceed vortex_move_threshold_nm")
        if self.broadening_threshold <= 0 or self.baseline_scans < 1:
            raise ValueError("broadening_threshold must be > 0 and baseline_scans >= 1")
        if not 0 < self.peak_drift_fraction < 1 or self.surface_exit_distance_nm < 0:
            raise ValueError("peak_drift_fraction must be in (0, 1) and surface_exit_distance_nm >= 0")


def match_vortices(previous: list[dict], current: list[dict], radius_nm: float):
    """Greedy nearest matching of same-winding vortices; returns (pairs, unmatched_prev, unmatched_cur)."""
    cands = []
    for i, p in enumerate(previous):
        for j, c in enumerate(current):
            if p["winding"] != c["winding"]:
                continue
            d = float(np.linalg.norm(np.subtract(p["position_nm"], c["position_nm"])))
            if d <= radius_nm:
                cands.append((d, i, j))
    pairs, used_p, used_c = [], set(), set()
    for d, i, j in sorted(cands):
        if i not in used_p and j not in used_c:
            pairs.append((i, j, d))
            used_p.add(i)
            used_c.add(j)
    return (pairs, [i for i in range(len(previous)) if i not in used_p],
            [j for j in range(len(current)) if j not in used_c])


def vortex_flags(previous: list[dict], current: list[dict], config: FlagConfig) -> list[dict]:
    pairs, lost, new = match_vortices(previous, current, config.vortex_match_radius_nm)
    flags = [{"kind": "new_vortex", "position_nm": current[j]["position_nm"], "winding": current[j]["winding"],
              "type": current[j].get("type"), "confidence": current[j].get("confidence")} for j in new]
    for i in lost:
        last = previous[i]
        surface = last.get("surface_distance_nm")
        flags.append({"kind": "vortex_lost", "last_position_nm": last["position_nm"], "winding": last["winding"],
                      "last_surface_distance_nm": surface,
                      "left_through_surface": surface is not None and surface <= config.surface_exit_distance_nm})
    flags += [{"kind": "vortex_moved", "from_nm": previous[i]["position_nm"], "to_nm": current[j]["position_nm"],
               "distance_nm": round(d, 1), "winding": current[j]["winding"]}
              for i, j, d in pairs if d > config.vortex_move_threshold_nm]
    return flags


def boundary_flags(previous: list[dict], current: list[dict]) -> list[dict]:
    if len(current) > len(previous):
        return [{"kind": "domain_boundary", "state": "appeared", "boundaries": current,
                 "count": len(current), "previous_count": len(previous)}]
    if len(current) < len(previous):
        return [{"kind": "domain_boundary", "state": "resolved", "boundaries": previous,
                 "count": len(current), "previous_count": len(previous)}]
    return []


def broadening_flags(peak: dict, baseline: dict | None, config: FlagConfig) -> list[dict]:
    """Flag a width that grew beyond the threshold relative to the baseline scans."""
    if baseline is None:
        return []
    flags = []
    for key in ("width_parallel", "width_perpendicular"):
        ref, now = baseline.get(key), peak.get(key)
        if ref and now and np.isfinite(ref) and np.isfinite(now):
            rel = now / ref - 1.0
            if rel > config.broadening_threshold:
                flags.append({"kind": "peak_broadening", "direction": key.removeprefix("width_"),
                              "relative_change": round(rel, 3), "width": now, "baseline": ref,
                              "threshold": config.broadening_threshold})
    return flags


def baseline_peak(peaks: list[dict], config: FlagConfig) -> dict | None:
    """Mean widths over the first ``baseline_scans`` peaks; None until that many exist."""
    if len(peaks) < config.baseline_scans:
        return None
    first = peaks[: config.baseline_scans]
    return {k: float(np.mean([p[k] for p in first])) for k in ("width_parallel", "width_perpendicular")}


def peak_drift_flags(peak: dict, *, shape: tuple[int, int, int], rocking_step_deg: float,
                     config: FlagConfig) -> list[dict]:
    """Flag a Bragg peak whose centre is leaving the measured volume, with the re-centring to do.

    ``shape`` is the scan in lab order (q_z rows, q_y columns, q_x rocking steps); the peak is
    drifting when its centre of mass is off the centre by ``peak_drift_fraction`` of the
    half-range along any axis. The rocking correction is in degrees, the detector one in pixels.
    """
    com = peak.get("center_of_mass_px")
    if not com:
        return []
    offsets = [c - n / 2 for c, n in zip(com, shape)]
    drifting = [abs(o) > config.peak_drift_fraction * n / 2 for o, n in zip(offsets, shape)]
    if not any(drifting):
        return []
    return [{"kind": "peak_drift", "center_of_mass_px": [round(c, 2) for c in com],
             "offset_px": [round(o, 2) for o in offsets],
             "recentre_theta_by_deg": round(offsets[2] * rocking_step_deg, 5),
             "recentre_detector_by_px": [round(offsets[0], 1), round(offsets[1], 1)],
             "axes": [name for name, d in zip(("q_z (detector rows)", "q_y (detector columns)", "rocking"),
                                              drifting) if d],
             "threshold_fraction": config.peak_drift_fraction}]
