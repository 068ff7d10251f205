"""How far each open scan has got: frames received of expected, frame rate, gaps (for the live page)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Scan:
    expected: int | None
    started: float
    last: float
    frames: set[int] = field(default_factory=set)


class ScanProgress:
    """Counts the frames of open scans; times are the caller's clock (seconds, monotonic)."""

    def __init__(self) -> None:
        self._scans: dict[tuple[str, int], _Scan] = {}

    def start(self, run: str, scan: int, expected: int | None, now: float) -> None:
        self._scans[(run, scan)] = _Scan(expected, now, now)

    def frame(self, run: str, scan: int, index: int, now: float, expected: int | None = None) -> None:
        s = self._scans.get((run, scan))
        if s is None:
            s = self._scans[(run, scan)] = _Scan(expected, now, now)
        if not s.frames:
            s.started = now  # the rate counts from the first frame, not from the scan's start message
        s.frames.add(int(index))
        s.last = now

    def snapshot(self, run: str, scan: int, now: float, status: str = "running") -> dict | None:
        """``{"run", "scan", "received", "expected", "rate_hz", "gaps", "status"}``; gaps are frame
        indices below the highest one received that have not arrived."""
        s = self._scans.get((run, scan))
        if s is None:
            return None
        top = max(s.frames, default=-1)
        if status != "running" and s.expected:
            top = s.expected - 1
        gaps = [i for i in range(top + 1) if i not in s.frames]
        elapsed = s.last - s.started
        rate = (len(s.frames) - 1) / elapsed if len(s.frames) > 1 and elapsed > 0 else 0.0
        return {"run": run, "scan": scan, "received": len(s.frames), "expected": s.expected,
                "rate_hz": round(rate, 2), "gaps": gaps[:200], "gap_count": len(gaps), "status": status}

    def finish(self, run: str, scan: int, now: float, status: str) -> dict | None:
        """The scan's last snapshot; it is forgotten afterwards."""
        snap = self.snapshot(run, scan, now, status)
        self._scans.pop((run, scan), None)
        return snap

    @property
    def open_scans(self) -> list[tuple[str, int]]:
        return list(self._scans)
