"""The result file of one reconstruction (``bcdi-stream reconstruct --out RESULT.h5``); see docs/results.md.

Layout (HDF5)::

    /result/object            complex64 (z, y, x)  averaged object, lab order, z along q
    /result/support           bool      (z, y, x)
    /result/amplitude_error   float32   (z, y, x)  spread of the averaged members (std), 0 if one member
    /result/phase_error       float32   (z, y, x)  radians
    /result/error_curve       float32   (n_iterations,) error of the best member per iteration
    /result/members           complex64 (K, z, y, x)  optional: aligned members that were averaged
    /result/replicas          complex64 (R, z, y, x)  optional: the object's noise replicas (the energy's error)
    /result attrs             recipe (str), schema (int), and the JSON strings peak, metadata, phasing;
                               frame (str) and voxel_nm (float) when the metadata says them
                               metadata holds geometry (dict: the object's grid), run, scan, voltage_v,
                               capacity_mah_g, ...; a detector-geometry scan's also frame (dict, "lab"),
                               detector_geometry (the binned frames' DetectorGeometry) and voxel_nm_zyx
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from streamer.recording.room import check_room

SCHEMA = 1
_ARRAYS = ("object", "support", "amplitude_error", "phase_error", "error_curve", "members", "replicas")


def write_result(path: str | Path, *, obj: np.ndarray, support: np.ndarray, recipe: str, metadata: dict,
                 peak: dict | None = None, phasing: dict | None = None, amplitude_error: np.ndarray | None = None,
                 phase_error: np.ndarray | None = None, error_curve: np.ndarray | None = None,
                 members: np.ndarray | None = None, compress: bool = True,
                 replicas: np.ndarray | None = None) -> Path:
    """Write one reconstruction; missing error bars are stored as zeros (one member, no spread).

    ``compress=False`` stores the float and complex arrays as they are: a reconstruction's noise leaves gzip
    little to take (433 -> 368 MB at 256x256x200 with two members) for seconds of CPU (1.4 s -> 12 s on 2 cores),
    which a user waiting for ``reconstruct`` should not pay; the support is compressed either way."""
    obj = np.asarray(obj)
    if obj.ndim != 3:
        raise ValueError(f"the object must be 3D, got shape {obj.shape}")
    if np.shape(support) != obj.shape:
        raise ValueError(f"support {np.shape(support)} and object {obj.shape} differ in shape")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    zeros = np.zeros(obj.shape, np.float32)
    arrays = {
        "object": obj.astype(np.complex64),
        "support": np.asarray(support, bool),
        "amplitude_error": zeros if amplitude_error is None else np.asarray(amplitude_error, np.float32),
        "phase_error": zeros if phase_error is None else np.asarray(phase_error, np.float32),
        "error_curve": np.zeros(0, np.float32) if error_curve is None else np.asarray(error_curve, np.float32),
    }
    for name, extra in (("members", members), ("replicas", replicas)):
        if extra is not None:
            arrays[name] = np.asarray(extra, np.complex64)
    check_room(path.parent, sum(a.nbytes for a in arrays.values()))
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        g = f.create_group("result")
        for name, arr in arrays.items():
            if arr.ndim >= 3 and arr.dtype != bool and not arr.any():  # error bars of one member: nothing to store
                g.create_dataset(name, shape=arr.shape, dtype=arr.dtype, fillvalue=0)  # reads back as zeros
                continue
            squeeze = arr.ndim >= 3 and (compress or arr.dtype == bool)
            g.create_dataset(name, data=arr, compression="gzip" if squeeze else None)
        g.attrs["schema"] = SCHEMA
        g.attrs["recipe"] = recipe
        g.attrs["metadata"] = json.dumps(metadata, default=_jsonable)
        g.attrs["peak"] = json.dumps(peak or {}, default=_jsonable)
        g.attrs["phasing"] = json.dumps(phasing or {}, default=_jsonable)
        frame = metadata.get("frame")
        if isinstance(frame, dict) and "name" in frame:  # readable without parsing JSON (h5ls, h5py)
            g.attrs["frame"] = str(frame["name"])
            g.attrs["voxel_nm"] = float(frame.get("voxel_nm", np.nan))
    tmp.replace(path)  # a reader never sees half a result
    return path


def read_result(path: str | Path) -> dict:
    """Everything ``write_result`` stored, as numpy arrays and dicts; ValueError if not a result file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"result file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "result" not in f or "object" not in f["result"]:
                raise ValueError(f"{path} is not a bcdi-stream result file (no /result/object)")
            g = f["result"]
            out = {name: g[name][()] for name in _ARRAYS if name in g}
            out["recipe"] = str(g.attrs.get("recipe", ""))
            for key in ("metadata", "peak", "phasing"):
                out[key] = json.loads(g.attrs.get(key, "{}"))
            out["schema"] = int(g.attrs.get("schema", 0))
            if "frame" in g.attrs:
                out["frame"] = str(g.attrs["frame"])
    except OSError as exc:
        raise ValueError(f"cannot read result file {path}: {exc}") from None
    out.setdefault("members", None)
    out.setdefault("replicas", None)
    return out


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
