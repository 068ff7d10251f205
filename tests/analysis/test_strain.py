import numpy as np
import pytest

from streamer.analysis.displacement import (
    particle_fields,
    remove_ramp,
    strain_along_q,
    strain_energy,
)
from streamer.analysis.views import central_slices

Q, VOXEL, EPS = 11.4, 12.0, 2e-4


def _plate():
    support = np.zeros((12, 20, 20), bool)
    support[2:10, 3:17, 3:17] = True
    return support


def test_strain_of_two_opposite_domains_and_its_energy():
    z, y, x = np.ogrid[0:12, 0:20, 0:20]
    eps = np.where(x >= 10, EPS, -EPS)  # balanced, so the mean (the phase ramp) is zero
    rho = np.exp(1j * Q * eps * z * VOXEL) * _plate()
    flat, ramp, _ = remove_ramp(rho, _plate())
    assert ramp[0] == pytest.approx(0, abs=1e-9)
    s = strain_along_q(flat, _plate(), voxel_nm=VOXEL, q_inv_nm=Q)
    inside = np.isfinite(s)
    assert np.array_equal(inside, _plate())  # forward and backward steps reach every voxel of the particle
    np.testing.assert_allclose(np.abs(s[inside]), EPS, rtol=1e-6)
    e = strain_energy(s, voxel_nm=VOXEL)
    volume = inside.sum() * (VOXEL * 1e-9) ** 3
    assert e["energy_j"] == pytest.approx(0.5 * 150e9 * EPS**2 * volume, rel=1e-6)
    assert e["rms_strain"] == pytest.approx(EPS)


def test_a_phase_ramp_and_a_screw_dislocation_are_not_strain():
    z, y, x = np.ogrid[0:12, 0:20, 0:20]
    rho = np.exp(1j * (0.3 * z + np.arctan2(y - 9.5, x - 9.5) + 0 * z)) * _plate()
    flat, ramp, _ = remove_ramp(rho, _plate())
    assert ramp[0] == pytest.approx(0.3, abs=1e-9)
    s = strain_along_q(flat, _plate(), voxel_nm=VOXEL, q_inv_nm=Q)
    assert np.nanmax(np.abs(s)) < 1e-9


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        strain_along_q(np.ones((4, 4, 4)), np.ones((4, 4)), voxel_nm=1, q_inv_nm=1)
    with pytest.raises(ValueError, match="no pair"):
        strain_along_q(np.ones((4, 4, 4)), np.zeros((4, 4, 4)), voxel_nm=1, q_inv_nm=1)


def test_the_live_page_shows_the_strain_the_analysis_measures():
    """One strain definition: the page's slices are cuts of the particle's one strain field."""
    z, y, x = np.ogrid[0:12, 0:20, 0:20]
    rho = np.exp(1j * (Q * EPS * VOXEL * (z - 6.0) ** 2 / 4 + 0.2 * x)) * _plate()
    fields = particle_fields(rho, voxel_nm=VOXEL, q_inv_nm=Q, threshold=0.2, erosion=1)
    view = central_slices(fields)
    cz, cy, cx = view["centre"]
    oz, oy, ox = view["origin"]
    want = np.where(fields.inner, fields.strain, np.nan)[cz, oy:oy + view["shape"][1], ox:ox + view["shape"][2]]
    np.testing.assert_allclose(view["strain"]["yx"], want.astype(np.float32), equal_nan=True)
    assert np.isfinite(view["strain"]["yx"]).any()
