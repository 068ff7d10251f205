"""Scan assembly: collect the frames of each rocking scan into one stack, and say what is missing.

Frames may arrive out of order or twice; a frame whose shape differs from the scan's first frame
is rejected and counted, never silently dropped. A frame of a scan whose start was never seen
(the receiver restarted mid-scan) opens that scan implicitly when it says how many frames the
scan has; otherwise it is rejected and counted. A scan that stops receiving frames (the sender
died) is closed by :meth:`ScanAssembler.expire` and marked timed out.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from streamer.messaging.wire import EncodedFrame, WireError

log = logging.getLogger(__name__)


@dataclass
class AssembledScan:
    """A finished rocking scan. ``frames`` stacks it (theta, row, col) on first use, so the copy
    happens where the stack is needed (the analysis worker), not on the receive path."""

    run: str
    scan: int
    metadata: dict
    parts: dict[int, np.ndarray]  # frame index -> frame
    shape: tuple[int, int, int]  # (num_frames, rows, cols)
    theta_deg: np.ndarray  # (num_frames,), NaN where missing
    timestamps: np.ndarray  # (num_frames,), NaN where missing
    missing: list[int]
    timed_out: bool = False
    corrupt: list[int] = field(default_factory=list)  # compressed frames that did not decode (zero)

    @functools.cached_property
    def frames(self) -> np.ndarray:
        """(num_frames, rows, cols) in frame order, compressed frames decoded; missing ones zero."""
        dtype = next(iter(self.parts.values())).dtype if self.parts else np.uint32
        stack = np.empty(self.shape, dtype=dtype)
        for i in range(self.shape[0]):
            part = self.parts.get(i)
            if isinstance(part, EncodedFrame):
                try:
                    part = part.decode()
                except WireError as exc:
                    log.warning("frame %s of scan %s: %s; treated as missing", i, self.scan, exc)
                    self.corrupt.append(i)
                    part = None
            stack[i] = 0 if part is None else part
        self.parts = {}  # the stack now holds the pixels
        return stack

    @property
    def complete(self) -> bool:
        return not self.missing and not self.timed_out

    @property
    def status(self) -> str:
        return "timed_out" if self.timed_out else "complete" if not self.missing else "incomplete"

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
    last_activity: float = 0.0


class ScanAssembler:
    """Holds the open scans; ``counters`` counts every rejected or repeated message.

    Frames are kept as given, without a copy: views of received message buffers stay valid
    because the transport never reuses them.
    """

    def __init__(self, *, max_frames_per_scan: int = 2000, max_open_scans: int = 64,
                 max_held_bytes: int = 4 << 30) -> None:
        self._open: dict[tuple[str, int], _OpenScan] = {}
        self._geometry: dict[str, dict] = {}  # run -> last geometry seen, for implicit scans
        self.max_frames_per_scan = max_frames_per_scan
        self.max_open_scans = max_open_scans
        self.max_held_bytes = max_held_bytes
        self.held_bytes = 0  # frame bytes held by open scans
        self.evicted: list[AssembledScan] = []  # closed to keep the budgets; the caller submits them
        self.counters: Counter[str] = Counter()

    def _reject(self, reason: str, detail: str) -> None:
        self.counters[reason] += 1
        log.warning("rejected (%s): %s", reason, detail)

    def start_run(self, run: str, metadata: dict) -> None:
        """Remember a run's metadata (its geometry serves scans opened without their start)."""
        if isinstance(metadata.get("geometry"), dict):
            self._geometry[run] = metadata["geometry"]

    def start(self, run: str, scan: int, num_frames: int, metadata: dict, *, now: float = 0.0) -> None:
        key = (run, scan)
        if not 1 <= int(num_frames) <= self.max_frames_per_scan:
            raise ValueError(f"scan {scan} of run {run}: num_frames {num_frames} outside 1..{self.max_frames_per_scan}")
        if key in self._open:
            self._reject("restarted_scan", f"scan {scan} of run {run} started twice; earlier frames dropped")
        if isinstance(metadata.get("geometry"), dict):
            self._geometry[run] = metadata["geometry"]
        if key in self._open:
            self._drop(self._open.pop(key))
        while len(self._open) >= self.max_open_scans:
            self._evict("max_open_scans")
        self._open[key] = _OpenScan(run, scan, int(num_frames), dict(metadata), last_activity=now)

    def _evict(self, budget: str, keep: tuple | None = None) -> bool:
        """Close the least recently active open scan (not ``keep``) as incomplete; False if there is none."""
        candidates = [k for k in self._open if k != keep]
        if not candidates:
            return False
        run, scan = min(candidates, key=lambda k: self._open[k].last_activity)
        self.counters["evicted_scan"] += 1
        log.warning("scan %s of run %s closed as incomplete to keep %s", scan, run, budget)
        self.evicted.append(self.finish(run, scan))
        return True

    def take_evicted(self) -> list[AssembledScan]:
        """The scans closed to keep the budgets since the last call."""
        out, self.evicted = self.evicted, []
        return out

    def _drop(self, s: _OpenScan) -> None:
        self.held_bytes -= sum(_nbytes(a) for a, _, _ in s.frames.values())

    def add(self, run: str, scan: int, frame: int, theta_deg: float, timestamp: float, array: np.ndarray,
            *, num_frames: int | None = None, now: float = 0.0) -> bool:
        """Store one frame; False (and counted) if it was rejected."""
        s = self._open.get((run, scan))
        if s is None and num_frames is not None and 1 <= num_frames <= self.max_frames_per_scan:
            self.counters["implicit_scan"] += 1
            log.warning("frame %s of scan %s (run %r) before its scan_start (receiver restarted?): "
                        "opening the scan without its metadata", frame, scan, run)
            meta = {"implicit": True}
            if run in self._geometry:
                meta["geometry"] = self._geometry[run]
            self.start(run, scan, num_frames, meta, now=now)
            s = self._open[(run, scan)]
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
        size = _nbytes(array)
        while self.held_bytes + size > self.max_held_bytes:
            if not self._evict("max_held_bytes", keep=(run, scan)):
                self._reject("over_byte_budget", f"frame {frame} of scan {scan}: open scans already hold "
                                                 f"{self.held_bytes} bytes of {self.max_held_bytes}")
                return False
        self.held_bytes += size
        s.frames[frame] = (array, float(theta_deg), float(timestamp))
        s.last_activity = now
        return True

    def finish(self, run: str, scan: int, *, timed_out: bool = False) -> AssembledScan | None:
        """Close a scan and return its stack (None, counted, if it was never started)."""
        s = self._open.pop((run, scan), None)
        if s is None:
            self._reject("unknown_scan", f"end of unknown scan {scan} of run {run!r}")
            return None
        self._drop(s)
        if not s.frames:
            self.counters["empty_scan"] += 1
            log.warning("scan %s of run %s ended with no frames", scan, run)
        theta = np.full(s.num_frames, np.nan)
        stamps = np.full(s.num_frames, np.nan)
        for i, (_, th, ts) in s.frames.items():
            theta[i], stamps[i] = th, ts
        missing = [i for i in range(s.num_frames) if i not in s.frames]
        if missing and s.frames:
            self.counters["incomplete_scan"] += 1
            log.warning("scan %s of run %s is incomplete: missing frames %s", scan, run, missing)
        parts = {i: arr for i, (arr, _, _) in s.frames.items()}
        return AssembledScan(run, scan, s.metadata, parts, (s.num_frames, *(s.shape or (1, 1))), theta, stamps,
                             missing, timed_out)

    def expire(self, now: float, timeout_s: float) -> list[AssembledScan]:
        """Close, as timed out, every open scan with no frame for ``timeout_s`` (sender died)."""
        stale = [key for key, s in self._open.items() if now - s.last_activity > timeout_s]
        out = []
        for run, scan in stale:
            self.counters["timed_out_scan"] += 1
            log.warning("scan %s of run %s: no frame for %.1f s; closing it as timed out", scan, run, timeout_s)
            out.append(self.finish(run, scan, timed_out=True))
        return out

    def is_open(self, run: str, scan: int) -> bool:
        return (run, scan) in self._open

    def received(self, run: str, scan: int) -> int:
        """Frames held so far for an open scan (0 if it is not open)."""
        s = self._open.get((run, scan))
        return len(s.frames) if s else 0

    @property
    def open_scans(self) -> list[tuple[str, int]]:
        return list(self._open)


def _nbytes(array) -> int:
    """Bytes a held frame takes: a compressed frame its chunk, an array its buffer."""
    return len(array.chunk) if isinstance(array, EncodedFrame) else int(array.nbytes)
