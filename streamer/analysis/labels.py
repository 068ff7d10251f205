"""Flags and pairs in short words, from the event record: the one wording the terminal, the report and
the watch command share."""

from __future__ import annotations


def flag_label(flag: dict) -> str:
    """A flag's kind with what qualifies it, e.g. ``vortex_lost(through the surface)``."""
    kind = flag.get("kind", "?")
    if kind == "domain_boundary":
        return f"{kind}({flag.get('state')})"
    if kind == "vortex_lost" and flag.get("left_through_surface"):
        return f"{kind}(through the surface)"
    if kind == "peak_drift":
        return f"{kind}(re-centre theta by {flag.get('recentre_theta_by_deg', 0):+.3f} deg)"
    if kind == "peak_broadening":
        return f"{kind}({flag.get('direction')} +{100 * flag.get('relative_change', 0):.0f}%)"
    return kind


def pair_label(pair: dict) -> str:
    """A dislocation pair with its mechanics estimates, e.g. ``[pair 108 nm apart: nucleation 74 MPa, ...]``."""
    drift = ("the image force dominates" if pair.get("image_force_dominates") else
             f"drift {pair['drift_stress_with_surface_mpa']:.0f} MPa"
             if pair.get("drift_stress_with_surface_mpa") is not None else f"drift {pair['drift_stress_mpa']:.0f} MPa")
    return (f"[pair {pair['separation_nm']:.0f} nm apart: nucleation {pair['critical_stress_mpa']:.0f} MPa, {drift}, "
            f"{pair['surface_distance_nm']:.0f} nm from the surface]")
