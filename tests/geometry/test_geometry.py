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
        OrthogonalGeometry.from_dict(det.to_dict())  # a detector grid is resampled to the lab, never relabelled
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


def _ellipsoid_on(g, semi_axes_nm, phase_per_nm=(0.0, 0.0, 0.0)):
    """A uniform ellipsoid (semi-axes along lab z, y, x) with a linear phase, sampled on g's sheared grid."""
    pts = g.real_space_points_nm()
    inside = sum((p / a) ** 2 for p, a in zip(pts, semi_axes_nm)) <= 1
    return inside * np.exp(1j * np.tensordot(np.asarray(phase_per_nm), pts, axes=1))


def test_an_object_on_the_sheared_grid_keeps_its_lab_shape_and_phase_gradient_once_resampled():
    """Issue 16: left on the sheared grid, lengths along the rocking direction came out ~2.5x wrong and a
    strain read with the wrong sign; resampled onto the lab grid they are what they are in the lab."""
    g = DetectorGeometry(roi_px=(64, 192, 64, 192), rocking_step_deg=0.03, num_rocking_steps=32).binned(2)
    semi = (50.0, 130.0, 150.0)  # a plate: thin along z (q)
    ramp = (0.02, 0.0, 0.0)  # rad/nm along z: a uniform strain of 0.02 / |q| (sign kept: a lab-frame check)
    rho = _ellipsoid_on(g, semi, ramp)
    voxel = min(g.voxel_sizes_nm)
    lab_geo = g.lab_geometry((24, 24, 24), voxel)
    lab = g.to_orthogonal(rho, voxel_nm=voxel, shape_zyx=lab_geo.shape_zyx)
    amp = np.abs(lab)
    axes = np.meshgrid(*[(np.arange(n) - n // 2) * voxel for n in lab.shape], indexing="ij")
    w = amp / amp.sum()
    for a, s in zip(axes, semi):  # second moment of a uniform ellipsoid along an axis: a^2 / 5
        assert np.sqrt((w * a**2).sum() * 5) == pytest.approx(s, rel=0.12)
    inside = amp > 0.9
    dphi = np.angle(lab[1:] * np.conj(lab[:-1]))[inside[1:] & inside[:-1]]  # phase step along lab z
    assert np.median(dphi) / voxel == pytest.approx(ramp[0], rel=0.05)
    dphi_x = np.angle(lab[:, :, 1:] * np.conj(lab[:, :, :-1]))[inside[:, :, 1:] & inside[:, :, :-1]]
    assert abs(np.median(dphi_x)) < 0.05 * ramp[0] * voxel  # none along x
    assert lab_geo.q_bragg_inv_nm == pytest.approx(g.q_bragg_inv_nm) and lab_geo.voxel_nm == voxel


def test_support_extent_and_q_grid_cover_what_the_grid_holds():
    g = DetectorGeometry(roi_px=(64, 192, 64, 192), rocking_step_deg=0.03, num_rocking_steps=32).binned(2)
    support = np.abs(_ellipsoid_on(g, (50.0, 130.0, 150.0))) > 0
    np.testing.assert_allclose(g.support_half_extent_nm(support), (50.0, 130.0, 150.0), atol=max(g.voxel_sizes_nm))
    dq = float(min(np.linalg.norm(g.q_basis_inv_nm, axis=0)))
    shape = g.q_grid_shape(dq)
    ones = g.intensity_to_orthogonal(np.ones(g.stack_shape), dq_inv_nm=dq, shape_zyx=shape)
    assert ones[0].max() == 0 and ones[-1].max() == 0 and ones[:, :, 0].max() == 0  # the box holds every q
    assert ones[tuple(n // 2 for n in shape)] == pytest.approx(1.0)


def test_rebinned_trims_the_crop_to_whole_bins_and_says_what_it_left():
    g = DetectorGeometry(roi_px=(10, 75, 20, 84), num_rocking_steps=8)  # 65 x 64 raw pixels
    b, left = g.rebinned(2)
    assert b.binning == 2 and b.roi_px == (10, 74, 20, 84) and left == (1, 0) and b.frame_shape == (32, 32)
    assert b.center_px == g.center_px  # the beam stays where it is
    b4, left4 = b.rebinned(2)
    assert b4.binning == 4 and b4.frame_shape == (16, 16) and left4 == (0, 0)
    with pytest.raises(ValueError, match="smaller than one"):
        DetectorGeometry(roi_px=(0, 8, 0, 8), detector_shape_px=(64, 64)).rebinned(16)


def test_a_geometry_file_must_state_what_the_beamline_measured():
    full = {"energy_kev": 9.0, "distance_m": 0.5, "pixel_um": 55.0, "detector_shape_px": [256, 256],
            "d_spacing_nm": 0.55, "rocking_step_deg": 0.005, "num_rocking_steps": 200}
    g = DetectorGeometry.from_measured(full, "geometry file g.toml")
    assert g.distance_m == 0.5 and g.num_rocking_steps == 200 and g.binning == 1
    for key in full:
        partial = {k: v for k, v in full.items() if k != key}
        with pytest.raises(ValueError, match=rf"geometry file g.toml: missing key {key} \("):
            DetectorGeometry.from_measured(partial, "geometry file g.toml")
    with pytest.raises(ValueError, match="geometry file g.toml: detector geometry: unknown key pixel_size"):
        DetectorGeometry.from_measured({**full, "pixel_size": 55}, "geometry file g.toml")
    with pytest.raises(ValueError, match="roi_px"):
        DetectorGeometry.from_measured({**full, "roi_px": [0, 300, 0, 256]}, "geometry file g.toml")


def test_an_object_lands_on_the_lab_grid_by_its_centre_of_mass_not_its_whole_detector_voxel():
    """Phasing centres an object to a whole voxel of the detector grid; along the rocking direction that is
    a resolution element, so to_lab places the amplitude's centre of mass (fractional) on the lab origin."""
    from streamer.analysis.scan import amplitude_centre, lab_grid, to_lab

    g = DetectorGeometry(energy_kev=9.0, distance_m=1.0, pixel_um=55.0, detector_shape_px=(64, 64),
                         roi_px=(0, 64, 0, 64), rocking_step_deg=0.02, num_rocking_steps=32, d_spacing_nm=0.55)
    steps, rows, cols = np.ogrid[0:32, 0:64, 0:64]
    c = np.array(g.center_index, float) + (0.45, 0.0, 0.0)  # the particle 0.45 of a step off the centre
    blob = np.exp(-((steps - c[0]) ** 2 / 8.0 + (rows - c[1]) ** 2 / 30.0 + (cols - c[2]) ** 2 / 30.0))
    rho = blob.astype(np.complex64)
    assert amplitude_centre(np.abs(rho))[0] == pytest.approx(c[0], abs=1e-3)
    lab = lab_grid(g, np.abs(rho) > 0.1)
    moved = to_lab(g, lab, rho, support=np.abs(rho) > 0.01)
    centre = np.array(amplitude_centre(np.abs(moved.rho))) - np.array(lab.shape_zyx) // 2
    assert np.all(np.abs(centre) < 0.1)  # lab voxels
    plain = g.to_orthogonal(rho, voxel_nm=lab.voxel_nm, shape_zyx=lab.shape_zyx)  # by the centre index
    off = np.array(amplitude_centre(np.abs(plain))) - np.array(lab.shape_zyx) // 2
    assert np.abs(off).max() * lab.voxel_nm > 0.3 * max(g.voxel_sizes_nm)  # what it would have been


def test_resampling_in_slabs_gives_the_same_grid(monkeypatch):
    import streamer.geometry.detector as detector

    g = DetectorGeometry(roi_px=(64, 192, 64, 192), rocking_step_deg=0.03, num_rocking_steps=32).binned(2)
    rho = _ellipsoid_on(g, (50.0, 130.0, 150.0)).astype(np.complex64)
    whole = g.to_orthogonal(rho, shape_zyx=(24, 40, 40))
    monkeypatch.setattr(detector, "RESAMPLE_CHUNK_VOXELS", 3 * 40 * 40)  # 3 lab planes at a time
    np.testing.assert_array_equal(g.to_orthogonal(rho, shape_zyx=(24, 40, 40)), whole)
    assert whole.dtype == np.complex64 and np.abs(whole).max() > 0.5


def test_arrays_stacked_are_resampled_as_each_alone():
    """Several arrays on a leading axis share the lab coordinates (to_lab resamples a field and its amplitude)."""
    g = DetectorGeometry(roi_px=(64, 192, 64, 192), rocking_step_deg=0.03, num_rocking_steps=32).binned(2)
    rho = _ellipsoid_on(g, (50.0, 130.0, 150.0)).astype(np.complex64) * np.exp(0.3j * np.arange(32))[:, None, None]
    parts = np.stack([rho.real, rho.imag, np.abs(rho)]).astype(np.float32)
    together = g.to_orthogonal(parts, shape_zyx=(24, 40, 40), origin_index=(15.5, 30.2, 31.0))
    alone = [g.to_orthogonal(p, shape_zyx=(24, 40, 40), origin_index=(15.5, 30.2, 31.0)) for p in parts]
    assert together.shape == (3, 24, 40, 40)
    np.testing.assert_array_equal(together, np.stack(alone))
    np.testing.assert_allclose(together[0] + 1j * together[1], g.to_orthogonal(rho, shape_zyx=(24, 40, 40),
                                                                                origin_index=(15.5, 30.2, 31.0)),
                               atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        g.to_orthogonal(parts[:, :-1])


def test_the_peak_grid_stays_bounded_for_a_fine_rocking_step():
    from streamer.service.detector_scan import MAX_PEAK_GRID_VOXELS, peak_grid_step

    fine = DetectorGeometry(distance_m=0.5, rocking_step_deg=0.005, num_rocking_steps=200).binned(2)
    finest = float(min(np.linalg.norm(fine.q_basis_inv_nm, axis=0)))
    assert np.prod(fine.q_grid_shape(finest)) > 50 * MAX_PEAK_GRID_VOXELS  # 6e8 voxels at the finest step
    dq = peak_grid_step(fine)
    assert np.prod(fine.q_grid_shape(dq)) <= MAX_PEAK_GRID_VOXELS and dq < 5 * finest
    coarse = DetectorGeometry(rocking_step_deg=0.02, num_rocking_steps=64).binned(2)  # the demo's: unchanged
    assert peak_grid_step(coarse) == float(min(np.linalg.norm(coarse.q_basis_inv_nm, axis=0)))


def test_an_antiphase_boundary_keeps_its_amplitude_once_resampled():
    """A pi step across an oblique plane of a uniform plate on the sheared grid: interpolating the field opens a gap
    in its amplitude along the plane; to_lab interpolates the amplitude apart and keeps the step in the phase; a
    smooth object keeps the plain interpolation's phase, and its amplitude."""
    from streamer.analysis.scan import lab_grid, to_lab

    g = DetectorGeometry(roi_px=(64, 192, 64, 192), rocking_step_deg=0.03, num_rocking_steps=32).binned(2)
    semi = (50.0, 130.0, 150.0)
    smooth = _ellipsoid_on(g, semi, (0.02, 0.0, 0.0)).astype(np.complex64)
    z, y, x = g.real_space_points_nm()
    plane = 0.5 * z + 0.3 * y + 0.81 * x - 10.0  # oblique to every axis of both grids
    rho = (smooth * np.where(plane > 0, -1, 1)).astype(np.complex64)
    lab = lab_grid(g, np.abs(rho) > 0)
    moved = to_lab(g, lab, rho, support=np.abs(rho) > 0)
    plain = g.to_orthogonal(rho, voxel_nm=lab.voxel_nm, shape_zyx=lab.shape_zyx,
                            origin_index=tuple(np.array(g.center_index, float)))
    pts = np.stack(np.meshgrid(*[(np.arange(n) - n // 2) * lab.voxel_nm for n in lab.shape_zyx], indexing="ij"))
    inner = sum((p / (0.7 * a)) ** 2 for p, a in zip(pts, semi)) <= 1  # well inside the plate
    at_plane = inner & (np.abs(0.5 * pts[0] + 0.3 * pts[1] + 0.81 * pts[2] - 10.0) / np.linalg.norm([0.5, 0.3, 0.81])
                        < max(g.voxel_sizes_nm))
    assert at_plane.sum() > 50
    assert np.percentile(np.abs(plain)[at_plane], 10) < 0.6  # the gap the field's interpolation opens
    assert np.abs(moved.rho)[at_plane].min() > 0.95  # the amplitude kept (the plate is 1 inside)
    across = np.angle(moved.rho[1:] * np.conj(moved.rho[:-1]))[inner[1:] & inner[:-1]]
    assert np.abs(across).max() > 2.5  # the pi step is still there, between neighbours along z
    smooth_lab = to_lab(g, lab, smooth, support=np.abs(smooth) > 0).rho
    plain_smooth = g.to_orthogonal(smooth, voxel_nm=lab.voxel_nm, shape_zyx=lab.shape_zyx,
                                   origin_index=tuple(np.array(g.center_index, float)))
    np.testing.assert_allclose(np.angle(smooth_lab[inner] * np.conj(plain_smooth[inner])), 0, atol=1e-3)
    # the field interpolated across a phase ramp of 0.5 rad a detector voxel loses some amplitude too; kept apart, none
    assert np.abs(plain_smooth[inner]).min() < 0.985 and np.abs(smooth_lab[inner]).min() > 0.995
