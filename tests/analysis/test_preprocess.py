"""Preprocessing: binning, masks, centring, FFT-friendly sizes, and a clear refusal of bad data."""

import numpy as np
import pytest

from streamer.analysis.preprocess import (
    PreprocessConfig,
    bin_frames,
    fft_friendly_size,
    prepare_scan,
    prepare_volume,
)


def _peak_stack(shape=(40, 64, 64), centre=(18, 30, 36), seed=0):
    t, r, c = np.indices(shape)
    g = 1e4 * np.exp(-((t - centre[0]) ** 2 / 20 + (r - centre[1]) ** 2 / 30 + (c - centre[2]) ** 2 / 40))
    return np.random.default_rng(seed).poisson(g).astype(np.uint32)


def test_binning_sums_pixels_and_keeps_the_rocking_axis():
    stack = np.arange(2 * 6 * 4, dtype=np.float32).reshape(2, 6, 4)
    b = bin_frames(stack, 2, 2)
    assert b.shape == (2, 3, 2)
    assert b[0, 0, 0] == stack[0, :2, :2].sum() and b.sum() == stack.sum()


@pytest.mark.parametrize("n, m", [(128, 128), (127, 125), (97, 96), (49, 48), (11, 10)])
def test_fft_friendly_size(n, m):
    assert fft_friendly_size(n) == m


def test_scan_is_binned_centred_cropped_and_masked():
    stack = _peak_stack()
    bad = np.zeros(stack.shape[1:], bool)
    bad[10, 11] = True  # a dead pixel
    intensity, mask, info = prepare_scan(stack, bad_pixels=bad, unmeasured_frames=[3])
    z, y, x = intensity.shape  # lab order: rows (q_z), cols, theta
    assert all(n % 2 == 0 and fft_friendly_size(n) == n for n in (z, y, x))
    peak = np.unravel_index(np.argmax(intensity), intensity.shape)
    assert all(abs(p - n // 2) <= 1 for p, n in zip(peak, intensity.shape))
    assert info["binning"] == [2, 2] and info["output_shape"] == [z, y, x]
    assert mask.any() and intensity[mask].sum() == 0
    frame3 = 3 - info["crop_zyx"][2][0]  # the unmeasured frame, after cropping the rocking axis
    assert 0 <= frame3 < x and mask[:, :, frame3].all()
    assert np.isclose(intensity.sum(), stack.sum(), rtol=0.2)  # cropping keeps the peak


def test_hot_pixels_and_saturation():
    stack = _peak_stack().astype(np.float32)
    stack[:, 5, 50] = 5e4  # hot in every frame
    _, mask, info = prepare_scan(stack, config=PreprocessConfig(hot_pixel_factor=20, bin_rows=1, bin_cols=1,
                                                                centre=False, fft_friendly=False))
    assert info["hot_pixels"] >= 1 and mask[5, 50, :].all()
    with pytest.raises(ValueError, match="saturated"):
        prepare_scan(np.full((16, 16, 16), 100.0), config=PreprocessConfig(saturation_counts=100))


@pytest.mark.parametrize("data, match", [
    (np.ones((16, 16)), "must be 3D"),
    (np.zeros((16, 16, 16)), "empty"),
    (np.full((16, 16, 16), np.nan), "NaN"),
    (-np.ones((16, 16, 16)), "negative"),
    (np.ones((4, 16, 16)), "too small"),
    (np.ones((16, 16, 16), complex), "real counts"),
])
def test_bad_data_is_refused_by_name(data, match):
    with pytest.raises(ValueError, match=match):
        prepare_scan(data)


def test_volume_from_elsewhere_puts_q_first_and_checks_the_mask():
    vol = _peak_stack((40, 44, 48), centre=(20, 22, 24)).astype(np.float32)
    out, mask, info = prepare_volume(vol, q_axis=2)
    assert out.shape[0] == 48 and info["q_axis"] == 2 and not mask.any()
    with pytest.raises(ValueError, match="mask has shape"):
        prepare_volume(vol, mask=np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match="q axis"):
        prepare_volume(vol, q_axis=3)
