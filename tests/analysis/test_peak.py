import numpy as np
import pytest

from streamer.analysis.peak import fwhm, peak_metrics

FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))


@pytest.mark.parametrize("sigma", [1.1, 1.5, 3.0, 6.0])
def test_fwhm_of_a_gaussian(sigma):
    x = np.arange(101) - 50.3
    assert fwhm(np.exp(-x**2 / (2 * sigma**2))) == pytest.approx(FWHM_PER_SIGMA * sigma, rel=0.01)


def test_peak_widths_along_and_perpendicular_to_q_of_an_analytic_peak():
    sz, sy, sx = 2.0, 4.0, 6.0
    z, y, x = np.ogrid[-32:32, -32:32, -32:32]
    intensity = 1e4 * np.exp(-z**2 / (2 * sz**2) - y**2 / (2 * sy**2) - x**2 / (2 * sx**2))
    dq = (0.01, 0.02, 0.03)
    m = peak_metrics(intensity, pixel_inv_nm=dq)
    assert m["width_parallel"] == pytest.approx(FWHM_PER_SIGMA * sz * 0.01, rel=0.01)
    assert m["width_perpendicular_y"] == pytest.approx(FWHM_PER_SIGMA * sy * 0.02, rel=0.01)
    assert m["width_perpendicular_x"] == pytest.approx(FWHM_PER_SIGMA * sx * 0.03, rel=0.01)
    assert m["width_perpendicular"] == pytest.approx((m["width_perpendicular_y"] + m["width_perpendicular_x"]) / 2)
    np.testing.assert_allclose(m["center_of_mass_px"], [32, 32, 32], atol=1e-6)


def test_broader_peak_gives_larger_width_with_poisson_noise(rng):
    z, y, x = np.ogrid[-24:24, -24:24, -24:24]
    narrow = rng.poisson(500 * np.exp(-(z**2 + y**2 + x**2) / 8.0))
    broad = rng.poisson(500 * np.exp(-z**2 / 8.0 - (y**2 + x**2) / 32.0))
    a = peak_metrics(narrow, pixel_inv_nm=(1, 1, 1))
    b = peak_metrics(broad, pixel_inv_nm=(1, 1, 1))
    assert b["width_perpendicular"] / a["width_perpendicular"] == pytest.approx(2.0, rel=0.1)
    assert b["width_parallel"] == pytest.approx(a["width_parallel"], rel=0.1)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4)), "3D"),
    (np.full((4, 4, 4), np.nan), "NaN"),
    (np.zeros((4, 4, 4)), "no counts"),
])
def test_bad_intensity_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        peak_metrics(bad, pixel_inv_nm=(1, 1, 1))


@pytest.mark.parametrize("counts", [2e3, 2e5])
def test_width_error_matches_the_scatter_of_poisson_repeats(counts, rng):
    from streamer.analysis.peak import fwhm_with_error

    x = np.arange(64) - 31.7
    mean = counts * np.exp(-x**2 / (2 * 3.0**2)) / (np.sqrt(2 * np.pi) * 3.0)
    results = np.array([fwhm_with_error(rng.poisson(mean).astype(float)) for _ in range(200)])
    scatter, predicted = results[:, 0].std(), results[:, 1].mean()
    assert predicted == pytest.approx(scatter, rel=0.35)


def test_fringe_visibility_of_a_plate_and_of_a_smooth_peak():
    from streamer.analysis.peak import fringe_visibility

    q = np.arange(-40, 41) + 0.2
    plate = np.sinc(q / 8.0) ** 2
    assert fringe_visibility(1e4 * plate) == pytest.approx(1.0, abs=0.05)
    assert 0.2 < fringe_visibility(1e4 * plate + 200.0) < 0.8  # background washes the fringes out
    assert np.isnan(fringe_visibility(np.exp(-q**2 / 50)))


def test_peak_metrics_carry_errors_visibility_and_projections():
    from streamer.analysis.peak import projected_images

    z, y, x = np.ogrid[-16:16, -16:16, -16:16]
    intensity = 1e5 * np.sinc((z + 0.3) / 6.0) ** 2 * np.exp(-(y**2 + x**2) / 18.0)
    m = peak_metrics(intensity, pixel_inv_nm=(0.01, 0.01, 0.01))
    assert 0 < m["width_parallel_error"] < 0.1 * m["width_parallel"]
    assert 0 < m["width_perpendicular_error"] < 0.1 * m["width_perpendicular"]
    assert m["fringe_visibility"] > 0.8 and np.isnan(m["fringe_visibility_zyx"][1])
    images = projected_images(intensity)
    assert images["detector_zy"].shape == (32, 32)
    np.testing.assert_allclose(images["detector_zy"], intensity.mean(axis=2))


def test_a_uniform_change_of_c_is_read_back_from_the_peak_position_within_1e_4():
    """A simulated crystal whose c grows by 3e-3 (its Bragg peak moves to 2 pi / d with d = c / 2): the
    change read from the two peaks' centres of mass, through |q| at each, is 3e-3 within 1e-4."""
    import math

    from streamer.analysis.peak import lattice_change, peak_metrics, peak_q_inv_nm

    n, dq, c_nm = 64, 0.004, 1.10
    q_centre = 4 * math.pi / c_nm  # the grid is set for the reference (002)
    rng = np.random.default_rng(3)

    def scan(c):
        qz = (np.arange(n) - n // 2) * dq + q_centre
        q_peak = 4 * math.pi / c
        z = np.exp(-((qz - q_peak) ** 2) / (2 * (3 * dq) ** 2))[:, None, None]
        yx = np.exp(-((np.arange(n) - n // 2) ** 2) / (2 * 2.0**2))
        mean = 2e4 * z * yx[None, :, None] * yx[None, None, :]
        return rng.poisson(mean).astype(float)

    peaks = [peak_metrics(scan(c), pixel_inv_nm=(dq, dq, dq)) for c in (c_nm, c_nm * (1 + 3e-3))]
    (q0, e0), (q1, e1) = (peak_q_inv_nm(p, (n, n, n), q_center_inv_nm=(q_centre, 0, 0), dq_inv_nm=(dq, dq, dq))
                          for p in peaks)
    change = lattice_change(q1, e1, q0, e0)
    assert change["c_change_rel"] == pytest.approx(3e-3, abs=1e-4)
    assert 0 < change["c_change_rel_error"] < 1e-4
    assert abs(change["c_change_rel"] - 3e-3) < 5 * change["c_change_rel_error"] + 2e-5
