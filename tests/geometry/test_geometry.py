import math

import numpy as np
import pytest

from streamer.geometry import DetectorGeometry, OrthogonalGeometry, from_dict

WAVELENGTH_NM = 1.2398419843320026 / 9.0  # 9 keV


def test_voxel_sizes_and_q_steps_match_a_hand_calculation():
    # 9 keV, 1 m, 55 um pixels binned by 2: a 128 x 128 frame of 110 um pixels (the full 256 x 256 chip)
    g = DetectorGeometry(energy_kev=9.0, distance_m=1.0, pixel_um=55.0, detector_shape_px=(256, 256), binning=2,
                         rocking_step_deg=0.01, num_rocking_steps=100)
    assert g.frame_shape == (128, 128)
    assert WAVELENGTH_NM == pytest.approx(0.13776, abs=1e-5)
    hand_voxel_nm = WAVELENGTH_NM * 1e-9 * 1.0 / (128 * 110e-6) * 1e9  # lambda D / (N p)
    assert hand_voxel_nm == pytest.approx(9.78, abs=0.01)
    _, row_nm, col_nm = g.voxel_sizes_nm
    assert row_nm == pytest.approx(hand_voxel_nm, rel=1e-3) and col_nm == pytest.approx(hand_voxel_nm, rel=1e-3)
    b = np.linalg.norm(g.q_basis_inv_nm, axis=0)
    pixel_q = 2 * math.pi / WAVELENGTH_NM * 110e-6 / 1.0  # k p / D
    assert b[1] == pytest.approx(pixel_q, rel=1e-3) and b[2] == pytest.approx(pixel_q, rel=1e-3)
    q = 4 * math.pi * math.sin(math.radians(g.theta_bragg_deg)) / WAVELENGTH_NM
    assert q == pytest.approx(2 * math.pi / 0.55, rel=1e-9)  # the arm sits at 2 theta of d = 0.55 nm
    assert g.theta_bragg_deg == pytest.approx(7.194, abs=1e-3)  # 2 theta near 14 deg
    assert b[0] == pytest.approx(q * math.radians(0.01), rel=1e-3)  # rocking: |q| dtheta
    # 100 steps of 0.01 deg: the rocking direction is resolved to 2 pi / (100 |q| dtheta)
    assert g.voxel_sizes_nm[0] == pytest.approx(2 * math.pi / (100 * q * math.radians(0.01)), rel=1e-3)
    # rocking moves q across q; rows run mostly along q (the detector sits at 2 theta)
    z = g.q_center_inv_nm / np.linalg.norm(g.q_center_inv_nm)
    assert abs(np.dot(z, g.q_basis_inv_nm[:, 0])) / b[0] < 1e-3
    assert abs(np.dot(z, g.q_basis_inv_nm[:, 1])) / b[1] == pytest.approx(math.cos(math.radians(g.theta_bragg_deg)), abs=0.01)


def test_the_sheared_basis_is_the_exact_q_near_the_origin_and_conjugate_to_real_space():
    g = DetectorGeometry(delta_deg=3.0, gamma_deg=14.0, rocking_axis=(0.2, 0.0, 1.0), roi_px=(40, 200, 60, 220),
                         rocking_step_deg=0.03, num_rocking_steps=40)
    c = np.array(g.center_index, float)
    for offset in ([3, 0, 0], [0, -5, 0], [0, 0, 7], [2, 4, -3]):
        exact = g.q_lab(*(c + offset)) - g.q_center_inv_nm
        linear = g.q_basis_inv_nm @ np.array(offset, float)
        assert np.linalg.norm(exact - linear) < 0.01 * np.linalg.norm(linear)
    a, b = g.real_basis_nm, g.q_basis_inv_nm
    np.testing.assert_allclose(b.T @ a, 2 * math.pi * np.diag(1 / np.array(g.stack_shape, float)), atol=1e-12)
    pts = g.real_space_points_nm()
    assert pts.shape == (3, *g.stack_shape)
    np.testing.assert_allclose(pts[:, 1, 0, 0] - pts[:, 0, 0, 0], a[:, 0])


def test_from_dict_dispatches_on_kind_and_round_trips():
    orth, det = OrthogonalGeometry(), DetectorGeometry(binning=2, roi_px=(0, 128, 0, 256))
    assert from_dict(orth.to_dict()) == orth and isinstance(from_dict(orth.to_dict()), OrthogonalGeometry)
    assert from_dict(det.to_dict()) == det and isinstance(from_dict(det.to_dict()), DetectorGeometry)
    assert OrthogonalGeometry.from_dict(orth.to_dict()) == orth
    with pytest.raises(ValueError, match="unsupported geometry kind 'detector'"):
        OrthogonalGeometry.from_dict(det.to_dict())  # the live pipeline stays orthogonal
    with pytest.raises(ValueError, match="unknown geometry kind 'conical'"):
        from_dict({"kind": "conical"})
    with pytest.raises(ValueError, match="detector geometry: unknown key pixel_size"):
        from_dict({"kind": "detector", "pixel_size": 55})


@pytest.mark.parametrize("changes, message", [
    ({"energy_kev": 0}, "energy_kev"),
    ({"roi_px": (0, 100, 0, 300)}, "roi_px"),
    ({"binning": 3}, "whole number of 3x3 bins"),
    ({"d_spacing_nm": 0.05}, "below half the wavelength"),
    ({"rocking_axis": (-0.1252, 0.9921, 0.0)}, "parallel to q"),  # q of the default arm: (-sin, cos, 0) theta
    ({"num_rocking_steps": 1}, "num_rocking_steps"),
])
def test_bad_geometry_is_refused_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message):
        DetectorGeometry(**changes)


def test_binned_keeps_the_resolution_and_halves_the_field_of_view():
    raw = DetectorGeometry()
    binned = raw.binned(2)
    assert binned.frame_shape == (128, 128)
    assert binned.voxel_sizes_nm[1] == pytest.approx(raw.voxel_sizes_nm[1], rel=1e-3)
    fov = [np.linalg.norm(g.real_basis_nm[:, 1]) * g.frame_shape[0] for g in (raw, binned)]
    assert fov[1] == pytest.approx(fov[0] / 2, rel=1e-3)


def test_orthogonal_resampling_puts_a_known_point_where_it_belongs():
    g = DetectorGeometry(distance_m=0.5, roi_px=(96, 160, 96, 160), num_rocking_steps=32, rocking_step_deg=0.05,
                         delta_deg=4.0)
    pts = g.real_space_points_nm()
    target = np.array([20.0, -30.0, 40.0])
    blob = np.exp(-np.sum((pts - target.reshape(3, 1, 1, 1)) ** 2, axis=0) / (2 * 40.0**2))
    lab = g.to_orthogonal(blob, voxel_nm=5.0, shape_zyx=(80, 80, 80))
    axes = np.meshgrid(*[(np.arange(80) - 40) * 5.0] * 3, indexing="ij")
    centroid = np.array([(a * lab).sum() / lab.sum() for a in axes])
    np.testing.assert_allclose(centroid, target, atol=2.0)
    with pytest.raises(ValueError, match="stack shape"):
        g.to_orthogonal(np.zeros((2, 2, 2)))
