"""The live page's views of a scan: central slices cut from the particle's one set of fields, the projected peak."""

import numpy as np
import pytest

from streamer.analysis.displacement import particle_fields
from streamer.analysis.views import central_slices, projected_peak


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
