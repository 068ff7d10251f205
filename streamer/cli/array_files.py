"""An intensity array and the mask stored with it, read from .npy, .npz (bcdi's ``data`` + ``mask``) or HDF5,
CXI and NeXus files (docs/results.md), for ``reconstruct``.

A CXI or NeXus file keeps its detector's mask beside the data (nonzero = a pixel not to trust): it is read with
the data, so that gaps and bad pixels are not taken for measured zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.recording.frame_sources import MASK_NAMES, stored_mask_name

#: where CXI (PyNX, silx) and NeXus files keep the measured data, looked for first
DATA_PATHS = ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data", "entry/data/data",
              "entry/instrument/detector/data")


@dataclass(frozen=True)
class ArrayFile:
    """An array read from a file, with the mask stored beside it (None: none) and where each came from."""

    data: np.ndarray
    mask: np.ndarray | None
    source: str  # "path" or "path:dataset"
    mask_source: str | None = None


def read_array(path: Path, dataset: str | None = None) -> ArrayFile:
    """The array of ``path`` (``dataset``: its name in an .npz or path in an HDF5 file; default: the file's data)
    with the mask stored beside it; ValueError naming the file when it cannot be read."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return ArrayFile(np.load(path, allow_pickle=False), None, str(path))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = dataset or next((k for k in ("intensity", "data") if k in z.files), z.files[0])
                if key not in z.files:
                    raise ValueError(f"{path} has no array {key!r} (it has {z.files})")
                has_mask = "mask" in z.files and key != "mask"
                return ArrayFile(z[key], z["mask"].astype(bool) if has_mask else None, f"{path}:{key}",
                                 f"{path}:mask" if has_mask else None)
        if suffix in (".h5", ".hdf5", ".nxs", ".cxi"):
            return _read_hdf5(path, dataset)
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    raise ValueError(f"unsupported input {path}: use a recording .h5 with --scan, or .npy, .npz, .h5, .cxi, .nxs")


def _read_hdf5(path: Path, dataset: str | None) -> ArrayFile:
    import h5py

    with h5py.File(path, "r") as f:
        if dataset is None:
            dataset = next((p for p in DATA_PATHS if _is_3d(f.get(p))), None)
        if dataset is None:
            found = []
            f.visititems(lambda name, obj: found.append(name) if _is_3d(obj) else None)
            if not found:
                raise ValueError(f"{path} holds no 3D dataset")
            # the first 3D dataset that is not a mask (a mask file given as --mask is its own mask)
            dataset = next((n for n in found if n.rsplit("/", 1)[-1] not in MASK_NAMES), found[0])
        if dataset not in f:
            raise ValueError(f"{path} has no dataset {dataset!r}")
        data = f[dataset][()]
        name = stored_mask_name(f, dataset)
        if name is None:
            return ArrayFile(data, None, f"{path}:{dataset}")
        mask = np.asarray(f[name][()])
        name = name.lstrip("/")  # named as the data are, relative to the file's root
    if mask.shape != data.shape and mask.shape != data.shape[1:]:
        raise ValueError(f"{path}: the mask {name} has shape {mask.shape}, the data {dataset} {data.shape} "
                         "(give --mask to replace it)")
    return ArrayFile(data, mask != 0, f"{path}:{dataset}", f"{path}:{name}")


def _is_3d(obj) -> bool:
    import h5py

    return isinstance(obj, h5py.Dataset) and obj.ndim == 3
