import numpy as np
import pytest

from streamer.peak import fwhm, peak_metrics

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
