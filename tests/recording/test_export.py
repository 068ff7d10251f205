"""Exports of a result file (streamer/recording/export.py), read back as their users' tools read them: the .vti
with the vtk package (as ParaView does), the CXI with silx (as its viewer and PyNX's users do), the .npz with numpy."""

import json

import numpy as np
import pytest

from streamer.geometry import OrthogonalGeometry
from streamer.recording.export import export_result, exported_fields
from streamer.recording.result_file import read_result, write_result

GEO = OrthogonalGeometry(shape_zyx=(24, 32, 40), voxel_nm=12.0)
EPS = 4e-4


@pytest.fixture(scope="module")
def result_path(tmp_path_factory):
    """A plate (10 x 20 x 28 voxels) whose right half is expanded by EPS along q, written as reconstruct writes."""
    z, y, x = np.ogrid[0:24, 0:32, 0:40]
    amp = ((np.abs(z - 12) <= 5) & (np.abs(y - 16) <= 10) & (np.abs(x - 20) <= 14)).astype(float)
    phase = GEO.q_bragg_inv_nm * GEO.voxel_nm * EPS * (z - 12.0) * (x >= 20)  # phi = G.u, u = eps z
    rho = amp * np.exp(-1j * phase)  # rho = |rho| exp(-i G.u) (docs/conventions.md)
    path = tmp_path_factory.mktemp("result") / "scan-0003.h5"
    write_result(path, obj=rho, support=amp > 0, recipe="5ER",
                 metadata={"run": "r", "scan": 3, "voltage_v": 3.7, "geometry": GEO.to_dict()})
    return path


def test_the_exported_fields_are_the_analysis_own(result_path):
    f = exported_fields(read_result(result_path))
    assert f["amplitude"].shape == GEO.shape_zyx and f["voxel_nm"] == 12.0
    right = (f["strain_defined"] == 1) & (np.arange(40) >= 23)[None, None, :]
    left = (f["strain_defined"] == 1) & (np.arange(40) <= 16)[None, None, :]
    assert f["strain"][right].mean() - f["strain"][left].mean() == pytest.approx(EPS, rel=1e-3, abs=0)
    assert (f["strain"][f["strain_defined"] == 0] == 0).all() and (f["phase"][f["support"] == 0] == 0).all()


def test_a_vti_opens_with_vtk_with_its_arrays_spacing_and_origin(result_path, tmp_path):
    import vtk  # the test extra's: a missing install fails here rather than skipping
    from vtk.util.numpy_support import vtk_to_numpy

    out = export_result(result_path, tmp_path / "scan3.vti", fmt="vti")
    reader = vtk.vtkXMLImageDataReader()
    reader.SetFileName(str(out))
    reader.Update()
    image = reader.GetOutput()
    assert image.GetDimensions() == (40, 32, 24)  # x, y, z
    assert image.GetSpacing() == pytest.approx((12.0, 12.0, 12.0))
    assert image.GetOrigin() == pytest.approx((-20 * 12.0, -16 * 12.0, -12 * 12.0))  # the grid centre at 0
    want = exported_fields(read_result(result_path))
    data = image.GetPointData()
    names = sorted(data.GetArrayName(i) for i in range(data.GetNumberOfArrays()))
    assert names == ["amplitude", "displacement", "phase", "strain", "strain_defined", "support"]
    for name in names:
        got = vtk_to_numpy(data.GetArray(name)).reshape(24, 32, 40)  # x fastest: (z, y, x) in C order
        np.testing.assert_array_equal(got, want[name])
    # a voxel read the way ParaView probes it: by its position in nm
    point = image.FindPoint(5 * 12.0, 0.0, 2 * 12.0)  # x = 60 nm, y = 0, z = 24 nm
    assert vtk_to_numpy(data.GetArray("strain"))[point] == pytest.approx(want["strain"][12 + 2, 16, 20 + 5], rel=1e-6, abs=0)


def test_a_cxi_reads_with_silx_as_a_pynx_reconstruction(result_path, tmp_path):
    import silx.io
    from silx.io import nxdata

    out = export_result(result_path, tmp_path / "scan3.cxi", fmt="cxi")
    want = exported_fields(read_result(result_path))
    with silx.io.open(str(out)) as f:
        assert f["cxi_version"][()] == 150
        obj = f["entry_1/image_1/data"][()]
        assert obj.dtype == np.complex64 and obj.shape == GEO.shape_zyx
        np.testing.assert_array_equal(obj, read_result(result_path)["object"])
        np.testing.assert_array_equal(f["entry_1/image_1/mask"][()], want["support"].astype(bool))
        np.testing.assert_array_equal(f["entry_1/image_1/support"][()], want["support"].astype(bool))
        assert f["entry_1/image_1/image_size"][()] == pytest.approx(np.array(GEO.shape_zyx) * 12e-9, rel=1e-9, abs=0)
        assert f["entry_1/image_1/data_space"][()] in (b"real", "real")
        default = nxdata.get_default(f)  # what silx's viewer opens first: the object
        assert default is not None and default.signal.shape == GEO.shape_zyx
        np.testing.assert_array_equal(f["entry_1/image_3/data"][()], want["strain"])
        assert nxdata.is_valid_nxdata(f["entry_1/image_2"])
        meta = json.loads(f["entry_1/image_1/process_1/configuration/metadata_json"][()])
        assert meta["scan"] == 3
        energy = f["entry_1/image_1/instrument_1/beam_1/incident_energy"][()]
        wavelength_nm = 2 * GEO.d_spacing_nm * np.sin(np.radians(GEO.theta_bragg_deg))  # Bragg's law of the grid
        assert energy == pytest.approx(1239.842 / wavelength_nm * 1.602176634e-19, rel=1e-5, abs=0)  # hc / lambda, J


def test_an_npz_holds_the_arrays_in_lab_order_and_the_metadata(result_path, tmp_path):
    out = export_result(result_path, None, fmt="npz")
    assert out == result_path.with_suffix(".npz")
    with np.load(out) as z:
        assert z["amplitude"].shape == GEO.shape_zyx and float(z["voxel_nm"]) == 12.0
        np.testing.assert_array_equal(z["object"], read_result(result_path)["object"])
        assert json.loads(str(z["metadata"]))["run"] == "r"
    out.unlink()


def test_bad_requests_are_refused(result_path, tmp_path):
    with pytest.raises(ValueError, match="format must be one of cxi, vti, npz"):
        export_result(result_path, tmp_path / "x.vtk", fmt="vtk")
    with pytest.raises(ValueError, match="the result file itself"):
        export_result(result_path, result_path, fmt="cxi")
    with pytest.raises(ValueError, match="does not exist"):
        export_result(tmp_path / "none.h5", tmp_path / "x.cxi", fmt="cxi")
    assert not list(tmp_path.glob("*.partial"))
