"""Import: scans measured elsewhere (TIFF frames, an HDF5/NeXus frame dataset) and their geometry into a recording.

The result is a recording in the live format (docs/recording.md), so ``replay``, ``serve`` and
``reconstruct`` take an imported scan as any recorded one. Every input is checked before anything
is written (the geometry against the frames, dtypes, counts, file headers and sizes); frames are
then streamed a block at a time with their dtype kept, into a hidden file beside the output that
is renamed when complete. Only the caller chooses where anything is written. The frames are read
by ``streamer.recording.frame_sources``. docs/import.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamer.geometry import from_dict
from streamer.messaging.wire import FRAME_DTYPES
from streamer.recording.frame_sources import FrameSource, ImportInputError
from streamer.recording.process import RecorderProcess, RemoteRecorder
from streamer.recording.thread import FRAME_BATCH
from streamer.settings import ConfigError

OUTPUT_SUFFIXES = (".h5", ".hdf5", ".nxs")
ANGLE_STEP_TOLERANCE = 0.1  # measured angles may step up to 10% off the geometry's rocking_step_deg


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
    (bad, unused), mask_file = _pixel_mask(scans, orientation, geometry), pixel_mask_file(out)
    mask_part = part.with_suffix(".npy")
    t0, done, nbytes = time.monotonic(), 0, 0
    try:
        detector = None if bad is None else {"bad_pixel_map_file": str(mask_file)}
        with RecorderProcess(detector) as process:  # HDF5 crashed the process whose write failed: not this one
            recorder = RemoteRecorder(process, part, run)
            try:
                for spec, (missing, theta, metadata) in zip(scans, plan):
                    n, steps = spec.source.num_frames, n_steps(geometry)
                    recorder.start_scan(spec.scan, steps, metadata)
                    stamps = _timestamps(steps, frame_time_s, start_time)
                    k, batch = -1, []
                    for k, frame in enumerate(spec.source.frames()):
                        if k >= n:
                            raise ImportInputError(f"{spec.source.path} grew while importing (more than {n} frames)")
                        frame = orientation.apply(frame) if orientation else frame
                        batch.append((spec.scan, k, float(theta[k]), float(stamps[k]), frame))
                        if len(batch) == FRAME_BATCH:
                            _write_frames(recorder, batch)
                        done, nbytes = done + 1, nbytes + frame.nbytes
                        if progress is not None:
                            progress(done, total, f"scan {spec.scan}")
                    _write_frames(recorder, batch)
                    if k + 1 != n:
                        raise ImportInputError(f"{spec.source.path} gave {k + 1} frames, not the {n} it declared")
                    recorder.end_scan(spec.scan, missing, "incomplete" if missing else "complete")
                recorder.close()
            except BaseException:
                with contextlib.suppress(Exception):  # the hidden file is removed below, never closed by HDF5
                    recorder.abandon()
                raise
        if bad is not None:
            with open(mask_part, "wb") as fh:
                np.save(fh, bad)
            os.replace(mask_part, mask_file)
        os.replace(part, out)
    finally:
        for left in (part, mask_part):
            with contextlib.suppress(FileNotFoundError):
                left.unlink()
    seconds = time.monotonic() - t0
    return {"out": str(out), "run": run, "frames": done, "seconds": seconds, "bytes": nbytes,
            "frames_per_s": done / seconds if seconds > 0 else math.inf,
            "scans": [{"scan": s.scan, "frames": s.source.num_frames, "missing": len(p[0]),
                       "source": s.source.describe()} for s, p in zip(scans, plan)],
            **({} if bad is None else {"pixel_mask": {"file": str(mask_file), "bad_pixels": int(bad.sum())}}),
            **({"pixel_masks_not_used": unused} if unused else {})}


def pixel_mask_file(out: Path) -> Path:
    """Where an import keeps the pixel mask of its inputs: beside the recording, named after it."""
    return Path(out).resolve().with_name(f"{Path(out).stem}-pixel-mask.npy")


def _pixel_mask(scans: list[ScanImport], orientation: Orientation, geometry: dict) -> tuple[np.ndarray | None, list]:
    """(bad, not used): the union of the pixel masks the inputs keep beside their frames, oriented as the frames and
    placed on the whole detector (``detector_shape_px``, a frame pixel covering its ``binning`` x ``binning`` raw
    pixels of the ROI), as the ``[detector]`` table's bad-pixel map (None if no input keeps one); and the masks
    found but not used, each with why (another shape; an orthogonal geometry, whose scans read no bad-pixel map)."""
    sources = [s.source for s in scans]
    unused = [src.pixel_mask_source for src in sources
              if getattr(src, "pixel_mask", None) is None and getattr(src, "pixel_mask_source", None)]
    masks = [(src, src.pixel_mask) for src in sources if getattr(src, "pixel_mask", None) is not None]
    if masks and geometry["kind"] != "detector":
        return None, unused + [f"{src.pixel_mask_source} of {src.path} (not used: an orthogonal geometry reads no "
                               "bad-pixel map; mask the frames before import)" for src, _ in masks]
    if not masks:
        return None, unused
    bad = np.logical_or.reduce([orientation.apply(m) if orientation else m for _, m in masks])
    g = from_dict(geometry)
    r0, r1, c0, c1 = g.roi_px
    raw = np.zeros(tuple(g.detector_shape_px), bool)
    raw[r0:r1, c0:c1] = np.repeat(np.repeat(bad, g.binning, axis=0), g.binning, axis=1)[: r1 - r0, : c1 - c0]
    return raw, unused


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


def _write_frames(recorder: RemoteRecorder, batch: list[tuple]) -> None:
    """Write ``batch`` (``add_frame`` argument tuples) and empty it; the first frame's failure is raised."""
    if not batch:
        return
    outcomes = recorder.add_frames(batch)
    failure = next((o for o in outcomes if o is not None), None)
    if failure is None and len(outcomes) < len(batch):
        failure = OSError(f"frame {batch[len(outcomes)][1]} of scan {batch[0][0]} was not written")
    batch.clear()
    if failure is not None:
        raise failure


def _timestamps(steps: int, frame_time_s: float | None, start_time: float | None) -> np.ndarray:
    """Acquisition time of each step when a frame time is known, NaN (unknown) otherwise."""
    if frame_time_s is None:
        return np.full(steps, math.nan)
    t0 = time.time() if start_time is None else start_time
    return t0 + frame_time_s * np.arange(steps)
