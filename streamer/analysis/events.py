"""The per-scan event record: the events.jsonl contract (docs/events.md)."""

from __future__ import annotations


def build_event(*, run: str, scan: int, metadata: dict, peak: dict, vortices: list, domain_boundaries: list,
                flags: list, latency_s: float, **extra) -> dict:
    """One scan's results; the contract keys first, extensions after."""
    return {
        "run": str(run),
        "scan": int(scan),
        "voltage_v": float(metadata.get("voltage_v", float("nan"))),
        "capacity_mah_g": float(metadata.get("capacity_mah_g", float("nan"))),
        "peak": peak,
        "vortices": vortices,
        "domain_boundaries": domain_boundaries,
        "flags": flags,
        "latency_s": round(float(latency_s), 3),
        **extra,
    }
