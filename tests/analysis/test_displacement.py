import numpy as np
import pytest

from streamer.analysis.displacement import amplitude_support, displacement_field
from streamer.geometry import OrthogonalGeometry

GEO = OrthogonalGeometry(shape_zyx=(32, 32, 32), voxel_nm=10.0, d_spacing_nm=0.55)
Q = GEO.q_bragg_inv_nm


def _plate():
    z, y, x = np.ogrid[0:32, 0:32, 0:32]
    return np.broadcast_to((np.abs(z - 16) <= 8) & ((y - 16) ** 2 + (x - 16) ** 2 < 144), (32, 32, 32))


def test_bent_layers_give_back_their_displacement_and_strain_without_ramp_or_offset():
    z, y, x = np.ogrid[0:32, 0:32, 0:32]
    a = 0.12  # rad per voxel^2: the phase spans more than 2 pi, so it must be unwrapped
    phase = a * (z - 16.0) ** 2 + 0.4 * (x - 16) - 0.3 * (y - 16) + 0.3 * z + 2.5
    d = displacement_field(np.where(_plate(), np.exp(1j * phase), 0), geometry=GEO)
    inside = d.support
    assert inside.sum() == _plate().sum() and np.isnan(d.phase_rad[~inside]).all()
    true = np.broadcast_to(a * (z - 16.0) ** 2, inside.shape)
    err = d.phase_rad[inside] - true[inside]
    assert np.ptp(err) < 1e-3 and np.ptp(true[inside]) > 2 * np.pi  # unwrapped up to one constant
    assert d.ramp_rad_per_voxel[1:] == pytest.approx((-0.3, 0.4), abs=1e-6)
    np.testing.assert_allclose(d.displacement_nm[inside], d.phase_rad[inside] / Q)
    eps_true = np.broadcast_to(2 * a * (z - 16.0), inside.shape) / (Q * GEO.voxel_nm)
    core = inside & (np.abs(z - 16) < 8)
    assert d.ramp_rad_per_voxel[0] == pytest.approx(0.3, abs=1e-6)  # the uniform part is the reference lattice
    np.testing.assert_allclose(d.strain[core], eps_true[core], atol=1e-9)


def test_strain_is_not_smeared_across_a_dislocation():
    z, y, x = np.ogrid[0:32, 0:32, 0:32]
    a = 0.002
    vortex = np.arctan2(z - 15.5, x - 15.5) + 0 * y  # edge line along y through the plate
    phase = a * (z - 16.0) ** 2 + vortex
    d = displacement_field(np.where(_plate(), np.exp(1j * phase), 0), geometry=GEO)
    # strain of the vortex alone is d(atan2)/dz = (x - x0) / r^2; away from its core it is smooth
    zz, xx = z - 15.5, x - 15.5
    eps_true = (2 * a * (z - 16.0) + xx / (zz**2 + xx**2)) / (Q * GEO.voxel_nm)
    eps_true = np.broadcast_to(eps_true, d.strain.shape)
    far = d.support & np.broadcast_to((zz**2 + xx**2) > 9, d.support.shape) & np.broadcast_to(np.abs(z - 16) < 8, d.support.shape)
    shift = np.nanmedian(d.strain[far] - eps_true[far])  # the removed mean
    assert np.max(np.abs(d.strain[far] - eps_true[far] - shift)) < 0.03 * np.max(np.abs(eps_true[far]))


def test_support_is_ten_percent_of_the_maximum_by_default():
    amp = np.zeros((16, 16, 16))
    amp[4:12, 4:12, 4:12] = 1.0
    amp[4:12, 4:12, 12] = 0.09
    amp[4:12, 4:12, 3] = 0.11
    s = amplitude_support(amp)
    assert s[:, :, 3].any() and not s[:, :, 12].any()
    assert amplitude_support(amp, threshold=0.2).sum() == 8**3


@pytest.mark.parametrize("bad, match", [(np.zeros((32, 32, 32), complex), "zero everywhere"),
                                        (np.ones((8, 8, 8), complex), "geometry's shape")])
def test_bad_input_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        displacement_field(bad, geometry=GEO)
