"""Recording: every received frame and its metadata into one HDF5 file per run.

Layout (NeXus-style)::

    /entry                      attrs: run, protocol_version
    /entry/scan_00003/data      (n, rows, cols) frames in arrival order, lzf-compressed
    /entry/scan_00003/frame_index, theta_deg, timestamp   (n,) per-frame metadata
    /entry/scan_00003           attrs: voltage_v, capacity_mah_g, num_frames, complete,
                                       missing (frame indices), metadata (JSON)
Frames are written as they arrive, and the file is flushed at the end of each scan.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np


class RunRecorder:
    """Appends frames to ``path`` (created, or appended to when the run resumes)."""

    def __init__(self, path: Path, run: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # no HDF5 file locking: an operator may open the file to look while the run goes on
        self._f = h5py.File(self.path, "a", locking=False)
        self._entry = self._f.require_group("entry")
        self._entry.attrs["run"] = run
        self._entry.attrs["protocol_version"] = 1

    @staticmethod
    def scan_group_name(scan: int) -> str:
        return f"scan_{scan:05d}"

    def start_scan(self, scan: int, num_frames: int, metadata: dict) -> None:
        name = self.scan_group_name(scan)
        if name in self._entry:
            del self._entry[name]  # a restarted scan replaces the earlier partial one
        g = self._entry.create_group(name)
        g.attrs["num_frames"] = int(num_frames)
        g.attrs["metadata"] = json.dumps(metadata, default=str)
        for key in ("voltage_v", "capacity_mah_g"):
            if key in metadata:
                g.attrs[key] = float(metadata[key])
        g.attrs["complete"] = False
        for key in ("frame_index", "theta_deg", "timestamp"):
            g.create_dataset(key, shape=(0,), maxshape=(None,), dtype="i8" if key == "frame_index" else "f8")

    def add_frame(self, scan: int, frame: int, theta_deg: float, timestamp: float, array: np.ndarray) -> None:
        g = self._entry[self.scan_group_name(scan)]
        if "data" not in g:
            g.create_dataset(
                "data", shape=(0,) + array.shape, maxshape=(None,) + array.shape, dtype=array.dtype,
                chunks=(1,) + array.shape, compression="lzf",
            )
        data = g["data"]
        n = data.shape[0]
        data.resize(n + 1, axis=0)
        data[n] = array
        for key, value in (("frame_index", frame), ("theta_deg", theta_deg), ("timestamp", timestamp)):
            ds = g[key]
            ds.resize(n + 1, axis=0)
            ds[n] = value

    def end_scan(self, scan: int, missing: list[int]) -> None:
        g = self._entry[self.scan_group_name(scan)]
        g.attrs["complete"] = not missing
        g.attrs["missing"] = np.asarray(missing, dtype="i8")
        self._f.flush()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.flush()
            self._f.close()


def read_scan(path: Path, scan: int) -> dict:
    """Read one recorded scan back, frames sorted by frame index."""
    with h5py.File(path, "r") as f:
        g = f["entry"][RunRecorder.scan_group_name(scan)]
        order = np.argsort(g["frame_index"][()])
        return {
            "frames": g["data"][()][order] if "data" in g else np.zeros((0,)),
            "frame_index": g["frame_index"][()][order],
            "theta_deg": g["theta_deg"][()][order],
            "timestamp": g["timestamp"][()][order],
            "metadata": json.loads(g.attrs["metadata"]),
            "complete": bool(g.attrs["complete"]),
        }
