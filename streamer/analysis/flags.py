"""Scan-to-scan comparison: the flags that tell the operator something changed.

Each flag is a typed value holding its evidence (the detections, values and thresholds behind it);
``streamer.analysis.events`` writes them into the event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.analysis.config import FlagConfig
from streamer.analysis.detections import Boundary, ObjectAnalysis, Vortex


@dataclass(frozen=True)
class NewVortex:
    """A line with no same-winding line of the previous scan within the match radius."""

    vortex: Vortex


@dataclass(frozen=True)
class VortexLost:
    """A line of the previous scan with no match now; near the surface, it left through it."""

    vortex: Vortex  # as last seen
    left_through_surface: bool
    surface_exit_distance_nm: float


@dataclass(frozen=True)
class VortexMoved:
    """A matched line that moved further than the move threshold."""

    before: Vortex
    after: Vortex
    distance_nm: float
    move_threshold_nm: float


@dataclass(frozen=True)
class BoundaryChange:
    """The number of domain boundaries changed: one appeared or resolved."""

    state: str  # appeared | resolved
    boundaries: tuple[Boundary, ...]  # the boundaries of the scan that has more
    count: int
    previous_count: int
    confidence: float | None


@dataclass(frozen=True)
class PeakBroadening:
    """A peak width grew beyond the threshold and its error over the baseline scans."""

    direction: str  # parallel | perpendicular (to q)
    relative_change: float
    width: float
    baseline: float
    error: float
    significance: float
    relative_change_error: float
    threshold: float
    confidence: float


@dataclass(frozen=True)
class PeakDrift:
    """The Bragg peak's centre is leaving the measured volume; the re-centring to do."""

    center_of_mass_px: list
    offset_px: list
    recentre_theta_by_deg: float
    recentre_detector_by_px: list
    axes: list
    threshold_fraction: float


Flag = NewVortex | VortexLost | VortexMoved | BoundaryChange | PeakBroadening | PeakDrift


def match_vortices(previous: list[Vortex], current: list[Vortex], radius_nm: float):
    """Greedy nearest matching of same-winding vortices; returns (pairs, unmatched_prev, unmatched_cur)."""
    cands = []
    for i, p in enumerate(previous):
        for j, c in enumerate(current):
            if p.winding != c.winding:
                continue
            d = float(np.linalg.norm(np.subtract(p.position_nm, c.position_nm)))
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


def vortex_flags(previous: list[Vortex], current: list[Vortex], config: FlagConfig) -> list[Flag]:
    """New, lost and moved lines between two scans."""
    pairs, lost, new = match_vortices(previous, current, config.vortex_match_radius_nm)
    flags: list[Flag] = [NewVortex(current[j]) for j in new]
    for i in lost:
        surface = previous[i].surface_distance_nm
        flags.append(VortexLost(previous[i], bool(surface <= config.surface_exit_distance_nm),
                                config.surface_exit_distance_nm))
    for i, j, d in pairs:
        if d > config.vortex_move_threshold_nm:
            flags.append(VortexMoved(previous[i], current[j], round(d, 1), config.vortex_move_threshold_nm))
    return flags


def boundary_flags(previous: list[Boundary], current: list[Boundary]) -> list[Flag]:
    """A boundary appeared or resolved (their number changed); the evidence is the boundaries."""
    if len(current) == len(previous):
        return []
    state, shown = ("appeared", current) if len(current) > len(previous) else ("resolved", previous)
    coherence = [b.coherence for b in shown]
    return [BoundaryChange(state, tuple(shown), len(current), len(previous),
                           round(min(coherence), 3) if coherence else None)]


def defect_flags(previous: ObjectAnalysis, current: ObjectAnalysis, config: FlagConfig) -> list[Flag]:
    """All defect flags between two analysed scans."""
    return (vortex_flags(list(previous.vortices), list(current.vortices), config)
            + boundary_flags(list(previous.domain_boundaries), list(current.domain_boundaries)))


def broadening_flags(peak: dict, baseline: dict | None, config: FlagConfig) -> list[PeakBroadening]:
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
                flags.append(PeakBroadening(
                    key.removeprefix("width_"), round(rel, 3), now, ref, round(err, 6), round(min(significance, 1e6), 1),
                    round(err / ref, 4), config.broadening_threshold,
                    round(float(1 - np.exp(-0.5 * min(significance, 40) ** 2)), 3)))
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
               config: FlagConfig) -> list[Flag]:
    """The flags of the raw peak: broadening against the first scans of ``history`` (raised when a
    width crosses the threshold, not again while it stays broad), and drift (every scan it lasts)."""
    baseline = baseline_peak(history, config)
    flags = broadening_flags(peak, baseline, config)
    if flags and len(history) > config.baseline_scans:
        already = {f.direction for f in broadening_flags(history[-1], baseline, config)}
        flags = [f for f in flags if f.direction not in already]
    return flags + peak_drift_flags(peak, shape=shape, rocking_step_deg=rocking_step_deg, config=config)


def peak_drift_flags(peak: dict, *, shape: tuple[int, int, int], rocking_step_deg: float,
                     config: FlagConfig) -> list[PeakDrift]:
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
    return [PeakDrift([round(c, 2) for c in com], [round(o, 2) for o in offsets],
                      round(offsets[2] * rocking_step_deg, 5), [round(offsets[0], 1), round(offsets[1], 1)],
                      [name for name, d in zip(("q_z (detector rows)", "q_y (detector columns)", "rocking"),
                                               drifting) if d],
                      config.peak_drift_fraction)]
