"""Preprocessing: binning, masks, centring (a roll), FFT-friendly sizes (masked padding), detector frames on a
geometry's ROI, and a clear refusal of bad data. Measured data are never cropped."""

import numpy as np
import pytest

from streamer.analysis.preprocess import (
    PreprocessConfig,
    bin_frames,
    fft_friendly_size,
    fill_masked,
    frames_on_roi,
    map_on_roi,
    peak_roll,
    prepare_frames,
    prepare_scan,
    prepare_volume,
)
from streamer.geometry import DetectorGeometry


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


@pytest.mark.parametrize("n, m", [(128, 128), (127, 128), (97, 100), (49, 50), (11, 12), (62, 64)])
def test_fft_friendly_size_up_and_even(n, m):
    assert fft_friendly_size(n, even=True, up=True) == m


def test_scan_is_binned_centred_padded_and_masked():
    stack = _peak_stack((40, 66, 64), centre=(18, 30, 36))  # 66 rows -> 33 binned: padded to 36
    bad = np.zeros(stack.shape[1:], bool)
    bad[10, 11] = True  # a dead pixel
    intensity, mask, info = prepare_scan(stack, bad_pixels=bad, unmeasured_frames=[3])
    z, y, x = intensity.shape  # lab order: rows (q_z), cols, theta
    assert (z, y, x) == (36, 32, 40)  # nothing cropped: 33 rows padded up to 36, the others kept
    assert all(n % 2 == 0 and fft_friendly_size(n) == n for n in (z, y, x))
    peak = np.unravel_index(np.argmax(intensity), intensity.shape)
    assert all(abs(p - n // 2) <= 1 for p, n in zip(peak, intensity.shape))
    assert info["binning"] == [2, 2] and info["output_shape"] == [z, y, x]
    assert mask.any() and intensity[mask].sum() == 0
    assert info["pad_zyx"][0] == [2, 1] and mask[:2].all() and mask[-1:].all()  # the padding is unmeasured
    frame3 = (3 + info["shift_zyx"][2]) % 40  # the unmeasured frame, after rolling the rocking axis
    assert mask[:, :, frame3].all() and mask[:, :, frame3].sum() == z * y
    assert intensity.sum() == pytest.approx(np.delete(stack, 3, axis=0).sum(), rel=1e-6)  # every count kept


def test_a_peak_one_plane_off_centre_keeps_all_128_planes():
    """Issue 16: centring used to crop such an axis to 120 planes (6% of the data) for a phase ramp."""
    stack = _peak_stack((128, 32, 32), centre=(65, 16, 16)).astype(np.float32)
    for data in (stack, np.transpose(stack, (1, 2, 0))):
        out, mask, info = (prepare_scan(data, config=PreprocessConfig(bin_rows=1, bin_cols=1)) if data is stack
                           else prepare_volume(data, q_axis=2))
        assert 128 in out.shape and info["output_shape"].count(128) == 1
        assert not mask.any() and out.sum() == pytest.approx(stack.sum(), rel=1e-6)
        axis = out.shape.index(128)
        profile = out.sum(axis=tuple(a for a in range(3) if a != axis))
        assert abs(int(np.argmax(profile)) - 64) <= 1  # rolled to the centre, not cut
        assert sorted(profile) == pytest.approx(sorted(stack.sum(axis=(1, 2))))  # the same 128 planes


def test_the_roll_goes_to_the_bright_core_and_ignores_masked_pixels():
    v = np.zeros((16, 16, 16), np.float32)
    v[3, 9, 12] = 10.0
    mask = np.zeros(v.shape, bool)
    assert peak_roll(v, mask) == (5, -1, -4)
    v[0, 0, 0] = 100.0  # a hot pixel, masked
    mask[0, 0, 0] = True
    assert peak_roll(v, mask) == (5, -1, -4)


def test_frames_saturation_dark_flat_and_hot_pixels_in_stack_order():
    stack = _peak_stack((24, 32, 32), centre=(12, 16, 16)).astype(np.float32) + 2
    stack[:, 4, 5] = 500.0  # hot in every frame
    stack[12, 16, 16] = 6e4  # at the count ceiling
    flat = np.ones((32, 32), np.float32)
    flat[20, 21] = 0.0  # a dead pixel in the flat
    flat[:, :16] = 0.5  # half the detector half as efficient
    dark = np.full((32, 32), 2.0, np.float32)
    cfg = PreprocessConfig(bin_rows=2, bin_cols=2, saturation_counts=6e4, hot_pixel_factor=10)
    out, mask, info = prepare_frames(stack, config=cfg, dark=dark, flat=flat)
    assert out.shape == mask.shape == (24, 16, 16)  # still (step, row, col)
    assert info["hot_pixels"] == 1 and info["saturated_pixels"] == 1
    assert mask[:, 2, 2].all() and mask[:, 10, 10].all() and mask[12, 8, 8] and not mask[11, 8, 8]
    clean = bin_frames(stack - 2, 2, 2)
    norm = flat[flat > 0].mean()  # the flat is relative: normalised to a mean efficiency of 1
    expected = clean * norm / np.where(np.arange(16) < 8, 0.5, 1.0)[None, None, :]
    np.testing.assert_allclose(out[~mask], expected[~mask], rtol=1e-5)
    assert (out[mask] == 0).all()


def test_frames_on_the_roi_of_a_detector_geometry():
    g = DetectorGeometry(detector_shape_px=(64, 64), roi_px=(8, 40, 16, 48), binning=2, num_rocking_steps=8)
    whole = np.arange(8 * 64 * 64, dtype=np.float32).reshape(8, 64, 64)
    cut, level = frames_on_roi(whole, g)
    assert level == 1 and cut.shape == (8, 32, 32) and cut[0, 0, 0] == whole[0, 8, 16]
    assert frames_on_roi(whole[:, 8:40, 16:48], g)[1] == 1
    assert frames_on_roi(bin_frames(whole[:, 8:40, 16:48], 2, 2), g)[1] == 2  # already binned as the geometry says
    with pytest.raises(ValueError, match=r"frames of 30x32 pixels do not fit the geometry: detector_shape_px \[64, 64\], "
                                         r"roi_px \[8, 40, 16, 48\]"):
        frames_on_roi(whole[:, :30, :32], g)
    with pytest.raises(ValueError, match="num_rocking_steps is 8"):
        frames_on_roi(whole[:5], g)
    bad = np.zeros((64, 64), bool)
    bad[9, 17] = True
    assert map_on_roi(bad, g, 1, what="map")[1, 1] and map_on_roi(bad, g, 2, what="map")[0, 0]
    with pytest.raises(ValueError, match="detector_shape_px"):
        map_on_roi(np.zeros((10, 10)), g, 1, what="the bad-pixel map")


def test_masked_pixels_are_filled_from_their_neighbours_for_the_widths():
    stack = np.ones((2, 16, 16), np.float32) * np.linspace(1, 2, 16)[None, None, :]
    mask = np.zeros(stack.shape, bool)
    mask[:, :, 7:9] = True  # a two-pixel gap
    filled = fill_masked(np.where(mask, 0, stack), mask)
    np.testing.assert_allclose(filled[:, 4:12, 7:9], stack[:, 4:12, 7:9], rtol=0.03)
    np.testing.assert_allclose(filled[~mask], stack[~mask], rtol=1e-6)  # measured pixels untouched


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
    assert out.shape == (48, 40, 48) and info["q_axis"] == 2  # q first; 44 padded up to 48, not cut to 40
    assert info["pad_zyx"] == [[0, 0], [0, 0], [2, 2]] and mask[:, :, :2].all() and not mask[:, :, 2:-2].any()
    with pytest.raises(ValueError, match="mask has shape"):
        prepare_volume(vol, mask=np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match="q axis"):
        prepare_volume(vol, q_axis=3)


def test_an_i0_monitor_scales_each_frame_to_the_mean_and_a_frame_without_beam_is_masked():
    from streamer.analysis.preprocess import PreprocessConfig, prepare_frames

    base = np.full((8, 8, 8), 100.0, np.float32)
    monitor = np.array([1.0, 2.0, 0.5, 1.0, 0.0, 1.5, 1.0, 1.0])
    counts = base * np.where(monitor > 0, monitor, 1.0)[:, None, None]  # the beam's intensity varied
    cfg = PreprocessConfig(bin_rows=1, bin_cols=1, centre=False, fft_friendly=False)
    out, mask, info = prepare_frames(counts, config=cfg, monitor=monitor)
    good = monitor > 0
    assert np.allclose(out[good], 100.0 * monitor[good].mean())  # every frame as if at the mean I0
    assert mask[4].all() and not mask[good].any() and info["monitor"]["frames_without_beam"] == [4]
    with pytest.raises(ValueError, match="monitor has 5 readings, the scan 8 frames"):
        prepare_frames(counts, config=cfg, monitor=monitor[:5])


def test_detector_gaps_in_a_volume_given_without_its_mask_are_found_but_not_a_fringe_minimum():
    """Two empty planes side by side through the peak are a detector gap (masked and counted); a single
    empty plane at a fringe minimum, and the empty far field, are data."""
    from streamer.analysis.preprocess import PreprocessConfig, prepare_volume, unmeasured_lines

    n = 32
    z, y, x = np.ogrid[0:n, 0:n, 0:n]
    r2 = (z - 16) ** 2 + (y - 16) ** 2 + (x - 16) ** 2
    volume = np.random.default_rng(0).poisson(5e4 * np.exp(-r2 / 40.0) * np.sinc((x - 16) / 4.0) ** 2).astype(float)
    assert np.all(volume[:, :, 20] == 0)  # the sinc's zero: one empty plane between counting ones
    volume[:, 9:11, :] = 0  # a gap two rows wide
    found = unmeasured_lines(volume, 0, 100.0)
    assert found[9:11].any() and not found[:9].any() and not found[11:].any()
    _, mask, info = prepare_volume(volume, config=PreprocessConfig(centre=False, fft_friendly=False))
    assert mask[:, 9:11, :].any()
    assert not mask[:, :9].any() and not mask[:, 11:].any()  # the fringe's empty plane x = 20 among them
    assert info["unmeasured_voxels_found"] == int(mask.sum())
    _, mask_off, info_off = prepare_volume(volume, config=PreprocessConfig(centre=False, fft_friendly=False,
                                                                          unmeasured_min_counts=0))
    assert not mask_off.any() and "unmeasured_voxels_found" not in info_off


def test_a_gap_in_the_frames_given_without_a_bad_pixel_mask_is_masked():
    from streamer.analysis.preprocess import PreprocessConfig, prepare_frames

    t, r, c = 16, 24, 24
    steps, rows, cols = np.ogrid[0:t, 0:r, 0:c]
    stack = np.random.default_rng(1).poisson(2e3 * np.exp(-((steps - 8) ** 2 + (rows - 12) ** 2 + (cols - 12) ** 2) / 30.0))
    stack = stack.astype(np.float32)
    stack[:, :, 13:16] = 0  # a chip gap, three columns wide
    _, mask, info = prepare_frames(stack, config=PreprocessConfig(bin_rows=1, bin_cols=1))
    assert mask[:, 6:18, 13:16].all() and not mask[:, :, :13].any() and not mask[:, :, 16:].any()
    assert info["unmeasured_pixels_found"] == int(mask[0].sum())


def test_hot_lines_in_a_volume_are_masked_and_the_peak_is_not():
    """A hot pixel counts in every frame: in a volume given without a mask, a steady line far above its
    neighbours; lines through the peak rise and fall and stay."""
    from streamer.analysis.preprocess import PreprocessConfig, prepare_volume

    n = 32
    z, y, x = np.ogrid[0:n, 0:n, 0:n]
    rng = np.random.default_rng(2)
    volume = rng.poisson(1e5 * np.exp(-((z - 16) ** 2 + (y - 16) ** 2 + (x - 16) ** 2) / 8.0)
                         * np.sinc((z - 16) / 3.0) ** 2 + 0.2).astype(float)
    volume[:, 4, 25] += rng.poisson(300, n)  # hot along axis 0
    volume[7, :, 3] += rng.poisson(300, n)  # hot along axis 1
    _, mask, info = prepare_volume(volume, config=PreprocessConfig(centre=False, fft_friendly=False,
                                                                   hot_pixel_factor=10))
    assert mask[:, 4, 25].all() and mask[7, :, 3].all()
    assert info["hot_voxels"] == int(mask.sum()) == 2 * n
    assert not mask[10:22, 10:22, 10:22].any()


def test_the_3x3_median_is_scipys_median_filter_with_edges_repeated(rng):
    from scipy import ndimage

    from streamer.analysis.preprocess import median_3x3

    for image in (rng.poisson(5.0, (17, 23)).astype(float), rng.random((4, 3)), np.arange(12.0).reshape(3, 4)):
        np.testing.assert_array_equal(median_3x3(image), ndimage.median_filter(image, size=3, mode="nearest"))
