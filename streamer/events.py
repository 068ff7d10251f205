"""The per-scan event record (the events.jsonl contract, see docs/events.md) and its log file."""

from __future__ import annotations

import json
from pathlib import Path


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


class EventLog:
    """Appends one JSON object per line and flushes it, so a reader sees each scan at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, event: dict) -> None:
        self._f.write(json.dumps(event, allow_nan=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_events(path: Path) -> list[dict]:
    """All events of an events.jsonl file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
