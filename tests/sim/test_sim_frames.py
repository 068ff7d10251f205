"""Frames on the sheared detector grid: the q they sample, where the peak lands, the facets they encode."""

import math
from dataclasses import replace

import numpy as np
import pytest

from sim.defects import screw_pair
from sim.diffraction import DiffractionModel
from sim.particle import (
    Particle,
    amplitude_at,
    complex_image,
    complex_image_at,
)
from streamer.geometry import DetectorGeometry

# a 64 x 64 crop at 0.5 m (about 20 nm voxels), 32 steps, detector a little out of the vertical plane
GEOM = DetectorGeometry(distance_m=0.5, roi_px=(96, 160, 96, 160), num_rocking_steps=32, rocking_step_deg=0.05,
                        delta_deg=2.0)
PLATE = Particle(shape="hexagon", radius_x_nm=150.0, radius_y_nm=130.0, thickness_nm=80.0)


def _model(particle, geometry=GEOM):
    return DiffractionModel(complex_image(particle, geometry), geometry, peak_counts=1e4)


def _direct_intensity(particle, q_lab, voxel_nm=4.0):
    """|sum_r rho(r) exp(-i (q - q_Bragg) . r)|^2 on a fine orthogonal grid: independent of the geometry's grids."""
    axes = [np.arange(-h, h + voxel_nm / 2, voxel_nm) for h in (44.0, 156.0, 156.0)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
    inside = amplitude_at(particle, pts) > 0
    pts = pts[:, inside]
    rho = complex_image_at(particle, pts)
    dq = q_lab - particle.bragg_vector_inv_nm()
    return np.abs(np.exp(-1j * (dq @ pts)) @ rho) ** 2


def test_frames_are_the_intensity_at_the_q_the_geometry_gives_each_pixel():
    particle = PLATE.with_defects(screw_pair(center_nm=(10.0, 0.0), separation_nm=100.0))
    model = _model(particle)
    stack = model.expected_stack(1.0)
    peak = np.array(np.unravel_index(np.argmax(stack), stack.shape))
    picks = [peak + d for d in ([0, 0, 0], [2, 0, 0], [0, 3, 0], [0, 0, -3], [-1, 2, 2], [3, -2, 1], [0, 6, 0])]
    sim = np.array([stack[tuple(p)] for p in picks])
    direct = _direct_intensity(particle, np.array([GEOM.q_lab(*p) for p in picks]))
    np.testing.assert_allclose(sim / sim[0], direct / direct[0], atol=0.05)
    assert sim.min() / sim[0] < 0.5  # the picks sample the peak's shape, not just its top


def _peak_position(stack):
    """Sub-voxel maximum: a quadratic in log intensity fitted to the 3 x 3 x 3 voxels around the brightest."""
    m = np.array(np.unravel_index(np.argmax(stack), stack.shape))
    d = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij")).reshape(3, -1).T
    y = np.log(stack[tuple((m + d).T)])
    terms = [np.ones(len(d))] + [d[:, i] for i in range(3)] + [d[:, i] * d[:, j] for i in range(3) for j in range(i, 3)]
    coef = np.linalg.lstsq(np.stack(terms, axis=1), y, rcond=None)[0]
    grad, hess, k = coef[1:4], np.zeros((3, 3)), 4
    for i in range(3):
        for j in range(i, 3):
            hess[i, j] += coef[k] * (2 if i == j else 1)
            hess[j, i] = hess[i, j]
            k += 1
    return m - np.linalg.solve(hess, grad)


def test_the_peak_lands_where_the_geometry_puts_it_and_drifts_with_the_lattice_constant():
    geometry = replace(GEOM, delta_deg=0.0)
    positions = []
    for c_nm, tilt in ((1.10, (0.0, 0.0)), (1.101, (0.0, 0.0)), (1.102, (0.0, 0.0)), (1.10, (0.4, -0.6))):
        particle = replace(PLATE, lattice_c_nm=c_nm, tilt_mrad=tilt)
        stack = _model(particle, geometry).expected_stack(1.0)
        expected = np.array(geometry.center_index) + np.linalg.solve(
            geometry.q_basis_inv_nm, particle.bragg_vector_inv_nm() - geometry.q_center_inv_nm)
        np.testing.assert_allclose(_peak_position(stack), expected, atol=0.1)
        positions.append((_peak_position(stack), expected))
    found, expected = (np.array([p[i] for p in positions[:3]]) for i in (0, 1))
    np.testing.assert_allclose(np.diff(found, axis=0), np.diff(expected, axis=0), atol=0.05)
    positions = found
    # a larger c is a smaller |q|: the peak walks down the detector (rows), by about 2 pixels per 0.1 %
    drift = np.diff(positions, axis=0)
    assert np.all(np.abs(drift[:, 1]) > 1.5) and np.all(np.abs(drift[:, 0]) < 0.2)


def test_a_scan_transformed_back_puts_the_facets_where_the_model_put_them():
    model = _model(PLATE)
    frames = model.amplitude_stack()  # complex frames of the rocking scan, one per step
    rho = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(frames)))
    voxel = 4.0
    lab = np.abs(GEOM.to_orthogonal(rho, voxel_nm=voxel, shape_zyx=(48, 96, 96)))
    support = lab > 0.5 * lab.max()
    one_voxel = max(GEOM.voxel_sizes_nm)
    z = (np.flatnonzero(support[:, 48, 48]) - 24) * voxel
    y = (np.flatnonzero(support[24, :, 48]) - 48) * voxel
    x = (np.flatnonzero(support[24, 48, :]) - 48) * voxel
    half_t = PLATE.thickness_nm / 2
    # faces at +-40 nm (z), flat facets at +-130 nm (y), corners at +-150 nm (x)
    for measured, edge in ((z, half_t), (y, PLATE.radius_y_nm), (x, PLATE.radius_x_nm)):
        assert measured.min() == pytest.approx(-edge, abs=one_voxel)
        assert measured.max() == pytest.approx(edge, abs=one_voxel)
    assert one_voxel < 25.0


def test_frames_between_steps_are_direct_sums_and_grid_steps_are_slices():
    model = _model(PLATE)
    stack = model.expected_stack(2.0)
    for k in (0, 7, 16, 31):
        theta = GEOM.rocking_angles_deg()[k]
        np.testing.assert_allclose(model.expected_frame(theta, 2.0), stack[k], rtol=1e-5, atol=1e-6)
        # the direct sum over the rocking axis agrees with the slice at a grid step too
        np.testing.assert_allclose(model.expected_frame(theta + 1e-7, 2.0), stack[k], rtol=1e-3, atol=1e-3)
    half = GEOM.rocking_angles_deg()[16] + GEOM.rocking_step_deg / 2
    between = model.expected_frame(half, 2.0)
    r0, c0 = np.unravel_index(np.argmax(between), between.shape)
    rows, cols = r0 + np.array([0, 2, 0, 4, -3, 6]), c0 + np.array([0, 0, -2, 1, -1, 0])
    direct = _direct_intensity(PLATE, np.array([GEOM.q_lab(16.5, r, c) for r, c in zip(rows, cols)]))
    sim = between[rows, cols]
    np.testing.assert_allclose(sim / sim.max(), direct / direct.max(), atol=0.08)  # coarse-grid sampling


def test_defects_and_mosaic_lower_the_peak_against_the_perfect_crystal():
    rho = complex_image(PLATE, GEOM)
    ref = float(np.abs(rho).sum())
    perfect = DiffractionModel(rho, GEOM, peak_counts=1e4, reference_sum=ref).expected_stack(1.0).max()
    paired = PLATE.with_defects(screw_pair(separation_nm=100.0))
    defective = DiffractionModel(complex_image(paired, GEOM), GEOM, peak_counts=1e4,
                                 reference_sum=ref).expected_stack(1.0).max()
    assert 0.8e4 < perfect <= 1e4  # the Bragg peak falls between voxels
    assert defective < 0.8 * perfect
    assert math.isfinite(defective)
