"""Scan-to-scan comparison: the flags that tell the operator something changed.

Each flag is a dict with ``kind`` and its evidence (positions, values, thresholds).
"""

from __future__ import annotations

import numpy as np

from streamer.analysis.config import FlagConfig


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


def _conf(v: dict):
    return v.get("confidence")


def vortex_flags(previous: list[dict], current: list[dict], config: FlagConfig) -> list[dict]:
    """new_vortex / vortex_lost / vortex_moved between two scans' lines, each with its evidence.

    Positions are in nm from the grid centre (``*_nm``) and in voxel indices of the object
    (``position``, ``last_position``, ``from``, ``to``) when the lines carry them.
    """
    pairs, lost, new = match_vortices(previous, current, config.vortex_match_radius_nm)
    flags = []
    for j in new:
        c = current[j]
        flags.append({"kind": "new_vortex", "position_nm": c["position_nm"], "winding": c["winding"],
                      "type": c.get("type"), "confidence": _conf(c), "position": c.get("position"),
                      "length_voxels": c.get("length_voxels"), "surface_distance_nm": c.get("surface_distance_nm")})
    for i in lost:
        last = previous[i]
        surface = last.get("surface_distance_nm")
        flags.append({"kind": "vortex_lost", "last_position_nm": last["position_nm"], "winding": last["winding"],
                      "last_surface_distance_nm": surface,
                      "left_through_surface": surface is not None and surface <= config.surface_exit_distance_nm,
                      "last_position": last.get("position"), "type": last.get("type"), "confidence": _conf(last),
                      "surface_exit_distance_nm": config.surface_exit_distance_nm})
    for i, j, d in pairs:
        if d > config.vortex_move_threshold_nm:
            p, c = previous[i], current[j]
            both = [x for x in (_conf(p), _conf(c)) if x is not None]
            flags.append({"kind": "vortex_moved", "from_nm": p["position_nm"], "to_nm": c["position_nm"],
                          "distance_nm": round(d, 1), "winding": c["winding"], "from": p.get("position"),
                          "to": c.get("position"), "type": c.get("type"),
                          "confidence": min(both) if both else None,
                          "move_threshold_nm": config.vortex_move_threshold_nm})
    return flags


def boundary_flags(previous: list[dict], current: list[dict]) -> list[dict]:
    """A boundary appeared or resolved (their number changed); the evidence is the boundaries."""
    if len(current) == len(previous):
        return []
    state, shown = ("appeared", current) if len(current) > len(previous) else ("resolved", previous)
    coherence = [b["coherence"] for b in shown if "coherence" in b]
    return [{"kind": "domain_boundary", "state": state, "boundaries": shown, "count": len(current),
             "previous_count": len(previous), "confidence": round(min(coherence), 3) if coherence else None}]


def defect_flags(previous: dict, current: dict, config: FlagConfig) -> list[dict]:
    """All defect flags between two analysed scans (dicts with ``vortices`` and ``domain_boundaries``)."""
    return (vortex_flags(previous["vortices"], current["vortices"], config)
            + boundary_flags(previous["domain_boundaries"], current["domain_boundaries"]))


def broadening_flags(peak: dict, baseline: dict | None, config: FlagConfig) -> list[dict]:
    """Flag a width that grew beyond the threshold relative to the baseline scans, and beyond
    ``broadening_significance`` times the combined error of the width and the baseline."""
    if baseline is None:
        return []
    flags = []
    for key in ("width_parallel", "width_perpendicular"):
        ref, now = baseline.get(key), peak.get(key)
        if ref and now and np.isfinite(ref) and np.isfinite(now):
            rel = now / ref - 1.0
            err = float(np.hypot(peak.get(key + "_error") or 0.0, baseline.get(key + "_error") or 0.0))
            significance = (now - ref) / err if err > 0 else float("inf")
            if rel > config.broadening_threshold and significance > config.broadening_significance:
                flags.append({"kind": "peak_broadening", "direction": key.removeprefix("width_"),
                              "relative_change": round(rel, 3), "width": now, "baseline": ref,
                              "error": round(err, 6), "significance": round(min(significance, 1e6), 1),
                              "relative_change_error": round(err / ref, 4),
                              "threshold": config.broadening_threshold,
                              "confidence": round(float(1 - np.exp(-0.5 * min(significance, 40) ** 2)), 3)})
    return flags


def baseline_peak(peaks: list[dict], config: FlagConfig) -> dict | None:
    """Mean widths over the first ``baseline_scans`` peaks, with their errors; None until that many exist.

    The error of a baseline width is the larger of the propagated per-scan errors and the
    standard error of its scatter over the baseline scans.
    """
    if len(peaks) < config.baseline_scans:
        return None
    first = peaks[: config.baseline_scans]
    out = {}
    for k in ("width_parallel", "width_perpendicular"):
        values = np.array([p[k] for p in first], float)
        out[k] = float(np.mean(values))
        errs = [p.get(k + "_error") for p in first]
        if all(e is not None for e in errs):
            propagated = float(np.sqrt(np.sum(np.square(errs)))) / len(first)
            scatter = float(np.std(values, ddof=1) / np.sqrt(len(first))) if len(first) > 1 else 0.0
            out[k + "_error"] = max(propagated, scatter)
    return out


def peak_flags(peak: dict, history: list[dict], *, shape: tuple[int, int, int], rocking_step_deg: float,
               config: FlagConfig) -> list[dict]:
    """The flags of the raw peak: broadening against the first scans of ``history`` (raised when a
    width crosses the threshold, not again while it stays broad), and drift (every scan it lasts)."""
    baseline = baseline_peak(history, config)
    flags = broadening_flags(peak, baseline, config)
    if flags and len(history) > config.baseline_scans:
        already = {f["direction"] for f in broadening_flags(history[-1], baseline, config)}
        flags = [f for f in flags if f["direction"] not in already]
    return flags + peak_drift_flags(peak, shape=shape, rocking_step_deg=rocking_step_deg, config=config)


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
