"""The live page's views of a scan: central slices cut from the particle's one set of fields, the projected peak."""

import numpy as np
import pytest

from streamer.analysis.displacement import particle_fields
from streamer.analysis.views import central_slices, projected_peak, scene_3d


def _fields(rho):
    return particle_fields(rho, voxel_nm=10.0, q_inv_nm=1.0, threshold=0.2, erosion=1)


def _vortex_particle(n=24, radius=8):
    """A sphere with a screw-like phase winding about the z axis through its centre."""
    z, y, x = np.mgrid[:n, :n, :n] - n // 2
    amp = (z**2 + y**2 + x**2 <= radius**2).astype(float)
    return amp * np.exp(1j * np.arctan2(y + 0.5, x + 0.5))


def test_central_slices_cut_through_the_particle_and_crop_to_it():
    rho = np.roll(_vortex_particle(n=32), 3, axis=2)  # particle centre off the grid centre, at x = 19
    view = central_slices(_fields(rho))
    assert view["centre"] == [16, 16, 19]
    lo, shape = view["origin"], view["shape"]
    for axis, c in enumerate(view["centre"]):  # the particle (radius 8) plus a 3-voxel margin, not the grid
        assert lo[axis] <= c - 8 - 3 and lo[axis] + shape[axis] >= c + 8 + 4 and shape[axis] <= 8 * 2 + 1 + 2 * 4
    yx, zx, zy = (view["amplitude"][p] for p in ("yx", "zx", "zy"))
    assert yx.shape == (shape[1], shape[2]) and zx.shape == (shape[0], shape[2]) and zy.shape == (shape[0], shape[1])
    assert yx.dtype == np.float32 and yx.max() == pytest.approx(1.0)
    phase = view["phase"]["yx"]
    assert np.isnan(phase[0, 0]) and np.isfinite(phase[shape[1] // 2, 2 + 3])  # NaN outside only
    assert np.nanmax(phase) - np.nanmin(phase) > 5  # the winding spans the full circle in the yx plane
    strain = view["strain"]["zx"]
    assert np.nanmax(np.abs(strain)) < 1e-6  # the winding is about z: no phase change along z


def test_error_bars_are_sliced_like_the_object():
    rho = _vortex_particle(n=32)
    spread = np.abs(rho) * 0.1
    view = central_slices(_fields(rho),
                          errors={"amplitude_error": spread, "phase_error": np.full(rho.shape, 0.05)})
    amp_err, phase_err = view["amplitude_error"]["yx"], view["phase_error"]["zx"]
    assert amp_err.shape == view["amplitude"]["yx"].shape
    assert np.nanmax(amp_err) == pytest.approx(0.1, rel=1e-5)  # relative to the maximum amplitude
    assert np.isnan(phase_err[0, 0]) and np.nanmax(phase_err) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="phase_error has shape"):
        central_slices(_fields(rho), errors={"phase_error": np.ones((2, 2, 2))})


def test_display_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="complex 3D"):
        _fields(np.ones((8, 8, 8)))
    with pytest.raises(ValueError, match="no amplitude"):
        _fields(np.zeros((8, 8, 8), complex))
    with pytest.raises(ValueError, match="3D"):
        projected_peak(np.ones((4, 4)))


def test_projected_peak_averages_over_theta():
    volume = np.zeros((4, 5, 6))
    volume[1, 2, :3] = 6.0
    image = projected_peak(volume)
    assert image.shape == (4, 5) and image.dtype == np.float32 and image[1, 2] == 3.0 and image.sum() == 3.0
    mask = np.zeros(volume.shape, bool)
    mask[:, :, 3:] = True  # only the first three frames measured
    assert projected_peak(volume, mask)[1, 2] == 6.0
    with pytest.raises(ValueError, match="mask shape"):
        projected_peak(volume, mask[..., :2])


def _box(n=32):
    """A 16 x 20 x 24 voxel box centred at voxel (16, 16, 16), no phase."""
    amp = np.zeros((n, n, n))
    amp[8:24, 6:26, 4:28] = 1.0
    return amp.astype(complex)


def test_the_3d_scene_is_the_particle_surface_its_lines_and_planes_in_nm_from_the_grid_centre():
    fields = _fields(_box())
    line = {"winding": -1, "type": "screw", "direction": [1.0, 0.0, 0.0], "position": [16.0, 16.5, 10.5],
            "points": [[18.0, 16.5, 10.5], [14.0, 16.5, 10.5], [16.0, 16.5, 10.5], [20.0, 16.5, 10.5]]}
    loop = {"winding": 1, "type": "edge", "closed": True, "direction": [1.0, 0.0, 0.0], "position": [16, 16, 16],
            "points": [[16, 14, 16], [16, 16, 18], [16, 18, 16], [16, 16, 14]]}
    plane = {"position": [16.0, 16.0, 20.0], "normal": [0.0, 0.0, 1.0]}
    scene = scene_3d(fields, [line, loop], [plane], voxel_nm=10.0)
    v, f = scene["mesh"]["vertices"], scene["mesh"]["faces"]
    assert v.dtype == np.float32 and v.shape[1] == 3 and f.shape[1] == 3 and f.max() < len(v)
    # the surface at half the bulk amplitude lies half a voxel outside the box's outer voxels (within the blur)
    assert scene["extent_nm"] == [[pytest.approx(-85, abs=5), pytest.approx(75, abs=5)],
                                  [pytest.approx(-105, abs=5), pytest.approx(95, abs=5)],
                                  [pytest.approx(-125, abs=5), pytest.approx(115, abs=5)]]
    open_line, closed = scene["lines"]
    assert open_line["winding"] == -1 and [p[0] for p in open_line["points_nm"]] == [-20.0, 0.0, 20.0, 40.0]
    assert open_line["points_nm"][0][1:] == [5.0, -55.0]  # (voxel - 16) x 10 nm
    assert closed["closed"] and closed["points_nm"][0] == closed["points_nm"][-1] and len(closed["points_nm"]) == 5
    (p,) = scene["planes"]
    corners = np.array(p["corners_nm"])
    assert p["position_nm"] == [0.0, 0.0, 40.0] and np.allclose(corners[:, 2], 40.0)  # the plane x = 40 nm
    assert np.ptp(corners[:, 0]) == pytest.approx(np.ptp(scene["extent_nm"][0]), rel=1e-3)  # as tall as the particle


def test_a_large_particle_gets_a_coarser_mesh_and_bad_records_are_left_out():
    amp = np.zeros((64, 64, 64))
    z, y, x = np.ogrid[:64, :64, :64]
    amp[(z - 32) ** 2 / 100 + ((y - 32) ** 2 + (x - 32) ** 2) / 700 <= 1] = 1.0
    fields = _fields(amp.astype(complex))
    fine = scene_3d(fields, [], [], voxel_nm=5.0, max_faces=10**6)
    coarse = scene_3d(fields, [{"points": [[1, 2]]}, {"position": None}], [{"normal": [0, 0, 0], "position": [1, 2, 3]}],
                      voxel_nm=5.0, max_faces=3000)
    assert len(coarse["mesh"]["faces"]) <= 3000 < len(fine["mesh"]["faces"])
    assert coarse["lines"] == [] and coarse["planes"] == []
