"""A result file (docs/results.md) in the formats the tools of BCDI users read (docs/exports.md).

- ``cxi``: the CXI layout PyNX writes for a reconstruction (``/entry_1/image_1/data`` the complex object,
  ``mask`` its support, ``image_size`` in m, ``/entry_1/data_1`` an NXdata silx shows), plus the displacement
  and strain as ``image_2`` and ``image_3``. The object keeps our phase convention, rho = |rho| exp(-i G.u),
  which is PyNX's (numpy's forward FFT): bcdi reads it with ``invert_phase = True``, as it reads PyNX's.
- ``vti``: VTK XML image data (ParaView, VisIt, pyvista) on the lab grid, x fastest: point arrays
  ``amplitude``, ``phase`` (the displacement phase G.u, unwrapped, rad), ``displacement`` (nm), ``strain``
  (along q) and ``support``; spacing the voxel (nm), origin such that the grid centre is at 0.
- ``npz``: the same arrays in lab order (z, y, x) with ``object``, ``voxel_nm`` and the metadata as JSON;
  napari opens each with ``np.load`` (``scale=[voxel_nm] * 3``).

Phase, displacement and strain are 0 where they are not defined (outside the particle; the strain outside its
reliable interior): ``support`` and ``strain_defined`` say where they are. Every file is written to a
temporary name and renamed: a reader never sees half of one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import h5py
import numpy as np

from streamer.recording.room import check_room

FORMATS = ("cxi", "vti", "npz")
SUFFIX = {"cxi": ".cxi", "vti": ".vti", "npz": ".npz"}


def exported_fields(result: dict) -> dict:
    """The arrays an export holds, from a result (``read_result``): in the lab frame (a result still on its
    detector grid is resampled first), lab order (z, y, x), with the analysis' one definition of the particle,
    displacement and strain."""
    from streamer.analysis.displacement import displacement_field
    from streamer.analysis.objects import fields_of
    from streamer.analysis.offline import in_lab_frame, result_geometry

    result = in_lab_frame(result)
    geometry = result_geometry(result)
    rho = np.asarray(result["object"])
    particle = fields_of(rho, geometry)
    d = displacement_field(particle, q_inv_nm=geometry.q_bragg_inv_nm)
    defined = np.isfinite(d.strain)
    return {
        "object": rho.astype(np.complex64),
        "amplitude": particle.amplitude.astype(np.float32),
        "phase": np.nan_to_num(d.phase_rad).astype(np.float32),
        "displacement": np.nan_to_num(d.displacement_nm).astype(np.float32),
        "strain": np.nan_to_num(d.strain).astype(np.float32),
        "support": particle.support.astype(np.uint8),
        "strain_defined": defined.astype(np.uint8),
        "voxel_nm": float(geometry.voxel_nm),
        "q_inv_nm": float(geometry.q_bragg_inv_nm),
        "wavelength_nm": 2 * geometry.d_spacing_nm * math.sin(math.radians(geometry.theta_bragg_deg)),
        "metadata": result.get("metadata") or {},
        "recipe": result.get("recipe", ""),
        "phasing": result.get("phasing") or {},
    }


def export_result(source: str | Path, out: str | Path | None = None, *, fmt: str) -> Path:
    """Write the result file ``source`` as ``fmt`` (one of ``FORMATS``) to ``out`` (default: beside it, with
    the format's suffix); returns the path written."""
    from streamer.recording.result_file import read_result

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    source = Path(source)
    out = Path(out) if out is not None else source.with_suffix(SUFFIX[fmt])
    if out.resolve() == source.resolve():
        raise ValueError(f"{out} is the result file itself: choose another output name")
    fields = exported_fields(read_result(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    {"cxi": write_cxi, "vti": write_vti, "npz": write_npz}[fmt](tmp, fields, source=source)
    tmp.replace(out)
    return out


def write_npz(path: Path, fields: dict, *, source: Path | None = None) -> None:
    """The arrays (z, y, x), the voxel and the metadata (JSON) in one .npz."""
    names = ("object", "amplitude", "phase", "displacement", "strain", "support", "strain_defined")
    with open(path, "wb") as f:  # np.savez would add ".npz" to a name without it
        np.savez_compressed(f, **{n: fields[n] for n in names}, voxel_nm=np.float64(fields["voxel_nm"]),
                            q_inv_nm=np.float64(fields["q_inv_nm"]),
                            metadata=np.array(json.dumps({**fields["metadata"], "source": str(source or "")},
                                                         default=str)))


_VTK_TYPES = {np.dtype(np.float32): "Float32", np.dtype(np.uint8): "UInt8"}


def write_vti(path: Path, fields: dict, *, source: Path | None = None) -> None:
    """VTK XML image data, its arrays appended raw (each after its UInt64 byte count), x the fastest axis."""
    nz, ny, nx = fields["amplitude"].shape
    v = fields["voxel_nm"]
    origin = [-(n // 2) * v for n in (nx, ny, nz)]  # the grid centre (index n // 2) at 0, as in the events
    names = ("amplitude", "phase", "displacement", "strain", "support", "strain_defined")
    blocks, arrays, offset = [], [], 0
    for name in names:
        data = np.ascontiguousarray(fields[name]).astype(fields[name].dtype.newbyteorder("<"), copy=False)
        raw = data.tobytes()  # C order of (z, y, x): x fastest, as VTK stores points
        arrays.append(f'        <DataArray type="{_VTK_TYPES[data.dtype.newbyteorder("=")]}" Name="{name}" '
                      f'NumberOfComponents="1" format="appended" offset="{offset}"/>')
        blocks += [np.uint64(len(raw)).astype("<u8").tobytes(), raw]
        offset += 8 + len(raw)
    extent = f"0 {nx - 1} 0 {ny - 1} 0 {nz - 1}"
    note = json.dumps({"source": str(source or ""), "units": "nm", "axes": "x y z = lab x, y, z (z along q)"})
    header = "\n".join([
        '<?xml version="1.0"?>',
        f"<!-- bcdi-stream export: {note.replace('--', '- -')} -->",
        '<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" header_type="UInt64">',
        (f'  <ImageData WholeExtent="{extent}" Origin="{origin[0]} {origin[1]} {origin[2]}" '
         f'Spacing="{v} {v} {v}" Direction="1 0 0 0 1 0 0 0 1">'),
        f'    <Piece Extent="{extent}">',
        '      <PointData Scalars="amplitude">', *arrays, "      </PointData>",
        "      <CellData/>", "    </Piece>", "  </ImageData>",
        '  <AppendedData encoding="raw">', "   _"])
    with open(path, "wb") as f:
        f.write(header.encode())
        f.writelines(blocks)
        f.write(b"\n  </AppendedData>\n</VTKFile>\n")


def write_cxi(path: Path, fields: dict, *, source: Path | None = None) -> None:
    """The CXI layout of a PyNX reconstruction (cxi_version 150), with the displacement and strain beside it."""
    meta = fields["metadata"]
    obj, support = fields["object"], fields["support"].astype(bool)
    voxel_m = fields["voxel_nm"] * 1e-9
    check_room(Path(path).resolve().parent, 4 * obj.nbytes)  # object, amplitude, phase, displacement, strain
    with h5py.File(path, "w") as f:
        f.attrs["creator"] = "bcdi-stream"
        f.attrs["HDF5_Version"] = h5py.version.hdf5_version
        f.attrs["h5py_version"] = h5py.version.version
        f.attrs["default"] = "entry_1"
        f.create_dataset("cxi_version", data=150)
        entry = f.create_group("entry_1")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data_1"
        f["entry_last"] = h5py.SoftLink("/entry_1")
        entry.create_dataset("program_name", data="bcdi-stream")
        entry.create_dataset("start_time", data=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if meta.get("run") is not None:
            entry.create_dataset("experiment_id", data=f"run {meta.get('run')}, scan {meta.get('scan', '?')}")
        sample = entry.create_group("sample_1")
        sample.attrs["NX_class"] = "NXsample"
        sample.create_dataset("name", data=str(meta.get("sample", "")))

        image = entry.create_group("image_1")
        image.attrs["NX_class"] = "NXdata"
        image.attrs["signal"] = "data"
        image.attrs["interpretation"] = "scaler"  # what PyNX writes for a 3D object
        image.create_dataset("data", data=obj, chunks=True, shuffle=True, compression="gzip")
        image.create_dataset("mask", data=support, chunks=True, shuffle=True, compression="gzip")
        image["support"] = h5py.SoftLink("/entry_1/image_1/mask")
        image.create_dataset("data_type", data="electron density")
        image.create_dataset("data_space", data="real")
        image.create_dataset("image_size", data=voxel_m * np.array(obj.shape, float))
        instrument = image.create_group("instrument_1")
        instrument.attrs["NX_class"] = "NXinstrument"
        wavelength_m = fields["wavelength_nm"] * 1e-9
        if math.isfinite(wavelength_m) and wavelength_m > 0:
            energy_j = 6.62607015e-34 * 299792458.0 / wavelength_m
            src = instrument.create_group("source_1")
            src.attrs["NX_class"] = "NXsource"
            src.attrs["note"] = "Incident photon energy (instead of source energy), for CXI compatibility"
            src.create_dataset("energy", data=energy_j).attrs["units"] = "J"
            beam = instrument.create_group("beam_1")
            beam.attrs["NX_class"] = "NXbeam"
            beam.create_dataset("incident_energy", data=energy_j).attrs["units"] = "J"
            beam.create_dataset("incident_wavelength", data=wavelength_m).attrs["units"] = "m"
        process = image.create_group("process_1")
        process.attrs["NX_class"] = "NXprocess"
        process.create_dataset("program", data="bcdi-stream")
        process.create_dataset("command", data=f"bcdi-stream export {source or ''} --format cxi")
        process.create_dataset("note", data=("rho = |rho| exp(-i G.u) (numpy's forward FFT, as PyNX); "
                                             "lab axes (z, y, x), z along q; voxel "
                                             f"{fields['voxel_nm']} nm"))
        config = process.create_group("configuration")
        config.attrs["NX_class"] = "NXcollection"
        config.create_dataset("recipe", data=str(fields["recipe"]))
        config.create_dataset("metadata_json", data=json.dumps(meta, default=str))
        config.create_dataset("phasing_json", data=json.dumps(fields["phasing"], default=str))

        for k, (name, unit) in enumerate((("displacement", "nm"), ("strain", "")), start=2):
            extra = entry.create_group(f"image_{k}")
            extra.attrs["NX_class"] = "NXdata"
            extra.attrs["signal"] = "data"
            extra.attrs["interpretation"] = "scaler"
            extra.create_dataset("data", data=fields[name], chunks=True, shuffle=True, compression="gzip")
            extra["data"].attrs["long_name"] = f"{name} along q" + (f" ({unit})" if unit else "")
            extra.create_dataset("data_type", data=name)
            extra.create_dataset("data_space", data="real")
            extra.create_dataset("image_size", data=voxel_m * np.array(obj.shape, float))

        data = entry.create_group("data_1")  # the shortcut silx and PyNX's readers open first
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        data.attrs["interpretation"] = "scaler"
        data["data"] = h5py.SoftLink("/entry_1/image_1/data")
