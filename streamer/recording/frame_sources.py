"""Frame sources for ``bcdi-stream import``: a multi-page TIFF, a folder of TIFF frames, or a 3D dataset of an
HDF5/NeXus file, each read a frame at a time with its count, shape and dtype known (and checked) beforehand.
"""

from __future__ import annotations

import contextlib
import logging
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from streamer.recording.recorder import SCANS

TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
BLOCK_BYTES = 32 * 2**20  # frames of an HDF5 dataset are read this many bytes at a time (at least one chunk row)


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
            self.pixel_mask, self.pixel_mask_source = _find_pixel_mask(f, self.path, self.dataset, self.frame_shape)

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
        if self.pixel_mask_source:
            out["pixel_mask_dataset"] = self.pixel_mask_source
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


#: a detector mask's name beside its data, in any HDF5 file (NeXus NXdetector ``pixel_mask``, CXI ``mask``)
MASK_NAMES = ("pixel_mask", "mask")
#: where NeXus and CXI files (PyNX, silx) keep the detector's mask otherwise
MASK_PATHS = ("/entry/instrument/detector/pixel_mask", "/entry_1/instrument_1/detector_1/mask", "/entry_1/data_1/mask",
              "/entry/data/mask")


def stored_mask_name(f: h5py.File, data: str) -> str | None:
    """The dataset holding the detector mask stored with dataset ``data`` (nonzero: a gap, dead, hot or noisy pixel):
    one named in ``MASK_NAMES`` beside it, else one at ``MASK_PATHS``; None for none. Its shape is the caller's."""
    group = f[data].parent.name.rstrip("/")
    for name in (*(f"{group}/{n}" for n in MASK_NAMES), *MASK_PATHS):
        ds = f.get(name)
        if isinstance(ds, h5py.Dataset) and ds.name != f[data].name:
            return ds.name
    return None


def _find_pixel_mask(f: h5py.File, path: Path, frames: str, frame_shape: tuple[int, int]):
    """(bad, its dataset): the detector's pixel mask kept beside the frames (``stored_mask_name``); (None, why) for
    a mask not of the frames' shape; (None, None) for none."""
    name = stored_mask_name(f, frames)
    if name is None:
        return None, None
    mask = np.asarray(f[name][()])
    if mask.ndim == 3 and mask.shape[0] == 1:  # one mask for every frame, stored as a stack of one
        mask = mask[0]
    if mask.shape != tuple(frame_shape):  # not a detector's pixel mask of these frames: said, not used
        return None, f"{name} of {path} (not used: it is {mask.shape}, the frames {tuple(frame_shape)})"
    return mask != 0, name


def _attr(obj, name: str):
    value = obj.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else (str(value) if value is not None else None)
