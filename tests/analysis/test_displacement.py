import numpy as np
import pytest

from streamer.analysis.displacement import (
    displacement_field,
    particle_fields,
    particle_support,
    strain_along_q,
)
from streamer.geometry import OrthogonalGeometry

GEO = OrthogonalGeometry(shape_zyx=(32, 32, 32), voxel_nm=10.0, d_spacing_nm=0.55)
Q = GEO.q_bragg_inv_nm


def _plate():
    z, y, x = np.ogrid[0:32, 0:32, 0:32]
    return np.broadcast_to((np.abs(z - 16) <= 8) & ((y - 16) ** 2 + (x - 16) ** 2 < 144), (32, 32, 32))


def _fields(phase):
    """The fields of a reconstruction whose displacement phase G.u is ``phase``: rho = |rho| exp(-i phase)
    (docs/conventions.md). Its amplitude is smooth at the surface (the support is cut from the smoothed
    amplitude)."""
    from scipy import ndimage

    amplitude = ndimage.gaussian_filter(_plate().astype(float), 1.0)
    return particle_fields(amplitude * np.exp(-1j * phase), voxel_nm=GEO.voxel_nm, q_inv_nm=Q, threshold=0.2,
                           erosion=0)


def test_bent_layers_give_back_their_displacement_and_strain_without_ramp_or_offset():
    z, y, x = np.ogrid[0:32, 0:32, 0:32]
    a = 0.12  # rad per voxel^2: the phase spans more than 2 pi, so it must be unwrapped
    phase = a * (z - 16.0) ** 2 + 0.4 * (x - 16) - 0.3 * (y - 16) + 0.3 * z + 2.5
    fields = _fields(phase)
    d = displacement_field(fields, q_inv_nm=Q)
    inside = d.support & _plate()
    assert inside.sum() > 0.9 * _plate().sum() and np.isnan(d.phase_rad[~d.support]).all()
    true = np.broadcast_to(a * (z - 16.0) ** 2, inside.shape)
    err = d.phase_rad[inside] - true[inside]
    assert np.ptp(err) < 1e-3 and np.ptp(true[inside]) > 2 * np.pi  # unwrapped up to one constant
    assert fields.ramp_rad_per_voxel[1:] == pytest.approx((-0.3, 0.4), abs=1e-6)
    np.testing.assert_allclose(d.displacement_nm[inside], d.phase_rad[inside] / Q)
    assert fields.ramp_rad_per_voxel[0] == pytest.approx(0.3, abs=1e-6)  # the uniform part: the reference lattice


def test_a_strain_gradient_along_q_comes_back_where_the_window_is_whole_and_leans_inwards_at_the_faces():
    z = np.arange(32)[:, None, None]
    a = 0.002  # rad per voxel^2: eps from -3.5e-4 to +3.5e-4 through the plate
    fields = _fields(a * (z - 16.0) ** 2 + 0.3 * z)
    eps_true = np.broadcast_to(2 * a * (z - 16.0) / (Q * GEO.voxel_nm), fields.strain.shape)
    inside = fields.reliable & np.isfinite(fields.strain)
    assert inside.sum() > 0.8 * _plate().sum()
    middle = inside & (np.abs(z - 16) == 1)  # 5 layers (2.5 sigma) or more from the ends of the 13 trusted layers
    np.testing.assert_allclose(fields.strain[middle], eps_true[middle], rtol=4e-2, atol=1e-9)
    faces = inside & (np.abs(z - 16) >= 6)
    ratio = fields.strain[faces] / eps_true[faces]
    assert 0.7 < ratio.min() and ratio.max() < 0.9  # the window leans inwards there: a smaller gradient


def test_strain_is_not_smeared_across_a_dislocation():
    """The 2 pi branch cut of an edge line never enters the strain (it would read 2 pi / (|G| voxel) = 0.05):
    with plain steps the strain is the line's own field; the default window along q smooths it, never more."""
    z, y, x = np.ogrid[0:32, 0:32, 0:32]
    a = 0.002
    vortex = np.arctan2(z - 15.5, x - 15.5) + 0 * y  # edge line along y through the plate
    fields = _fields(a * (z - 16.0) ** 2 + vortex)
    d = displacement_field(fields, q_inv_nm=Q)
    # strain of the vortex alone is d(atan2)/dz = (x - x0) / r^2; away from its core it is smooth
    zz, xx = z - 15.5, x - 15.5
    eps_true = (2 * a * (z - 16.0) + xx / (zz**2 + xx**2)) / (Q * GEO.voxel_nm)
    eps_true = np.broadcast_to(eps_true, d.strain.shape)
    far = (d.support & _plate() & np.broadcast_to((zz**2 + xx**2) > 9, d.support.shape)
           & np.broadcast_to(np.abs(z - 16) < 6, d.support.shape))  # amplitude-weighted: not at the faces
    plain = strain_along_q(fields.flat, fields.reliable, voxel_nm=GEO.voxel_nm, q_inv_nm=Q, smoothing_voxels=0)
    far &= np.isfinite(plain)
    shift = np.nanmedian(plain[far] - eps_true[far])  # the removed mean
    assert np.max(np.abs(plain[far] - eps_true[far] - shift)) < 0.03 * np.max(np.abs(eps_true[far]))
    cut = 2 * np.pi / (Q * GEO.voxel_nm)  # what one step across the cut would read
    assert np.nanmax(np.abs(d.strain)) < 0.25 * cut


def test_support_is_the_smoothed_amplitude_above_the_threshold_with_holes_filled():
    amp = np.zeros((16, 16, 16))
    amp[4:12, 4:12, 4:12] = 1.0
    amp[7:9, 7:9, 7:9] = 0.0  # a hole (a vortex core) inside
    s = particle_support(amp, threshold=0.2)
    assert s[8, 8, 8] and s[4:12, 4:12, 4:12].all() and not s[0].any()
    assert particle_support(amp, threshold=0.2, sigma=0).sum() == 8**3
    assert particle_support(amp, threshold=0.6).sum() < s.sum()


@pytest.mark.parametrize("bad, match", [(np.zeros((32, 32, 32), complex), "no amplitude"),
                                        (np.ones((8, 8), complex), "complex 3D")])
def test_bad_input_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        particle_fields(bad, voxel_nm=1.0, q_inv_nm=1.0)
