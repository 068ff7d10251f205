"""Scan assembly: collect the frames of each rocking scan into one stack, and say what is missing.

Frames may arrive out of order or twice; a frame of a scan that was never started, or whose
shape differs from the scan's first frame, is rejected and counted, never silently dropped.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class AssembledScan:
    """A finished rocking scan: frames stacked by frame index (theta, row, col)."""

    run: str
    scan: int
    metadata: dict
    frames: np.ndarray  # (num_frames, rows, cols); missing frames are zero
    theta_deg: np.ndarray  # (num_frames,), NaN where missing
    timestamps: np.ndarray  # (num_frames,), NaN where missing
    missing: list[int]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def last_frame_time(self) -> float:
        return float(np.nanmax(self.timestamps)) if np.isfinite(self.timestamps).any() else float("nan")


@dataclass
class _OpenScan:
    run: str
    scan: int
    num_frames: int
    metadata: dict
    frames: dict[int, tuple[np.ndarray, float, float]] = field(default_factory=dict)
    shape: tuple[int, int] | None = None


class ScanAssembler:
    """Holds the open scans; ``counters`` counts every rejected or repeated message."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], _OpenScan] = {}
        self.counters: Counter[str] = Counter()

    def _reject(self, reason: str, detail: str) -> None:
        self.counters[reason] += 1
        log.warning("rejected (%s): %s", reason, detail)

    def start(self, run: str, scan: int, num_frames: int, metadata: dict) -> None:
        key = (run, scan)
        if key in self._open:
            self._reject("restarted_scan", f"scan {scan} of run {run} started twice; earlier frames dropped")
        if int(num_frames) < 1:
            raise ValueError(f"scan {scan} of run {run}: num_frames must be >= 1, got {num_frames}")
        self._open[key] = _OpenScan(run, scan, int(num_frames), dict(metadata))

    def add(self, run: str, scan: int, frame: int, theta_deg: float, timestamp: float, array: np.ndarray) -> bool:
        """Store one frame; False (and counted) if it was rejected."""
        s = self._open.get((run, scan))
        if s is None:
            self._reject("unknown_scan", f"frame {frame} of unknown scan {scan} of run {run!r}")
            return False
        if not 0 <= frame < s.num_frames:
            self._reject("frame_out_of_range", f"frame {frame} outside 0..{s.num_frames - 1} in scan {scan}")
            return False
        if s.shape is None:
            s.shape = tuple(array.shape)
        elif tuple(array.shape) != s.shape:
            self._reject("wrong_shape", f"frame {frame} of scan {scan} has shape {array.shape}, scan has {s.shape}")
            return False
        if frame in s.frames:
            self._reject("duplicate_frame", f"frame {frame} of scan {scan} received again; first copy kept")
            return False
        s.frames[frame] = (np.array(array, copy=True), float(theta_deg), float(timestamp))
        return True

    def finish(self, run: str, scan: int) -> AssembledScan | None:
        """Close a scan and return its stack (None, counted, if it was never started)."""
        s = self._open.pop((run, scan), None)
        if s is None:
            self._reject("unknown_scan", f"end of unknown scan {scan} of run {run!r}")
            return None
        if not s.frames:
            self.counters["empty_scan"] += 1
            log.warning("scan %s of run %s ended with no frames", scan, run)
            return AssembledScan(run, scan, s.metadata, np.zeros((s.num_frames, 1, 1), np.uint32),
                                 np.full(s.num_frames, np.nan), np.full(s.num_frames, np.nan),
                                 list(range(s.num_frames)))
        first = next(iter(s.frames.values()))[0]
        stack = np.zeros((s.num_frames,) + s.shape, dtype=first.dtype)
        theta = np.full(s.num_frames, np.nan)
        stamps = np.full(s.num_frames, np.nan)
        for i, (arr, th, ts) in s.frames.items():
            stack[i], theta[i], stamps[i] = arr, th, ts
        missing = [i for i in range(s.num_frames) if i not in s.frames]
        if missing:
            self.counters["incomplete_scan"] += 1
            log.warning("scan %s of run %s is incomplete: missing frames %s", scan, run, missing)
        return AssembledScan(run, scan, s.metadata, stack, theta, stamps, missing)

    @property
    def open_scans(self) -> list[tuple[str, int]]:
        return list(self._open)
