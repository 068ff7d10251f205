"""The simulated Timepix: Poisson counts, background, defect map, chip gaps, ceiling, reproducibility."""

import numpy as np
import pytest

from sim.detector import TIMEPIX_CEILING, Timepix, TimepixSpec


def test_counts_are_poisson_with_dark_counts_added():
    spec = TimepixSpec(hot_pixel_fraction=0.0, dead_pixel_fraction=0.0, dark_counts_per_s=0.04)
    det = Timepix(spec, seed=5)
    signal = np.zeros(spec.shape_px, np.float32)
    signal[:64] = 3.0  # bright enough to be drawn pixel by pixel
    signal[64:128] = 0.2  # faint: drawn as one shared Poisson total
    frames = np.array([det.read(signal, 0.5) for _ in range(60)])
    assert frames.dtype == np.uint32 and frames.shape == (60, 256, 256)
    for rows, mean in ((slice(0, 64), 3.02), (slice(64, 128), 0.22), (slice(128, 256), 0.02)):
        counts = frames[:, rows].astype(float)
        assert counts.mean() == pytest.approx(mean, rel=0.03)
        assert counts.var() == pytest.approx(mean, rel=0.05)  # Poisson: variance = mean
    # faint pixels: P(0) = exp(-mean), as for independent Poisson pixels
    assert (frames[:, 64:128] == 0).mean() == pytest.approx(np.exp(-0.22), rel=0.02)


def test_hot_dead_and_gap_pixels_and_the_count_ceiling():
    quad = TimepixSpec(chips=4, hot_pixel_fraction=1e-3, dead_pixel_fraction=2e-3, count_ceiling=500)
    assert quad.shape_px == (516, 516)
    gap = quad.gap_mask()
    assert gap.sum() == 516 * 4 * 2 - 16 and gap[256:260].all() and gap[:, 256:260].all()
    hot, dead = quad.defect_maps()
    assert 100 < hot.sum() < 450 and 250 < dead.sum() < 800 and not (hot & dead).any()
    det = Timepix(quad, seed=1)
    signal = np.full(quad.shape_px, 50.0, np.float32)
    signal[:10, :10] = 1e5  # far over the ceiling
    frame = det.read(signal, 1.0)
    assert (frame[gap] == 0).all() and (frame[dead] == 0).all()
    assert (frame[:10, :10][~dead[:10, :10]] == 500).all()
    live_not_hot = ~(gap | dead | hot)
    assert frame[hot].mean() > frame[live_not_hot].mean() + 100  # 200 counts/s on top of the signal
    assert frame.max() <= 500
    assert TimepixSpec().count_ceiling == TIMEPIX_CEILING == 11810
    # the defect map belongs to the detector: a new run (seed) keeps it
    assert (Timepix(quad, seed=9).read(signal, 1.0)[dead] == 0).all()


def test_same_seed_same_frames_bit_for_bit():
    signal = np.random.default_rng(0).exponential(2.0, (256, 256)).astype(np.float32)
    runs = []
    for _ in range(2):
        det = Timepix(seed=11)
        runs.append([det.read(signal * k, 0.7) for k in (1, 2, 3)])
    for x, y in zip(*runs):
        assert np.array_equal(x, y)
    assert not np.array_equal(runs[0][0], runs[0][1] // 2)
    assert not np.array_equal(Timepix(seed=11).read(signal, 0.7), Timepix(seed=12).read(signal, 0.7))


@pytest.mark.parametrize("kwargs, message", [
    ({"chips": 2}, "chips"), ({"dark_counts_per_s": -1.0}, "dark_counts_per_s"),
    ({"count_ceiling": 0}, "count_ceiling"), ({"hot_pixel_fraction": 0.6}, "below 0.5"),
])
def test_bad_detector_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimepixSpec(**kwargs)


def test_frames_of_the_wrong_shape_or_exposure_are_refused():
    det = Timepix()
    with pytest.raises(ValueError, match="does not match"):
        det.read(np.zeros((10, 10), np.float32), 1.0)
    with pytest.raises(ValueError, match="exposure_s"):
        det.read(np.zeros((256, 256), np.float32), 0.0)


def test_a_quad_records_the_peak_across_its_chip_gap():
    from sim.scenario import parse_scenario
    from sim.series import scan_frames, scan_states, scenario_geometry

    scen = parse_scenario({
        "detector": {"chips": 4},
        "geometry": {"kind": "detector", "detector_shape_px": [516, 516], "roi_px": [226, 290, 226, 290],
                     "num_rocking_steps": 8, "rocking_step_deg": 0.05, "distance_m": 0.5},
        "stage": [{"voltage_v": 3.4, "capacity_mah_g": 10.0}],
    }, source="quad.toml")
    geometry = scenario_geometry(scen)
    (state,) = scan_states(scen, geometry)
    frames = np.array([f for _, _, f in scan_frames(state.model, geometry, Timepix(scen.detector, seed=0), 0.5)])
    assert frames.shape == (8, 516, 516)
    assert (frames[:, scen.detector.gap_mask()] == 0).all()
    peak = frames[4, 240:280, 240:280]
    assert peak.sum() > 0.9 * frames[4].sum()  # the Bragg peak sits at the centre, on the gap cross
    assert frames[4, 250:256, 250:256].max() > 100 and frames[4, 256:260, 240:280].max() == 0
    bad = dict(scen.geometry, detector_shape_px=[256, 256], roi_px=[0, 256, 0, 256])
    with pytest.raises(ValueError, match="does not match the Timepix"):
        scenario_geometry(parse_scenario({"detector": {"chips": 4}, "geometry": bad,
                                          "stage": [{"voltage_v": 3.4, "capacity_mah_g": 10.0}]}))
