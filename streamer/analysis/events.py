"""The one serialiser: typed detections and flags into the per-scan event record (docs/events.md).

Everything upstream (analysis, tracking, flags) works on typed values; this module alone turns them
into the plain JSON/msgpack record of events.jsonl and the results channel.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

import numpy as np

from streamer.analysis.detections import (
    Boundary,
    DislocationPair,
    Domain,
    ObjectAnalysis,
    StrainSummary,
    Vortex,
)
from streamer.analysis.flags import BoundaryChange, NewVortex, VortexLost, VortexMoved
from streamer.analysis.mechanics import PairMechanics


def plain(value):
    """JSON-ready copy: dataclasses as dicts (field order), tuples as lists, numpy scalars as Python numbers."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def vortex_record(v: Vortex) -> dict:
    return plain(v)


def boundary_record(b: Boundary) -> dict:
    return plain(b)


def domain_record(d: Domain) -> dict:
    return plain(d)


def mechanics_record(m: PairMechanics) -> dict:
    return {
        "separation_nm": round(m.separation_m * 1e9, 2),
        "critical_stress_mpa": round(m.critical_stress_pa / 1e6, 2),
        "activation_energy_j_per_m": float(f"{m.activation_energy_j_per_m:.4g}"),
        "drift_stress_mpa": round(m.drift_stress_pa / 1e6, 2),
        "drift_stress_with_surface_mpa": None if m.drift_stress_with_surface_pa is None
        else round(m.drift_stress_with_surface_pa / 1e6, 2),
        "image_stress_mpa": None if m.image_stress_pa is None else round(m.image_stress_pa / 1e6, 2),
        "image_force_dominates": m.image_force_dominates,
        "assumption": m.assumption,
    }


def pair_record(p: DislocationPair) -> dict:
    return {"vortices": list(p.vortices), "surface_distance_nm": p.surface_distance_nm, **mechanics_record(p.mechanics)}


def strain_record(s: StrainSummary) -> dict:
    if s.error is not None:
        return {"error": s.error}
    return {"energy_j": s.energy_j, "energy_j_range": list(s.energy_j_range),
            "energy_density_j_per_m3": s.energy_density_j_per_m3, "odd_energy_j": s.odd_energy_j,
            "noise_energy_j": s.noise_energy_j,
            "gradient_energy_j": s.gradient_energy_j,
            "rms_strain": s.rms_strain,
            "support_thresholds": list(s.support_thresholds), "surface_erosion_voxels": s.surface_erosion_voxels}


def _surface_nm(v: Vortex):
    return None if np.isnan(v.surface_distance_nm) else v.surface_distance_nm


def flag_record(flag) -> dict:
    """One flag as the event writes it: ``kind`` first, then its evidence."""
    if isinstance(flag, NewVortex):
        v = flag.vortex
        return {"kind": "new_vortex", "position_nm": list(v.position_nm), "winding": v.winding, "type": v.type,
                "confidence": v.confidence, "position": list(v.position), "length_voxels": v.length_voxels,
                "surface_distance_nm": _surface_nm(v)}
    if isinstance(flag, VortexLost):
        v = flag.vortex
        return {"kind": "vortex_lost", "last_position_nm": list(v.position_nm), "winding": v.winding,
                "last_surface_distance_nm": _surface_nm(v), "left_through_surface": flag.left_through_surface,
                "last_position": list(v.position), "type": v.type, "confidence": v.confidence,
                "surface_exit_distance_nm": flag.surface_exit_distance_nm}
    if isinstance(flag, VortexMoved):
        p, c = flag.before, flag.after
        return {"kind": "vortex_moved", "from_nm": list(p.position_nm), "to_nm": list(c.position_nm),
                "distance_nm": flag.distance_nm, "winding": c.winding, "from": list(p.position),
                "to": list(c.position), "type": c.type, "confidence": min(p.confidence, c.confidence),
                "move_threshold_nm": flag.move_threshold_nm}
    if isinstance(flag, BoundaryChange):
        return {"kind": "domain_boundary", "state": flag.state,
                "boundaries": [boundary_record(b) for b in flag.boundaries], "count": flag.count,
                "previous_count": flag.previous_count, "confidence": flag.confidence}
    kind = {"PeakBroadening": "peak_broadening", "PeakDrift": "peak_drift"}[type(flag).__name__]
    return {"kind": kind, **plain(flag)}


def analysis_fields(analysis: ObjectAnalysis) -> dict:
    """The event fields of one analysed object."""
    return {"vortices": [vortex_record(v) for v in analysis.vortices],
            "domain_boundaries": [boundary_record(b) for b in analysis.domain_boundaries],
            "dislocation_pairs": [pair_record(p) for p in analysis.dislocation_pairs],
            "strain": strain_record(analysis.strain),
            "domains": [domain_record(d) for d in analysis.domains]}


def _number(value) -> float:
    """A metadata number as a float; NaN when absent or not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return float("nan")
    try:
        value = float(value)
    except OverflowError:
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def build_event(*, run: str, scan: int, metadata: dict, peak: dict, flags: list, latency_s: float,
                analysis: ObjectAnalysis | None = None, **extra) -> dict:
    """One scan's results; the contract keys first, extensions after (``extra`` plain values)."""
    found = analysis_fields(analysis) if analysis is not None else {}
    event = {
        "run": str(run),
        "scan": int(scan),
        "voltage_v": _number(metadata.get("voltage_v")),
        "capacity_mah_g": _number(metadata.get("capacity_mah_g")),
        "peak": peak,
        "vortices": found.pop("vortices", []),
        "domain_boundaries": found.pop("domain_boundaries", []),
        "flags": [flag_record(f) for f in flags],
        "latency_s": round(float(latency_s), 3),
    }
    return {**event, **extra, **found}
