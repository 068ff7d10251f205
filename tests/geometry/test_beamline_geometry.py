"""The geometry built from what a beamline knows, checked against values worked by hand (docs/geometry.md)."""

import math

import numpy as np
import pytest

from streamer.geometry import DetectorGeometry, from_dict
from streamer.geometry.beamline import (
    BeamlineGeometry,
    Lattice,
    Reflection,
    Rocking,
    detector_geometry,
)
from streamer.settings import ConfigError

HC_KEV_NM = 1.2398419843  # h c (CODATA 2018), keV nm


def example(**changes) -> BeamlineGeometry:
    """docs/geometry.md's worked example: 9 keV, 0.5 m, 55 um pixels, a 256 x 256 frame, d = 0.55 nm,
    200 frames 0.005 deg apart."""
    fields = {"energy_kev": 9.0, "distance_m": 0.5, "pixel_um": 55.0, "detector": {"shape_px": [256, 256]},
                  "reflection": {"d_spacing_nm": 0.55}, "rocking_step_deg": 0.005, "num_frames": 200}
    return BeamlineGeometry(**{**fields, **changes})


def beam_frame(g: DetectorGeometry, q_lab: np.ndarray) -> np.ndarray:
    """Lab (z, y, x) components back to the beam frame (x downstream, y up, z = x cross y)."""
    return g.lab_from_beam.T @ q_lab


def test_the_worked_example_of_docs_geometry_by_hand():
    g = example().geometry()
    # by hand (docs/geometry.md), each from the formula and as the number the page prints
    wavelength = HC_KEV_NM / 9.0
    assert wavelength == pytest.approx(0.137760, abs=1e-6)
    theta = math.asin(wavelength / (2 * 0.55))
    assert math.degrees(theta) == pytest.approx(7.1944, abs=1e-4)
    assert g.theta_bragg_deg == pytest.approx(7.1944, abs=1e-4)
    assert g.gamma_deg == pytest.approx(14.3888, abs=1e-4) and g.delta_deg == 0.0  # vertical plane, arm at 2 theta
    q = 2 * math.pi / 0.55
    assert q == pytest.approx(11.4240, abs=1e-4) and g.q_bragg_inv_nm == pytest.approx(q, rel=1e-6)
    k = 2 * math.pi / wavelength
    dq_pixel = k * 55e-6 / 0.5  # k p / D
    dq_rock = q * math.radians(0.005)  # |q| dtheta
    assert dq_pixel == pytest.approx(5.0171e-3, abs=1e-7) and dq_rock == pytest.approx(9.969e-4, abs=1e-7)
    b = np.linalg.norm(g.q_basis_inv_nm, axis=0)  # q step per (frame, row, column)
    np.testing.assert_allclose(b, [dq_rock, dq_pixel, dq_pixel], rtol=1e-4)
    voxel_det = wavelength * 0.5 / (256 * 55e-6)  # lambda D / (N p), nm
    voxel_rock = wavelength / (2 * 200 * math.sin(theta) * math.radians(0.005))  # lambda / (2 N sin(theta) dtheta)
    assert voxel_det == pytest.approx(4.892, abs=1e-3) and voxel_rock == pytest.approx(31.51, abs=1e-2)
    np.testing.assert_allclose(g.voxel_sizes_nm, [voxel_rock, voxel_det, voxel_det], rtol=1e-4)
    # the real-space grid is sheared: rows and frames lie in the scattering plane at 90 - theta to each other,
    # so their conjugate steps are longer by 1 / cos(theta); columns are normal to both
    edges = np.linalg.norm(g.real_basis_nm, axis=0)
    np.testing.assert_allclose(edges, [voxel_rock / math.cos(theta), voxel_det / math.cos(theta), voxel_det], rtol=1e-4)
    assert edges[:2] == pytest.approx([31.76, 4.931], abs=1e-2)
    a = g.real_basis_nm / edges
    assert abs(a[:, 0] @ a[:, 1]) == pytest.approx(math.sin(theta), abs=1e-4)  # cos(90 - theta)
    fov = np.array(g.stack_shape) * np.array(g.voxel_sizes_nm)  # N voxels = 2 pi / (q step)
    np.testing.assert_allclose(fov, [2 * math.pi / dq_rock, 2 * math.pi / dq_pixel, 2 * math.pi / dq_pixel], rtol=1e-4)
    assert fov == pytest.approx([6302, 1252.4, 1252.4], abs=1.0)
    oversampling = fov / 200.0  # a 200 nm particle
    assert oversampling == pytest.approx([31.51, 6.26, 6.26], abs=0.01)
    assert min(oversampling) > 2  # phase retrieval needs > 2 along every axis
    # binned 2 x 2 (110 um pixels, 128 x 128): the resolution stays, the field of view and oversampling halve
    binned = example(detector={"shape_px": [256, 256], "binning": 2}).geometry()
    assert binned.frame_shape == (128, 128)
    assert binned.voxel_sizes_nm[1:] == pytest.approx([voxel_det] * 2, rel=1e-4)
    assert 128 * binned.voxel_sizes_nm[1] / 200 == pytest.approx(3.13, abs=0.01)


def test_binning_and_roi_give_the_frames_and_a_coarser_reciprocal_pixel():
    g = example(detector={"shape_px": [516, 516], "roi_px": [130, 386, 2, 514], "binning": 2}).geometry()
    assert g.frame_shape == (128, 256) and g.stack_shape == (200, 128, 256)
    assert g.roi_px == (130, 386, 2, 514) and g.binning == 2
    k = 2 * math.pi / (HC_KEV_NM / 9.0)
    b = np.linalg.norm(g.q_basis_inv_nm, axis=0)
    assert b[1:] == pytest.approx([k * 110e-6 / 0.5] * 2, rel=1e-4)  # binned pitch 110 um
    # the field of view along the detector is 2 pi / (k p_binned / D), whatever the crop
    assert g.voxel_sizes_nm[1] * 128 == pytest.approx(2 * math.pi / b[1], rel=1e-9)
    with pytest.raises(ConfigError, match="detector: roi_px .* whole number of binning 2"):
        example(detector={"shape_px": [516, 516], "roi_px": [130, 387, 2, 514], "binning": 2})
    with pytest.raises(ConfigError, match="roi_px .* inside shape_px"):
        example(detector={"shape_px": [256, 256], "roi_px": [0, 300, 0, 256]})
    with pytest.raises(ConfigError, match="detector.binning must be greater than or equal to 1"):
        example(detector={"shape_px": [256, 256], "binning": 0})


def test_d_spacing_from_hkl_and_lattice_by_the_textbook_formulas():
    a, c = 0.2889, 1.1  # P2 layered oxide, hexagonal
    hexagonal = Lattice(a_nm=a, c_nm=c, gamma_deg=120.0)

    def hex_d(h, k, l):  # 1 / d^2 = 4/3 (h^2 + h k + k^2) / a^2 + l^2 / c^2
        return 1 / math.sqrt(4 / 3 * (h * h + h * k + k * k) / a**2 + l * l / c**2)

    assert hexagonal.d_spacing_nm((0, 0, 2)) == pytest.approx(0.55, rel=1e-12)
    assert hexagonal.d_spacing_nm((1, 0, 0)) == pytest.approx(a * math.sqrt(3) / 2, rel=1e-12)
    assert hexagonal.d_spacing_nm((1, 1, 0)) == pytest.approx(a / 2, rel=1e-12)
    assert hexagonal.d_spacing_nm((1, 0, 2)) == pytest.approx(hex_d(1, 0, 2), rel=1e-12)
    assert Lattice(a_nm=0.40782).d_spacing_nm((1, 1, 1)) == pytest.approx(0.40782 / math.sqrt(3), rel=1e-12)  # gold
    # monoclinic (unique axis b):
    # 1/d^2 = (h^2/a^2 + k^2 sin^2(beta)/b^2 + l^2/c^2 - 2 h l cos(beta)/(a c)) / sin^2(beta)
    am, bm, cm, beta = 0.5, 0.6, 0.7, math.radians(100.0)
    mono = Lattice(a_nm=am, b_nm=bm, c_nm=cm, beta_deg=100.0)
    h, k, l = 1, 2, 1
    inv_d2 = (h * h / am**2 + k * k * math.sin(beta) ** 2 / bm**2 + l * l / cm**2
              - 2 * h * l * math.cos(beta) / (am * cm)) / math.sin(beta) ** 2
    assert mono.d_spacing_nm((h, k, l)) == pytest.approx(1 / math.sqrt(inv_d2), rel=1e-12)
    # the geometry takes the reflection's d from hkl and lattice
    g = example(reflection={"hkl": [0, 0, 2], "lattice": {"a_nm": a, "c_nm": c, "gamma_deg": 120.0}}).geometry()
    assert g.d_spacing_nm == pytest.approx(0.55, rel=1e-12)
    with pytest.raises(ConfigError, match=r"give d_spacing_nm or lattice \(with hkl\), not both"):
        Reflection(d_spacing_nm=0.55, hkl=[0, 0, 2], lattice={"a_nm": a})
    with pytest.raises(ConfigError, match="lattice needs hkl"):
        Reflection(lattice={"a_nm": a})
    with pytest.raises(ConfigError, match=r"hkl\[1\] must be a valid integer"):
        Reflection(hkl=[0, 0.5, 2])
    with pytest.raises(ConfigError, match="make no unit cell"):
        Lattice(a_nm=0.3, alpha_deg=100, beta_deg=100, gamma_deg=170)
    with pytest.raises(ConfigError, match="reflection: give d_spacing_nm, or lattice with hkl"):
        example(reflection={"hkl": [0, 0, 2]}).geometry()
    with pytest.raises(ConfigError, match="below half the wavelength"):
        example(reflection={"d_spacing_nm": 0.06}).geometry()


@pytest.mark.parametrize("plane, arm, normal", [("vertical", "gamma_deg", (0, 0, 1)),
                                               ("horizontal", "delta_deg", (0, -1, 0))])
def test_two_theta_in_a_scattering_plane_and_positive_steps_raise_the_incidence(plane, arm, normal):
    g = example(detector={"shape_px": [256, 256], "scattering_plane": plane}).geometry()
    two_theta = 2 * math.degrees(math.asin(HC_KEV_NM / 9.0 / 1.1))
    assert getattr(g, arm) == pytest.approx(two_theta, rel=1e-9)
    assert g.delta_deg + g.gamma_deg == pytest.approx(two_theta, rel=1e-9)  # the other angle is 0
    # the default axis is the scattering plane's normal ki x kf
    assert g.rocking_axis == pytest.approx(normal, abs=1e-12)
    # at the central frame the planes sit at incidence theta (q has -sin(theta) along the beam); the
    # sample frame's q at frame N//2 + 10 is the central q turned back by 10 steps: a crystal found there
    # is one whose incidence is 10 steps lower, which a positive step of 10 x 0.005 deg brings to theta
    c = g.center_index
    for frames in (0, 10, -20):
        q = beam_frame(g, g.q_lab(c[0] + frames, c[1], c[2]))
        incidence = math.degrees(math.asin(-q[0] / np.linalg.norm(q)))
        assert incidence == pytest.approx(two_theta / 2 - frames * 0.005, abs=1e-9)
        if plane == "vertical":
            assert abs(q[2]) < 1e-9  # q stays in the vertical plane
        else:
            assert abs(q[1]) < 1e-9


def test_the_exit_ray_at_the_arm_angles_hits_the_direct_beam_pixel():
    wavelength = HC_KEV_NM / 9.0
    # arm at delta 5 deg, gamma 13.4 deg: 2 theta from cos(2 theta) = cos(delta) cos(gamma)
    two_theta = math.acos(math.cos(math.radians(5.0)) * math.cos(math.radians(13.4)))
    d = wavelength / (2 * math.sin(two_theta / 2))
    g = example(detector={"shape_px": [256, 256], "direct_beam_px": [100.0, 140.0], "delta_deg": 5.0,
                          "gamma_deg": 13.4, "roi_px": [40, 200, 60, 220]},
                reflection={"d_spacing_nm": d}).geometry()
    assert (g.delta_deg, g.gamma_deg, g.center_px) == (5.0, 13.4, (100.0, 140.0))
    k = 2 * math.pi / wavelength
    step = g.center_index[0]
    q = np.linalg.norm(g.q_lab(step, 100 - 40, 140 - 60))  # raw pixel (100, 140) in the frame
    assert q == pytest.approx(2 * math.pi / d, rel=1e-9)
    # one pixel down the detector, the exit ray is p / D radians lower; with gamma alone, 2 theta drops by p / D
    v = example(detector={"shape_px": [256, 256], "direct_beam_px": [100.0, 140.0], "gamma_deg": 14.0},
                reflection={"d_spacing_nm": wavelength / (2 * math.sin(math.radians(7.0)))}).geometry()
    q_below = np.linalg.norm(v.q_lab(step, 101, 140))
    assert q_below == pytest.approx(2 * k * math.sin((math.radians(14.0) - 55e-6 / 0.5) / 2), rel=1e-7)


def test_scan_values_and_the_motor_centre_go_into_the_geometry():
    g = example(rocking={"motor": "eta", "axis": "-z"}, rocking_step_deg=-0.01, num_frames=64,
                rocking_center_deg=31.25).geometry()
    assert g.rocking_axis == (0.0, 0.0, -1.0) and g.rocking_step_deg == -0.01 and g.num_rocking_steps == 64
    assert g.theta_bragg_deg == 31.25  # the motor's position at frame 32
    assert g.rocking_index(31.25) == 32 and g.rocking_index(31.25 - 0.01 * 5) == pytest.approx(37)
    assert Rocking(axis=[0, 2, 0]).vector(np.array([1.0, 0, 0])) == pytest.approx([0, 1, 0])
    assert from_dict(g.to_dict()) == g  # what goes into the start document comes back
    assert detector_geometry(**dict(example())) == example().geometry()


def test_bad_input_is_refused_naming_the_field():
    cases = [
        ({"rocking_step_deg": None}, "missing rocking_step_deg"),
        ({"num_frames": None, "detector": {}}, "missing num_frames, detector.shape_px"),
        ({"rocking_step_deg": 0.0}, "rocking_step_deg must be non-zero"),
        ({"num_frames": 1}, "num_frames must be greater than or equal to 2"),
        ({"energy_kev": -9.0}, "energy_kev must be greater than 0"),
        ({"detector": {"shape_px": [4, 256]}}, r"detector.shape_px\[0\] must be greater than or equal to 8"),
        ({"detector": {"shape_px": [256, 256], "two_theta_deg": 14.0, "gamma_deg": 14.0}}, "not both"),
        ({"detector": {"shape_px": [256, 256], "scattering_plane": "diagonal"}}, "detector.scattering_plane"),
        ({"rocking": {"axis": "w"}}, "rocking.axis: must be 'normal'"),
        ({"rocking": {"axis": [0, 0, 0]}}, "rocking.axis: .* not all zero"),
        ({"rocking": {"axis": "normal"}, "detector": {"shape_px": [256, 256], "delta_deg": 0.0, "gamma_deg": 0.0},
              "reflection": {"d_spacing_nm": 0.55}}, "rocking.axis 'normal' needs a detector arm off the beam"),
        ({"rocking": {"axis": [0.125, -0.992, 0.01]}}, "rocking_axis is .*parallel to q"),
        ({"unknown_key": 1}, "unknown key unknown_key"),
    ]
    for changes, message in cases:
        with pytest.raises(ConfigError, match=message):
            example(**changes).geometry()


def test_a_reflection_off_the_frames_is_refused():
    # 2 theta = 20 deg for a reflection at 14.39 deg: 256 pixels at 0.5 m see 2 theta +- 0.8 deg only
    seen = r"2 theta 14.389 deg\) is off the frames, which see 2 theta 19.200..20.82.*detector"
    with pytest.raises(ConfigError, match=seen):
        example(detector={"shape_px": [256, 256], "two_theta_deg": 20.0}).geometry()
    # 0.5 deg off still lands on the chip (half width 128 x 55 um / 0.5 m = 0.807 deg)
    g = example(detector={"shape_px": [256, 256], "two_theta_deg": 14.389 + 0.5}).geometry()
    assert g.gamma_deg == pytest.approx(14.889)
    with pytest.raises(ConfigError, match="off the frames"):  # a crop that leaves the peak out
        example(detector={"shape_px": [256, 256], "two_theta_deg": 14.389 + 0.5, "roi_px": [0, 64, 0, 256]}).geometry()
