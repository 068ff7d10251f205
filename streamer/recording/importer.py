"""Import: scans measured elsewhere (TIFF frames, an HDF5/NeXus frame dataset) and their geometry into a recording.

The result is a recording in the live format (docs/recording.md), so ``replay``, ``serve`` and
``reconstruct`` take an imported scan as any recorded one. Every input is checked before anything
is written (the geometry against the frames, dtypes, counts, file headers and sizes); frames are
then streamed a block at a time with their dtype kept, into a hidden file beside the output that
is renamed when complete. Only the caller chooses where anything is written. docs/import.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import struct
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from streamer.geometry import from_dict
from streamer.messaging.wire import FRAME_DTYPES
from streamer.recording.recorder import SCANS, RunRecorder
from streamer.settings import ConfigError

TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
OUTPUT_SUFFIXES = (".h5", ".hdf5", ".nxs")
BLOCK_BYTES = 32 * 2**20  # frames of an HDF5 dataset are read this many bytes at a time (at least one chunk row)
ANGLE_STEP_TOLERANCE = 0.1  # measured angles may step up to 10% off the geometry's rocking_step_deg


class ImportInputError(ValueError):
    """An input that cannot be imported as it is; the message names the file and the field."""


# -- frame sources -------------------------------------------------------------------------------
class FrameSource:
    """Frames of one scan in a file or folder: their count, shape and dtype known before any is read."""

    path: Path
    num_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    monitor: np.ndarray | None = None  # I0 per frame, when the file carries one
    monitor_source: str | None = None

    def check(self) -> None:
        """What can be checked without decoding every frame (headers, sizes); ImportInputError naming the file."""

    def frames(self) -> Iterator[np.ndarray]:
        """The frames in order, one at a time (native byte order, the file's dtype)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Where the frames came from, for the scan's metadata."""
        raise NotImplementedError


class TiffStack(FrameSource):
    """One multi-page TIFF file: a frame a page."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with _open_tiff(self.path) as tif:
            pages = len(tif.pages)
            series = tif.series[0].shape if tif.series else ()
            if len(series) == 3 and series[0] != pages:  # a shaped/ImageJ file declares its frame count
                raise ImportInputError(f"{self.path} declares {series[0]} frames but only {pages} can be read: "
                                       f"a truncated or damaged TIFF")
            first = tif.pages[0]
            self.frame_shape, self.dtype = _page_shape(first, self.path), _native(first.dtype)
        self.num_frames = pages

    def check(self) -> None:
        with _open_tiff(self.path) as tif:
            size = self.path.stat().st_size
            for k, page in enumerate(tif.pages):
                _check_page(page, self.path, k, size, self, f"page {k} of {self.path}")

    def frames(self) -> Iterator[np.ndarray]:
        with _open_tiff(self.path) as tif:
            size = self.path.stat().st_size
            for k, page in enumerate(tif.pages):
                yield _check_frame(_read_page(page, self.path, k, size), self, f"page {k} of {self.path}")

    def describe(self) -> dict:
        return {"format": "tiff-stack", "path": str(self.path.resolve()), "frames": self.num_frames}


class TiffFolder(FrameSource):
    """A folder of single-frame TIFF files, in natural order (frame_2 before frame_10)."""

    def __init__(self, path: Path, files: list[Path]):
        self.path, self.files = Path(path), files
        with _open_tiff(files[0]) as tif:
            self.frame_shape, self.dtype = _page_shape(tif.pages[0], files[0]), _native(tif.pages[0].dtype)
        self.num_frames = len(files)

    def check(self) -> None:
        for name in self.files:
            with _open_tiff(name) as tif:
                self._one_page(tif, name)
                _check_page(tif.pages[0], name, 0, name.stat().st_size, self, str(name))

    def frames(self) -> Iterator[np.ndarray]:
        for name in self.files:
            with _open_tiff(name) as tif:
                self._one_page(tif, name)
                yield _check_frame(_read_page(tif.pages[0], name, 0, name.stat().st_size), self, str(name))

    @staticmethod
    def _one_page(tif, name: Path) -> None:
        if len(tif.pages) != 1:
            raise ImportInputError(f"{name} holds {len(tif.pages)} pages; a folder of frames needs one frame a "
                                   f"file (import a multi-page TIFF as a file of its own)")

    def describe(self) -> dict:
        return {"format": "tiff-folder", "path": str(self.path.resolve()), "frames": self.num_frames,
                "first_file": self.files[0].name, "last_file": self.files[-1].name}


class HDF5Frames(FrameSource):
    """A 3D frame dataset (frames on the first axis) of an HDF5/NeXus file, given or found.

    Found: the 3D dataset ``data`` of an NXdetector group, else the signal of an NXdata group
    (``/entry/instrument/detector/data``, ``/entry/data/data``); several different ones are refused.
    """

    def __init__(self, path: Path, dataset: str | None = None, monitor_dataset: str | None = None):
        self.path = Path(path)
        with _open_hdf5(self.path) as f:
            if "entry" in f and isinstance(f["entry"], h5py.Group) and SCANS in f:
                raise ImportInputError(f"{self.path} is already a bcdi-stream recording: replay or reconstruct "
                                       f"it as it is")
            self.dataset = dataset if dataset is not None else _find_frames(f, self.path)
            ds = f.get(self.dataset)
            if not isinstance(ds, h5py.Dataset):
                raise ImportInputError(f"{self.path} has no dataset {self.dataset!r} (--dataset)")
            if ds.ndim != 3:
                raise ImportInputError(f"dataset {self.dataset} of {self.path} is {ds.ndim}D {ds.shape}; frames "
                                       f"must be a 3D (frame, row, column) dataset")
            self.num_frames, self.frame_shape = int(ds.shape[0]), (int(ds.shape[1]), int(ds.shape[2]))
            self.dtype = _native(ds.dtype)
            self.dataset = "/" + self.dataset.lstrip("/")  # as found or given (ds.name may be another link's)
            frame_bytes = max(1, ds.dtype.itemsize * ds.shape[1] * ds.shape[2])
            rows = max(1, BLOCK_BYTES // frame_bytes)
            if ds.chunks and rows < ds.chunks[0] <= 4 * rows:  # whole chunks: each decompressed once
                rows = ds.chunks[0]
            self._block = rows
            self.monitor, self.monitor_source = _find_monitor(f, self.path, monitor_dataset, self.num_frames)

    def check(self) -> None:
        """The first and the last frame decode (a missing compression filter, data cut short)."""
        with _open_hdf5(self.path) as f:
            for k in sorted({0, self.num_frames - 1}):
                self._frame(f[self.dataset], k)

    def _frame(self, ds: h5py.Dataset, k: int) -> np.ndarray:
        try:
            return ds[k]
        except (OSError, ValueError, RuntimeError) as exc:
            raise ImportInputError(f"cannot read frame {k} of {self.dataset} in {self.path}: {exc}") from None

    def frames(self) -> Iterator[np.ndarray]:
        with _open_hdf5(self.path) as f:
            ds = f[self.dataset]
            if ds.shape[0] != self.num_frames:
                raise ImportInputError(f"dataset {self.dataset} of {self.path} changed while importing")
            for start in range(0, self.num_frames, self._block):
                stop = min(start + self._block, self.num_frames)
                try:
                    block = ds[start:stop]
                except (OSError, ValueError, RuntimeError):
                    block = [self._frame(ds, k) for k in range(start, stop)]  # names the frame that fails
                for frame in block:
                    yield _check_frame(frame, self, f"{self.dataset} of {self.path}")

    def describe(self) -> dict:
        out = {"format": "hdf5", "path": str(self.path.resolve()), "dataset": self.dataset, "frames": self.num_frames}
        if self.monitor_source:
            out["monitor_dataset"] = self.monitor_source
        return out


def open_frames(path: Path, *, dataset: str | None = None, monitor_dataset: str | None = None) -> FrameSource:
    """The frame source at ``path``: a multi-page TIFF, a folder of TIFF frames, or an HDF5/NeXus file."""
    path = Path(path)
    if path.is_dir():
        files = tiff_files(path)
        if not files:
            raise ImportInputError(f"{path} holds no .tif/.tiff files")
        return TiffFolder(path, files)
    if not path.is_file():
        raise ImportInputError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return TiffStack(path)
    if suffix in HDF5_SUFFIXES:
        return HDF5Frames(path, dataset, monitor_dataset)
    raise ImportInputError(f"unsupported input {path}: a .tif/.tiff stack, a folder of TIFF frames, or an "
                           f"HDF5/NeXus file ({', '.join(HDF5_SUFFIXES)})")


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Each input as one scan; a folder without TIFF frames is one scan per sub-folder or HDF5 file (natural order)."""
    out = []
    for path in map(Path, paths):
        if not path.is_dir():
            out.append(path)
            continue
        children = sorted((p for p in path.iterdir() if not p.name.startswith(".")
                           and (p.is_dir() or p.suffix.lower() in HDF5_SUFFIXES)), key=natural_key)
        if tiff_files(path):
            if any(p.is_dir() and tiff_files(p) for p in children):
                raise ImportInputError(f"{path} holds both TIFF frames and folders of them: give the folders (a "
                                       f"scan each) or a folder of frames")
            out.append(path)
        elif children:
            out.extend(children)
        else:
            raise ImportInputError(f"{path} holds no TIFF frames, no folders of them and no HDF5 files")
    return out


def tiff_files(folder: Path) -> list[Path]:
    """The TIFF files of a folder (hidden files left out), in natural order."""
    return sorted((p for p in Path(folder).iterdir()
                   if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".") and p.is_file()),
                  key=natural_key)


def natural_key(path: Path) -> list:
    """Sort key that orders the numbers in a name by value: frame_2 < frame_10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", Path(path).name) if part]


# -- the scan description and the geometry ----------------------------------------------------------
@dataclass
class ScanImport:
    """One scan to import: its frames, its number and what is known about it."""

    source: FrameSource
    scan: int
    voltage_v: float | None = None
    capacity_mah_g: float | None = None
    monitor: np.ndarray | None = None  # I0 per frame (overrides one the file carries)
    monitor_source: str | None = None
    angles_deg: np.ndarray | None = None  # measured rocking angle per frame (default: from the geometry)
    metadata: dict = field(default_factory=dict)  # more scan_start metadata (sample, exposure_s, ...)


@dataclass(frozen=True)
class Orientation:
    """How a stored frame maps to the geometry's (rows down, columns along row x exit ray): applied in this order."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def __bool__(self) -> bool:
        return self.transpose or self.flip_rows or self.flip_cols

    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return (shape[1], shape[0]) if self.transpose else tuple(shape)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        if self.transpose:
            frame = frame.T
        if self.flip_rows:
            frame = frame[::-1]
        if self.flip_cols:
            frame = frame[:, ::-1]
        return np.ascontiguousarray(frame)


def load_geometry_file(path: Path) -> dict:
    """The geometry of a TOML or JSON file (its fields at the top or under ``geometry``), checked field by field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ImportInputError(f"cannot read geometry file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            raise ImportInputError(f"geometry file {path} must be .toml or .json")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        if isinstance(exc, ImportInputError):
            raise
        raise ImportInputError(f"geometry file {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("geometry"), dict):
        data = data["geometry"]
    if not isinstance(data, dict):
        raise ImportInputError(f"geometry file {path} must hold a table of geometry fields")
    if "kind" not in data:
        raise ImportInputError(f"geometry file {path}: missing key kind (\"detector\" or \"orthogonal\")")
    try:
        return from_dict(data).to_dict()
    except (ConfigError, TypeError, ValueError) as exc:
        raise ImportInputError(f"geometry file {path}: {exc}") from None


def check_fit(geometry: dict, frame_shape: tuple[int, int], num_frames: int, what: str, *,
              allow_missing: bool = False) -> list[int]:
    """Refuse frames the geometry does not describe (naming the field); returns the rocking steps not measured."""
    geo = from_dict(geometry)
    rows, cols = frame_shape
    want = tuple(geo.frame_shape)
    if (rows, cols) != want:
        if geometry["kind"] == "detector":
            r0, r1, c0, c1 = geometry["roi_px"]
            b = geometry["binning"]
            hint = ""
            if (rows, cols) == (r1 - r0, c1 - c0):
                hint = " (they are the ROI unbinned: binning 1, or bin them before import)"
            elif (rows, cols) == tuple(geometry["detector_shape_px"]):
                hint = " (they are the whole detector: roi_px the whole detector and binning 1, or crop them)"
            elif (rows, cols) == (want[1], want[0]):
                hint = " (rows and columns swapped: --transpose)"
            raise ImportInputError(
                f"{what}: frames are {rows}x{cols} pixels but the geometry's roi_px {[r0, r1, c0, c1]} "
                f"({r1 - r0}x{c1 - c0} pixels of detector_shape_px {list(geometry['detector_shape_px'])}) binned "
                f"by binning {b} makes {want[0]}x{want[1]}{hint}")
        hint = " (rows and columns swapped: --transpose)" if (rows, cols) == (want[1], want[0]) else ""
        raise ImportInputError(f"{what}: frames are {rows}x{cols} pixels but the geometry's shape_zyx "
                               f"{list(geometry['shape_zyx'])} makes {want[0]}x{want[1]} frames (rows along q_z, "
                               f"columns along q_y){hint}")
    steps = int(geo.num_rocking_steps)
    field_name = "num_rocking_steps" if geometry["kind"] == "detector" else "shape_zyx[2] (the rocking steps)"
    if num_frames > steps or (num_frames < steps and not allow_missing) or num_frames == 0:
        more = "" if num_frames >= steps else "; --allow-missing records the scan as incomplete"
        raise ImportInputError(f"{what}: {num_frames} frames but the geometry's {field_name} is {steps}{more}")
    return list(range(num_frames, steps))


def rocking_angles_deg(geometry: dict) -> np.ndarray:
    """The sample angle of every rocking step of the geometry (what the live frames carry as theta_deg)."""
    geo = from_dict(geometry)
    first, last = geo.rocking_range_deg()
    return np.linspace(first, last, int(geo.num_rocking_steps))


def read_column(path: Path, what: str) -> np.ndarray:
    """One number per frame from a text file (whitespace or comma separated, '#' comments) or an .npy file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            values = np.load(path, allow_pickle=False)
        else:
            text = path.read_text()
            values = np.array([float(v) for line in text.splitlines() for v in
                               line.split("#", 1)[0].replace(",", " ").split()], float)
    except (OSError, ValueError) as exc:
        raise ImportInputError(f"cannot read {what} file {path}: {exc}") from None
    values = np.asarray(values, float).ravel()
    if not np.isfinite(values).all():
        raise ImportInputError(f"{what} file {path} holds values that are not finite numbers")
    return values


# -- the import ----------------------------------------------------------------------------------
def import_scans(out: Path, scans: list[ScanImport], geometry: dict, *, run: str | None = None, force: bool = False,
                 orientation: Orientation = Orientation(), allow_missing: bool = False,
                 frame_time_s: float | None = None, start_time: float | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Write ``scans`` into a new recording ``out`` (run ``run``, default the file's stem); a summary back.

    Everything that can be checked without decoding every frame is checked before the first frame
    is written (a frame that does not decode is named when its turn comes). The recording goes to a
    hidden file beside ``out``, renamed onto it when complete, so a failed import leaves nothing, and an
    existing ``out`` (replaced only with ``force``) survives a failed one.
    """
    out = Path(out)
    run = run or out.stem
    plan = _plan(out, scans, geometry, force=force, orientation=orientation, allow_missing=allow_missing)
    total = sum(s.source.num_frames for s in scans)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.{os.getpid()}.importing")
    part.unlink(missing_ok=True)  # a stale one (or a link put there) is never appended to or followed
    t0, done, nbytes = time.monotonic(), 0, 0
    try:
        with RunRecorder(part, run) as recorder:
            for spec, (missing, theta, metadata) in zip(scans, plan):
                n, steps = spec.source.num_frames, n_steps(geometry)
                recorder.start_scan(spec.scan, steps, metadata)
                stamps = _timestamps(steps, frame_time_s, start_time)
                k = -1
                for k, frame in enumerate(spec.source.frames()):
                    if k >= n:
                        raise ImportInputError(f"{spec.source.path} grew while importing (more than {n} frames)")
                    frame = orientation.apply(frame) if orientation else frame
                    recorder.add_frame(spec.scan, k, float(theta[k]), float(stamps[k]), frame)
                    done, nbytes = done + 1, nbytes + frame.nbytes
                    if progress is not None:
                        progress(done, total, f"scan {spec.scan}")
                if k + 1 != n:
                    raise ImportInputError(f"{spec.source.path} gave {k + 1} frames, not the {n} it declared")
                recorder.end_scan(spec.scan, missing, "incomplete" if missing else "complete")
        os.replace(part, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    seconds = time.monotonic() - t0
    return {"out": str(out), "run": run, "frames": done, "seconds": seconds, "bytes": nbytes,
            "frames_per_s": done / seconds if seconds > 0 else math.inf,
            "scans": [{"scan": s.scan, "frames": s.source.num_frames, "missing": len(p[0]),
                       "source": s.source.describe()} for s, p in zip(scans, plan)]}


def n_steps(geometry: dict) -> int:
    return int(from_dict(geometry).num_rocking_steps)


def _plan(out: Path, scans: list[ScanImport], geometry: dict, *, force: bool, orientation: Orientation,
          allow_missing: bool) -> list[tuple[list[int], np.ndarray, dict]]:
    """Every check before anything is written: (missing steps, theta per step, metadata) for each scan."""
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ImportInputError(f"--out {out} must be an HDF5 file ({', '.join(OUTPUT_SUFFIXES)})")
    if out.is_dir():
        raise ImportInputError(f"--out {out} is a folder; give the recording's file name")
    if (out.exists() or out.is_symlink()) and not force:
        raise ImportInputError(f"{out} exists; it is not replaced without --force")
    if not scans:
        raise ImportInputError("no scans to import")
    target = out.resolve()
    numbers = [s.scan for s in scans]
    if len(set(numbers)) != len(numbers):
        raise ImportInputError(f"scan numbers repeat: {numbers}")
    first = None
    plan = []
    for spec in scans:
        src = spec.source
        src.check()
        inputs = getattr(src, "files", [src.path])
        if any(Path(p).resolve() == target for p in inputs):
            raise ImportInputError(f"--out {out} is one of the input files")
        what = f"scan {spec.scan} ({src.path})"
        if spec.scan < 0:
            raise ImportInputError(f"{what}: scan numbers must be >= 0, got {spec.scan}")
        if src.dtype.name not in FRAME_DTYPES:
            raise ImportInputError(f"{what}: frames are {src.dtype.name}; a recording holds detector counts as "
                                   f"{', '.join(FRAME_DTYPES)} (convert them without loss first)")
        shape = orientation.shape(src.frame_shape)
        if first is not None and (shape, src.dtype) != first[1:]:
            raise ImportInputError(f"{what}: frames are {shape[0]}x{shape[1]} {src.dtype.name} but scan "
                                   f"{first[0]}'s are {first[1][0]}x{first[1][1]} {first[2].name}: one recording "
                                   f"holds one frame shape and dtype")
        first = first or (spec.scan, shape, src.dtype)
        missing = check_fit(geometry, shape, src.num_frames, what, allow_missing=allow_missing)
        theta = rocking_angles_deg(geometry)
        metadata = {"geometry": geometry, "plan_name": "import", "imported": True, "source": src.describe(),
                    **spec.metadata}
        if spec.angles_deg is not None:
            theta = _checked_angles(spec.angles_deg, src.num_frames, geometry, what, theta)
            metadata["angles"] = "measured"
        for key in ("voltage_v", "capacity_mah_g"):
            value = getattr(spec, key)
            if value is not None:
                if not math.isfinite(value):
                    raise ImportInputError(f"{what}: {key} must be a finite number, got {value}")
                metadata[key] = float(value)
        monitor, monitor_source = (spec.monitor, spec.monitor_source) if spec.monitor is not None else \
            (src.monitor, src.monitor_source)
        if monitor is not None:
            monitor = np.asarray(monitor, float).ravel()
            if monitor.size != src.num_frames:
                raise ImportInputError(f"{what}: the I0 monitor ({monitor_source}) has {monitor.size} values for "
                                       f"{src.num_frames} frames")
            if not np.isfinite(monitor).all():
                raise ImportInputError(f"{what}: the I0 monitor ({monitor_source}) holds values that are not finite")
            metadata["monitor"] = monitor.tolist()
            metadata["monitor_source"] = monitor_source
        if orientation:
            metadata["frame_orientation"] = {"transpose": orientation.transpose, "flip_rows": orientation.flip_rows,
                                             "flip_cols": orientation.flip_cols}
        if missing:
            metadata["frames_missing_in_source"] = len(missing)
        plan.append((missing, theta, metadata))
    return plan


def _checked_angles(angles: np.ndarray, num_frames: int, geometry: dict, what: str, theta: np.ndarray) -> np.ndarray:
    """Measured angles per frame, refused when their step disagrees with the geometry's rocking step."""
    angles = np.asarray(angles, float).ravel()
    if angles.size != num_frames:
        raise ImportInputError(f"{what}: {angles.size} rocking angles for {num_frames} frames (--angles)")
    step = float(from_dict(geometry).rocking_step_deg)
    if angles.size >= 2:
        measured = float(np.median(np.diff(angles)))
        if not abs(measured - step) <= ANGLE_STEP_TOLERANCE * abs(step):
            raise ImportInputError(f"{what}: the angles given step by {measured:.6g} deg but the geometry's "
                                   f"rocking_step_deg is {step:.6g}")
    theta = theta.copy()
    theta[:num_frames] = angles
    return theta


def _timestamps(steps: int, frame_time_s: float | None, start_time: float | None) -> np.ndarray:
    """Acquisition time of each step when a frame time is known, NaN (unknown) otherwise."""
    if frame_time_s is None:
        return np.full(steps, math.nan)
    t0 = time.time() if start_time is None else start_time
    return t0 + frame_time_s * np.arange(steps)


# -- reading helpers -------------------------------------------------------------------------------
class _TiffLog(logging.Handler):
    """Collects what tifffile logs while it opens a file: it logs a broken page chain instead of raising."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _open_tiff(path: Path):
    import tifffile

    log = logging.getLogger("tifffile")
    handler = _TiffLog()
    log.addHandler(handler)
    propagate, log.propagate = log.propagate, False
    try:
        try:
            tif = tifffile.TiffFile(path)
            with tif:
                len(tif.pages)  # reads the whole page chain, so that a broken one shows now
                if handler.messages:
                    raise ImportInputError(f"{path} is a truncated or damaged TIFF: {handler.messages[0]}")
                log.removeHandler(handler)
                log.propagate = propagate
                yield tif
        except (tifffile.TiffFileError, OSError, EOFError, struct.error) as exc:
            raise ImportInputError(f"cannot read {path} as TIFF: {exc}") from None
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _page_shape(page, path: Path) -> tuple[int, int]:
    if len(page.shape) != 2:
        raise ImportInputError(f"{path}: a page is {page.shape}; frames must be 2D (one detector image a page)")
    return (int(page.shape[0]), int(page.shape[1]))


def _check_page(page, path: Path, index: int, file_size: int, src: FrameSource, where: str) -> None:
    """A page's header against the file's size and the frames' shape and dtype, without decoding it."""
    end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts)), default=0)
    if end > file_size:
        raise ImportInputError(f"{path} is truncated: frame {index} needs {end} bytes, the file has {file_size}")
    if tuple(page.shape) != src.frame_shape or _native(page.dtype) != src.dtype:
        raise ImportInputError(f"{where}: a frame of {tuple(page.shape)} {_native(page.dtype)} among "
                               f"{src.frame_shape} {src.dtype} frames")


def _read_page(page, path: Path, index: int, file_size: int) -> np.ndarray:
    end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts)), default=0)
    if end > file_size:
        raise ImportInputError(f"{path} is truncated: frame {index} needs {end} bytes, the file has {file_size}")
    try:
        return page.asarray()
    except Exception as exc:  # noqa: BLE001 - tifffile and its codecs (zlib.error, ...) raise many kinds
        raise ImportInputError(f"cannot read frame {index} of {path}: {exc}") from None


def _check_frame(frame: np.ndarray, src: FrameSource, where: str) -> np.ndarray:
    if frame.shape != src.frame_shape or _native(frame.dtype) != src.dtype:
        raise ImportInputError(f"{where}: a frame of {frame.shape} {frame.dtype} among {src.frame_shape} "
                               f"{src.dtype} frames")
    return frame if frame.dtype.isnative else frame.astype(src.dtype)


def _native(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if dtype.isnative else dtype.newbyteorder("=")


@contextlib.contextmanager
def _open_hdf5(path: Path):
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise ImportInputError(f"cannot read {path} as HDF5: {exc}") from None
    with f:
        yield f


def _find_frames(f: h5py.File, path: Path) -> str:
    """The frame dataset of a NeXus file: NXdetector 'data', else an NXdata signal; one, or an error."""
    detector, signal, any3d = {}, {}, {}
    for name, ds, parent in _datasets(f):
        if ds.ndim != 3:
            continue
        key = hash(ds.id)  # the same dataset under two names (a NeXus link) counts once, first name kept
        any3d.setdefault(key, name)
        leaf = name.rsplit("/", 1)[-1]
        if _attr(parent, "NX_class") == "NXdetector" and leaf == "data":
            detector.setdefault(key, name)
        elif _attr(parent, "NX_class") == "NXdata" and leaf == (_attr(parent, "signal") or "data"):
            signal.setdefault(key, name)
    for found in (detector, signal):
        if len(found) == 1:
            return next(iter(found.values()))
        if len(found) > 1:
            raise ImportInputError(f"{path} holds several frame datasets ({', '.join(sorted(found.values()))}): "
                                   f"choose one with --dataset")
    if len(any3d) == 1:
        return next(iter(any3d.values()))
    listed = ", ".join(sorted(any3d.values())) or "none"
    raise ImportInputError(f"{path}: no frame dataset found (an NXdetector 'data' or an NXdata signal); 3D "
                           f"datasets: {listed}; choose one with --dataset")


def _datasets(group: h5py.Group, prefix: str = "", seen: set | None = None) -> Iterator[tuple]:
    """(path, dataset, parent group) under every name, in name order; external links (other files) not followed."""
    seen = set() if seen is None else seen
    seen.add(hash(group.id))
    for name in sorted(group):
        if isinstance(group.get(name, getlink=True), h5py.ExternalLink):
            continue
        obj, path = group.get(name), f"{prefix}/{name}"
        if isinstance(obj, h5py.Dataset):
            yield path, obj, group
        elif isinstance(obj, h5py.Group) and hash(obj.id) not in seen:  # a linked group is walked once
            yield from _datasets(obj, path, seen)


def _find_monitor(f: h5py.File, path: Path, given: str | None, n: int) -> tuple[np.ndarray | None, str | None]:
    """I0 per frame: the dataset given, else the 'data' of the one NXmonitor group with one value a frame."""
    if given is not None:
        ds = f.get(given)
        if not isinstance(ds, h5py.Dataset):
            raise ImportInputError(f"{path} has no dataset {given!r} (--monitor-dataset)")
        return np.asarray(ds[()], float).ravel(), ds.name
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and _attr(obj, "NX_class") == "NXmonitor":
            data = obj.get("data")
            if isinstance(data, h5py.Dataset) and data.shape == (n,):
                found.append(data.name)

    f.visititems(visit)
    if len(set(found)) != 1:
        return None, None
    return np.asarray(f[found[0]][()], float), found[0]


def _attr(obj, name: str):
    value = obj.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else (str(value) if value is not None else None)
