"""Recording: every received frame and its metadata in one HDF5 file per run, readable while written.

The file is written in SWMR mode (single writer, multiple readers) into a fixed set of resizable
datasets, so a reader can look at it during the run and a killed writer leaves every flushed scan
intact. The layout is described in docs/recording.md.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from streamer.messaging.wire import EncodedFrame, bslz4_chunk
from streamer.recording.checksum import lookup3
from streamer.recording.room import check_room

LAYOUT_VERSION = 2
DATA = "entry/data"  # the frames and one row of per-frame columns per frame
SCANS = "entry/scans"  # one row per scan start ("attempt"); the latest attempt of a scan index wins
STATUS_CODES = {"partial": 0, "complete": 1, "incomplete": 2, "timed_out": 3}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
# column -> (dtype, fill value); the last column is written last, and its fill value marks a row not yet written
FRAME_COLUMNS = {"frame_index": ("i8", 0), "theta_deg": ("f8", math.nan), "timestamp": ("f8", math.nan),
                 "attempt": ("i8", -1)}
ROOM_HEADROOM = 16 * 2**20  # a frame or a scan start is refused (ENOSPC) with less free: HDF5 crashed on a full disk
GROW_ROWS = 64  # the data dataset grows this many frames at a time; the columns say how many are real
COLUMN_BATCH = 256  # per-frame columns are written in batches of this many rows (and at every flush)
SCAN_COLUMNS = {"num_frames": ("i8", 0), "status": ("i1", 0), "voltage_v": ("f8", math.nan),
                "capacity_mah_g": ("f8", math.nan), "metadata_offset": ("i8", 0), "metadata_length": ("i8", 0),
                "scan": ("i8", -1)}


class RunRecorder:
    """Writes the frames of run ``run`` to ``path``; appends when the file already holds that run.

    Only one recorder may write a file at a time. Readers see what was flushed: at every scan end, at a
    scan start or a frame at most ``flush_every_s`` after the last flush, and at every ``flush()``.
    """

    def __init__(self, path: Path, run: str, *, flush_every_s: float = 1.0, detector: dict | None = None):
        self.path = Path(path)
        self.detector = detector  # how the service prepares this run's frames (written once, with the layout)
        self.run = run
        self.flush_every_s = flush_every_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._limits = None  # the compression thread limit while used as a context manager
        if self.path.exists():
            _clear_stale_write_flags(self.path)
        self._f: h5py.File | None = None
        self._frame_ds: dict[str, h5py.Dataset] = {}
        self._rows = 0  # frames written to the data dataset
        self._pending: list[tuple] = []  # per-frame column rows not yet written
        check_room(self.path.parent, 0, headroom_bytes=ROOM_HEADROOM)
        f = self._file()
        recorded_run = f["entry"].attrs["run"]
        if recorded_run != run:
            self.close()
            raise ValueError(f"{self.path} records run {recorded_run!r}, not {run!r}")
        self._attempts = _latest_attempts(_columns(f[SCANS], ["scan"])["scan"])
        self._sync()

    def start_scan(self, scan: int, num_frames: int, metadata: dict) -> None:
        """Add a scan attempt; a scan index started again supersedes its earlier attempt."""
        check_room(self.path.parent, 0, headroom_bytes=ROOM_HEADROOM)
        self._attempts[int(scan)] = _add_attempt(self._file()[SCANS], int(scan), int(num_frames), metadata)
        if time.monotonic() - self._last_sync >= self.flush_every_s:  # a flood of starts: one flush a period
            self._sync()

    def add_frame(self, scan: int, frame: int, theta_deg: float, timestamp: float, array: np.ndarray) -> None:
        """Append one frame of a started scan (frames of one file all have the same shape and dtype).

        The frame is compressed here (bitshuffle + LZ4, the format of HDF5 filter 32008) and written
        as a raw chunk, which is several times faster than h5py's filter pipeline.
        """
        attempt = self._attempt(scan)
        if isinstance(array, EncodedFrame):  # arrived compressed (and checked on arrival): written as it came
            chunk, shape, dtype = bytes(array.chunk), array.shape, array.dtype
        else:
            array = np.ascontiguousarray(array)
            chunk, shape, dtype = bslz4_chunk(array), array.shape, array.dtype
        check_room(self.path.parent, len(chunk), headroom_bytes=ROOM_HEADROOM)
        self._file()
        if not self._frame_ds:
            self._create_frame_datasets(shape, dtype)
        data = self._frame_ds["data"]
        if shape != data.shape[1:] or dtype != data.dtype:
            raise ValueError(f"frame {frame} of scan {scan} is {shape} {dtype}; this recording "
                             f"holds {data.shape[1:]} {data.dtype} frames")
        if self._rows >= data.shape[0]:
            data.id.set_extent((self._rows + GROW_ROWS, *data.shape[1:]))
        data.id.write_direct_chunk((self._rows, 0, 0), chunk)
        self._rows += 1
        self._pending.append((frame, theta_deg, timestamp, attempt))
        if len(self._pending) >= COLUMN_BATCH or time.monotonic() - self._last_sync >= self.flush_every_s:
            self._sync()

    def _write_columns(self) -> None:
        """Append the buffered per-frame rows, the ``attempt`` column last (it vouches for the row)."""
        if not self._pending:
            return
        values = list(zip(*self._pending))
        for name, column in zip(FRAME_COLUMNS, values):
            _extend(self._frame_ds[name], column)
        self._pending.clear()

    def end_scan(self, scan: int, missing: list[int], status: str = "complete") -> None:
        """Mark a scan ended ("complete", "incomplete" or "timed_out"); flush it to disk."""
        if status not in ("complete", "incomplete", "timed_out"):
            raise ValueError(f"unknown scan status {status!r}")
        if missing and status == "complete":
            status = "incomplete"
        attempt = self._attempt(scan)
        self._sync()  # the frames reach the file before the status that vouches for them
        self._file()[SCANS]["status"][attempt] = STATUS_CODES[status]
        self._sync(durable=True)

    def flush(self) -> None:
        """Make everything written so far visible to readers and safe from a crash of this process."""
        self._sync()

    def close(self) -> None:
        """Flush and close the file (a clean close also clears its SWMR-writing flag)."""
        if self._f is not None and self._f.id.valid:
            if self._frame_ds:
                self._write_columns()
                data = self._frame_ds["data"]
                data.id.set_extent((self._rows, *data.shape[1:]))  # drop the rows grown ahead
            self._f.close()
        self._f = None
        self._frame_ds = {}

    def __enter__(self) -> RunRecorder:
        self._limits = single_threaded_compression()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        finally:
            self._limits.restore_original_limits()

    # -- internals -----------------------------------------------------------------------------
    def _file(self) -> h5py.File:
        """The open file, created with its layout if new; in SWMR mode as soon as it holds frames."""
        if self._f is None:
            self._f = h5py.File(self.path, "a", libver="latest", locking=False)
            if "entry" not in self._f:
                _create_layout(self._f, self.run, self.detector)
            if SCANS not in self._f:
                self.close()
                raise ValueError(f"{self.path} is not a bcdi-stream recording (layout {LAYOUT_VERSION})")
            _repair_after_kill(self._f)
            if "data" in self._f[DATA]:
                self._frame_ds = {name: self._f[DATA][name] for name in ["data", *FRAME_COLUMNS]}
                self._rows = self._frame_ds["attempt"].shape[0]
                self._f.swmr_mode = True
        return self._f

    def _create_frame_datasets(self, shape: tuple, dtype: np.dtype) -> None:
        """Create the frame datasets (needs the first frame's shape and dtype), then switch to SWMR."""
        group = self._file()[DATA]
        group.create_dataset("data", shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                             chunks=(1, *shape), **hdf5plugin.Bitshuffle(cname="lz4"))
        _create_columns(group, FRAME_COLUMNS, chunk=1024)
        self._frame_ds = {name: group[name] for name in ["data", *FRAME_COLUMNS]}
        self._f.swmr_mode = True

    def _sync(self, durable: bool = False) -> None:
        """Publish writes: flush in SWMR mode; before that, close (a non-SWMR writer blocks readers)."""
        if self._frame_ds:
            self._write_columns()
        if self._f is not None and self._f.swmr_mode:
            self._f.flush()
        else:
            self.close()
        if durable:  # also down to the disk, so ended scans survive a power cut
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._last_sync = time.monotonic()

    def _attempt(self, scan: int) -> int:
        if int(scan) not in self._attempts:
            raise ValueError(f"scan {scan} was never started in {self.path}")
        return self._attempts[int(scan)]


def single_threaded_compression():
    """A context manager keeping this thread's OpenMP (bitshuffle) to one thread, restored on exit.

    One frame is too small to split, and idle OpenMP threads spinning beside the receive loop and
    ZeroMQ's I/O thread halved the ingest rate. The writing thread holds it while it writes.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


# -- reading ---------------------------------------------------------------------------------------
class DamagedRecording(ValueError):
    """A recording HDF5 cannot read (a damaged block, a checksum that fails): named, never a hang."""


@contextmanager
def _reading(path: Path):
    """Open ``path`` for reading; HDF5's errors on a damaged file become one ``DamagedRecording``."""
    try:
        with _open_for_reading(path) as f:
            yield f
    except (FileNotFoundError, ValueError):
        raise
    except (OSError, RuntimeError, KeyError) as exc:  # h5py's words for a block it cannot read
        raise DamagedRecording(f"cannot read the recording {path}: it is damaged ({exc})") from None


def read_scan(path: Path, scan: int) -> dict:
    """The latest attempt of one scan: frames sorted by frame index, with their metadata and status.

    ``metadata_error`` says when the scan's metadata cannot be decoded (its frames are still given)."""
    with _reading(path) as f:
        attempts = _columns(f[SCANS], list(SCAN_COLUMNS))
        row = _latest_attempts(attempts["scan"]).get(int(scan))
        if row is not None:
            cols = _frame_columns(f)
            rows = np.flatnonzero(cols["attempt"] == row)
            order = np.argsort(cols["frame_index"][rows], kind="stable")
            frames = _read_rows(f, rows)[order]
            start, length = int(attempts["metadata_offset"][row]), int(attempts["metadata_length"][row])
            raw = f[SCANS]["metadata_json"][start:start + length]
    if row is None:
        raise KeyError(f"scan {scan} is not recorded in {path}")
    metadata = _decode_json(raw)
    status = STATUS_NAMES.get(int(attempts["status"][row]), "partial")
    num_frames = int(attempts["num_frames"][row])
    frame_index = cols["frame_index"][rows][order]
    return {
        "frames": frames,
        "frame_index": frame_index,
        "theta_deg": cols["theta_deg"][rows][order],
        "timestamp": cols["timestamp"][rows][order],
        "metadata": metadata,
        "num_frames": num_frames,
        "missing": sorted(set(range(num_frames)) - set(frame_index.tolist())),
        "complete": status == "complete",
        "status": status,
        **({} if metadata or not length else
           {"metadata_error": f"the metadata of scan {scan} ({length} bytes) is not readable JSON"}),
    }


def list_scans(path: Path) -> list[dict]:
    """One summary per recorded scan (its latest attempt), in scan order."""
    with _reading(path) as f:
        attempts = _columns(f[SCANS], list(SCAN_COLUMNS))
        frame_attempts = _frame_columns(f)["attempt"]
    counts = np.bincount(frame_attempts[frame_attempts >= 0], minlength=len(attempts["scan"]))
    out = []
    for scan, row in sorted(_latest_attempts(attempts["scan"]).items()):
        status = STATUS_NAMES.get(int(attempts["status"][row]), "partial")
        out.append({"scan": scan, "num_frames": int(attempts["num_frames"][row]),
                    "frames_recorded": int(counts[row]), "status": status, "complete": status == "complete",
                    "voltage_v": float(attempts["voltage_v"][row]),
                    "capacity_mah_g": float(attempts["capacity_mah_g"][row])})
    return out


def run_of(path: Path) -> str:
    """The run a recording belongs to."""
    with _reading(path) as f:
        return str(f["entry"].attrs["run"])


# -- helpers ---------------------------------------------------------------------------------------
def recorded_detector(path: Path) -> dict | None:
    """The detector preparation (``DetectorConfig`` as JSON) the recording service used, None when not recorded."""
    with _reading(path) as f:
        raw = f["entry"].attrs.get("detector_config")
    return None if raw is None else json.loads(raw)


def _create_layout(f: h5py.File, run: str, detector: dict | None = None) -> None:
    """The groups, attributes and per-scan table (attributes can't be written once in SWMR mode)."""
    entry = f.create_group("entry")
    entry.attrs.update(NX_class="NXentry", run=run, layout_version=LAYOUT_VERSION)
    if detector is not None:
        entry.attrs["detector_config"] = json.dumps(detector)
    data = f.create_group(DATA)
    data.attrs.update(NX_class="NXdata", signal="data")
    scans = f.create_group(SCANS)
    scans.attrs.update(NX_class="NXcollection")
    _create_columns(scans, SCAN_COLUMNS, chunk=256)
    scans.create_dataset("metadata_json", shape=(0,), maxshape=(None,), dtype="u1", chunks=(16384,))


def _repair_after_kill(f: h5py.File) -> None:
    """Cut the rows a killed writer left half written (readers never saw them), so appends stay aligned."""
    tables = [(f[SCANS], list(SCAN_COLUMNS))]
    if "data" in f[DATA]:
        tables.append((f[DATA], ["data", *FRAME_COLUMNS]))
    for group, names in tables:
        n = min(group[name].shape[0] for name in names)
        for name in names:
            if group[name].shape[0] > n:
                group[name].resize(n, axis=0)
    rows = _columns(f[SCANS], ["metadata_offset", "metadata_length"])
    end = int((rows["metadata_offset"] + rows["metadata_length"]).max(initial=0))
    if f[SCANS]["metadata_json"].shape[0] < end:  # never write a new scan's JSON over an old row's
        f[SCANS]["metadata_json"].resize(end, axis=0)


def _create_columns(group: h5py.Group, columns: dict, chunk: int) -> None:
    for name, (dtype, fill) in columns.items():
        group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk,), fillvalue=fill)


def _add_attempt(scans: h5py.Group, scan: int, num_frames: int, metadata: dict) -> int:
    """Append one row to the scan table (its ``scan`` column last); returns the row (attempt id)."""
    blob = np.frombuffer(json.dumps(metadata, default=str).encode(), np.uint8)
    offset = _extend(scans["metadata_json"], blob)
    values = {"num_frames": num_frames, "status": STATUS_CODES["partial"],
              "voltage_v": _as_float(metadata.get("voltage_v")),
              "capacity_mah_g": _as_float(metadata.get("capacity_mah_g")),
              "metadata_offset": offset, "metadata_length": blob.size, "scan": scan}
    return [_extend(scans[name], [values[name]]) for name in SCAN_COLUMNS][-1]


def _extend(ds: h5py.Dataset, values) -> int:
    """Append ``values`` along the first axis; returns the first new row.

    Low-level h5py calls: for one row they are about three times faster than ``ds[n:] = values``.
    """
    values = np.ascontiguousarray(values, ds.dtype)
    n = ds.shape[0]
    ds.id.set_extent((n + len(values), *ds.shape[1:]))
    target = ds.id.get_space()
    target.select_hyperslab((n,) + (0,) * (values.ndim - 1), values.shape)
    ds.id.write(h5py.h5s.create_simple(values.shape), target, values)
    return n


def _columns(group: h5py.Group, names: list[str]) -> dict[str, np.ndarray]:
    """Columns cut to the rows every column has (a row may be caught half written)."""
    n = min(group[name].shape[0] for name in names)
    return {name: group[name][:n] for name in names}


def _frame_columns(f: h5py.File) -> dict[str, np.ndarray]:
    """The per-frame columns, cut to the frames whose data is there too."""
    if "data" not in f[DATA]:
        return {name: np.zeros(0, dtype) for name, (dtype, _) in FRAME_COLUMNS.items()}
    n = f[DATA]["data"].shape[0]
    return {name: column[:n] for name, column in _columns(f[DATA], list(FRAME_COLUMNS)).items()}


def _latest_attempts(scan_column: np.ndarray) -> dict[int, int]:
    """scan index -> its last row; rows not fully written (scan == -1) are skipped."""
    return {int(s): row for row, s in enumerate(scan_column) if s >= 0}


def _read_rows(f: h5py.File, rows: np.ndarray) -> np.ndarray:
    """Frames at increasing ``rows`` of the data dataset (one slice when they are contiguous)."""
    if "data" not in f[DATA]:
        return np.zeros((0, 0, 0))
    ds = f[DATA]["data"]
    if rows.size == 0:
        return np.zeros((0, *ds.shape[1:]), ds.dtype)
    if rows[-1] - rows[0] == rows.size - 1:
        return ds[rows[0]:rows[-1] + 1]
    return ds[rows]


def _open_for_reading(path: Path, tries: int = 20, wait_s: float = 0.05) -> h5py.File:
    """Open for reading: as a plain reader when no writer holds the file (a damaged file then fails at
    once; HDF5's SWMR reader retries each damaged read for minutes), as a SWMR reader while a writer
    does; retry for a moment while a writer is opening the file (not yet in SWMR mode)."""
    for attempt in range(tries):
        try:
            try:
                f = h5py.File(path, "r", locking=False)
            except FileNotFoundError:
                raise
            except OSError as exc:
                if "already open for write" not in str(exc):
                    raise
                f = h5py.File(path, "r", swmr=True, locking=False)  # a writer has it: read what it flushed
            break
        except FileNotFoundError:
            raise
        except OSError:
            if attempt == tries - 1:
                raise
            time.sleep(wait_s)
    if SCANS not in f:
        f.close()
        raise ValueError(f"{path} is not a bcdi-stream recording (layout {LAYOUT_VERSION})")
    return f


def _decode_json(raw: np.ndarray) -> dict:
    try:
        return json.loads(raw.tobytes().decode())
    except ValueError:  # the row of a scan start caught half written (writer killed, or writing now)
        return {}


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# -- recovery after a killed writer --------------------------------------------------------------
def _clear_stale_write_flags(path: Path) -> None:
    """Clear the "open for writing" flags a killed writer left in the superblock, as ``h5clear -s`` does.

    HDF5 refuses to open such a file for writing again; only call this when no other writer is running.
    """
    with open(path, "r+b") as fh:
        sb = bytearray(fh.read(48))  # superblock v2/v3 with 8-byte addresses: 44 bytes and a checksum
        if len(sb) < 48 or sb[:8] != b"\x89HDF\r\n\x1a\n" or sb[8] not in (2, 3) or sb[9] != 8 or sb[11] == 0:
            return
        sb[11] = 0
        struct.pack_into("<I", sb, 44, lookup3(bytes(sb[:44])))
        fh.seek(0)
        fh.write(sb)


