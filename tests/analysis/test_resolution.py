"""The PRTF resolution on cases whose resolution is known: an object band-limited at a chosen q."""

import math

import numpy as np
import pytest

from streamer.analysis.resolution import prtf_resolution, q_norms


def _particle(n=48, radius=10):
    z, y, x = np.indices((n, n, n)) - n // 2
    return ((z**2 + y**2 + x**2) <= radius**2).astype(complex) * np.exp(0.3j * np.sin(z / 5.0))


def _low_pass(rho, q, q_cut):
    spectrum = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(rho)))
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(np.where(q <= q_cut, spectrum, 0))))


@pytest.mark.parametrize("q_cut", [0.12, 0.2])
def test_an_object_band_limited_at_q_c_has_the_half_period_resolution_pi_over_q_c(q_cut):
    n, voxel_nm = 48, 10.0
    basis = np.eye(3) * 2 * math.pi / (n * voxel_nm)  # orthogonal grid, 10 nm voxels
    truth = _particle(n)
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(truth)))) ** 2
    q = q_norms(truth.shape, basis)
    res = prtf_resolution(_low_pass(truth, q, q_cut), intensity, basis, shells=48)
    assert not res.limited_by_grid
    assert res.resolution_nm == pytest.approx(math.pi / q_cut, rel=0.08)


def test_a_perfect_reconstruction_is_limited_by_the_grid_and_a_sheared_basis_is_honoured():
    n, voxel_nm = 32, 10.0
    truth = _particle(n, radius=7)
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(truth)))) ** 2
    basis = np.eye(3) * 2 * math.pi / (n * voxel_nm)
    res = prtf_resolution(truth, intensity, basis)
    assert res.limited_by_grid and res.resolution_nm == pytest.approx(math.pi / ((n // 2 - 1) * basis[0, 0]))  # the last whole sphere: n/2 - 1 steps
    sheared = basis.copy()
    sheared[0, 1] = 0.5 * basis[0, 0]  # a detector grid: one axis leans on another
    assert q_norms((n, n, n), sheared)[n // 2 + 1, n // 2 + 1, n // 2] == pytest.approx(
        math.hypot(1.5 * basis[0, 0], basis[0, 0]))


def test_masked_voxels_and_bad_shapes():
    truth = _particle(16, radius=4)
    basis = np.eye(3) * 0.05
    with pytest.raises(ValueError, match="one shape"):
        prtf_resolution(truth, np.ones((16, 16, 8)), basis)
    with pytest.raises(ValueError, match="no measured voxel"):
        prtf_resolution(truth, np.ones((16, 16, 16)), basis, mask=np.ones((16, 16, 16), bool))
