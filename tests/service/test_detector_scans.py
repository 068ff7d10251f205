"""Detector-geometry scans through the service's processing (issue 16): a Timepix quad's frames with its gap
cross, dead, hot and saturated pixels are prepared, phased on the sheared detector grid and analysed in the lab
frame; the events say so. Positions and magnitudes are compared with the simulator's truth, never signs (the
phase-sign convention is settled elsewhere)."""

import json
import tomllib

import numpy as np
import pytest

from sim.detector import Timepix
from sim.scenario import parse_scenario
from sim.series import scan_states, scenario_geometry
from sim.truth import peak_widths
from streamer.phasing.alignment import register
from streamer.service.assembly import AssembledScan
from streamer.service.config import ServiceConfig
from streamer.service.processing import ScanProcessor
from streamer.settings import ConfigError

# A quad (516 x 516 with its 4-pixel gap cross) at 1 m; a 128 x 128 crop around the peak that the gap crosses
# 40 pixels from the peak, 32 rocking steps, binned 2 x 2: a 32 x 64 x 64 grid of ~20 nm (33 nm along the
# rocking direction). The flux saturates a few pixels at the top of the pristine peak.
SCENARIO = """
name = "quad"
description = "pristine, pristine, screw pair"
[geometry]
kind = "detector"
detector_shape_px = [516, 516]
center_px = [300.0, 300.0]
roi_px = [236, 364, 236, 364]
rocking_step_deg = 0.03
num_rocking_steps = 32
[detector]
chips = 4
[acquisition]
peak_counts_per_s = 3e4
exposure_s = 0.5
[[stage]]
label = "pristine"
voltage_v = 3.40
capacity_mah_g = 12.0
[[stage]]
label = "pristine"
voltage_v = 3.48
capacity_mah_g = 20.0
[[stage]]
label = "screw pair"
voltage_v = 3.73
capacity_mah_g = 40.0
dislocations = [{ y_nm = 6.0, x_nm = 54.0, winding = 1 }, { y_nm = 6.0, x_nm = -54.0, winding = -1 }]
"""
FAST = {"recipe": "(80HIO, 20ER)*2, 10ER", "population": 4, "average": 2, "warm_recipe": "30HIO, 20ER"}


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Each scan's frames as the Timepix reads them (gaps, dead, hot, ceiling) and as a perfect detector would
    (Poisson counts only), the geometry, the bad-pixel map file the detector's configuration gives, the truth."""
    scen = parse_scenario(tomllib.loads(SCENARIO))
    geometry = scenario_geometry(scen)
    spec = scen.detector
    hot, dead = spec.defect_maps()
    folder = tmp_path_factory.mktemp("quad")
    bad_file = folder / "bad.npy"
    np.save(bad_file, dead | spec.gap_mask())  # what the detector's configuration knows; hot pixels are found
    timepix, rng = Timepix(spec, seed=0), np.random.default_rng(1)
    r0, r1, c0, c1 = geometry.roi_px
    scans = []
    for state in scan_states(scen, geometry):
        expected = state.model.expected_stack(scen.acquisition.exposure_s)
        signal = np.zeros(spec.shape_px, np.float32)
        real = []
        for frame in expected:
            signal[r0:r1, c0:c1] = frame
            real.append(timepix.read(signal, scen.acquisition.exposure_s))
        perfect = np.zeros((len(expected), *spec.shape_px), np.uint32)
        perfect[:, r0:r1, c0:c1] = rng.poisson(expected)
        scans.append({"real": np.stack(real), "perfect": perfect, "stage": state.stage, "particle": state.particle,
                      "widths": peak_widths(state.model.expected_stack(1.0), geometry),
                      "hot_in_roi": int(hot[r0:r1, c0:c1].sum())})
    return {"geometry": geometry, "scans": scans, "bad_file": str(bad_file)}


def _assembled(geometry, k, frames, stage, run="quad"):
    meta = {"geometry": geometry.to_dict(), "voltage_v": stage.voltage_v, "capacity_mah_g": stage.capacity_mah_g}
    n = len(frames)
    return AssembledScan(run, k, meta, dict(enumerate(frames)), frames.shape, np.full(n, 7.0), np.arange(n, dtype=float), [])


def _config(series, **detector):
    return ServiceConfig(realtime_policy="all", phasing=FAST, budget={"mode": "off"},  # the same phasing anywhere
                         detector={"bad_pixel_map_file": series["bad_file"], **detector})


@pytest.fixture(scope="module")
def processed(series):
    """The series through one processor, as the service's worker runs it: (processor, events)."""
    proc = ScanProcessor(_config(series))
    events = []
    for k, scan in enumerate(series["scans"]):
        job = proc.prepare(_assembled(series["geometry"], k, scan["real"], scan["stage"]), {})
        events.append(json.loads(json.dumps(proc.process(job))))  # as events.jsonl holds it
    return proc, events


def test_every_scan_is_reconstructed_and_its_event_says_lab_frame_and_voxel(series, processed):
    _, events = processed
    binned = series["geometry"].rebinned(2)[0]
    voxel = min(binned.voxel_sizes_nm)
    for k, event in enumerate(events):
        assert "error" not in event and event["reconstruction"]["status"] == "done"
        frame = event["frame"]
        assert frame["name"] == "lab" and frame["voxel_nm"] == pytest.approx(voxel, rel=1e-4)
        assert frame["detector_stack_shape"] == [32, 64, 64]
        assert frame["shape_zyx"] == events[0]["frame"]["shape_zyx"]  # one lab grid for the run
        assert event["phasing"]["frame"] == "lab"
        pre = event["preprocess"]
        # the quad's gap cross and dead pixels (configured), hot pixels (found), the ceiling: all masked
        assert pre["bad_pixels"] > 2 * 4 * 128 - 4 * 4 and pre["binning_px"] == 2 and pre["binned_shape"] == [32, 64, 64]
        assert pre["hot_pixels"] >= series["scans"][k]["hot_in_roi"] >= 1
        assert 0.05 < pre["masked_fraction"] < 0.1
    assert events[0]["preprocess"]["saturated_pixels"] > 0
    # the same lattice in every scan (the pair does not change c): the change since scan 0 is within noise
    for event in events:
        lattice = event["lattice"]
        assert lattice["reference_scan"] == 0 and lattice["q_inv_nm"] == pytest.approx(2 * np.pi / 0.55, rel=2e-3)
        assert abs(lattice["c_change_rel"]) < 5e-4 and lattice["c_change_rel_error"] > 0
        # the PRTF's half-period resolution: no finer than the grid's, no coarser than the particle
        res = event["phasing"]["resolution"]
        assert 0.5 * event["frame"]["voxel_nm"] < res["resolution_nm"] < 100.0


def test_peak_widths_are_in_inverse_nm_along_lab_axes_as_the_truth(series, processed):
    _, events = processed
    for scan, event in zip(series["scans"], events):
        truth, peak = scan["widths"], event["peak"]
        assert peak["frame"] == "lab"
        for key, true_key in (("width_parallel", "width_parallel_inv_nm"),
                              ("width_perpendicular_y", "width_perpendicular_y_inv_nm"),
                              ("width_perpendicular_x", "width_perpendicular_x_inv_nm")):
            assert peak[key] == pytest.approx(truth[true_key], rel=0.1), (event["scan"], key)
        assert peak["q_inv_nm"] == pytest.approx(2 * np.pi / 0.55, rel=2e-3)
        rows, cols, steps = peak["center_of_mass_px"]  # on the binned frames: where the peak sits on the detector
        assert abs(rows - 32) < 3 and abs(cols - 32) < 3 and abs(steps - 16) < 2


def _truth_lines(particle):
    return [np.asarray(line.point_nm, float) for line in particle.dislocations]


def test_the_screw_pair_is_found_where_it_is_in_the_lab_frame(series, processed):
    _, events = processed
    assert [e["vortices"] for e in events[:2]] == [[], []]
    assert [f["kind"] for f in events[0]["flags"] + events[1]["flags"]] == []
    assert sorted(f["kind"] for f in events[2]["flags"]) == ["new_vortex", "new_vortex"]
    found = events[2]["vortices"]
    assert len(found) == 2
    voxel = events[2]["frame"]["voxel_nm"]
    truth = _truth_lines(series["scans"][2]["particle"])
    for v in found:
        assert v["type"] == "screw" and abs(v["direction"][0]) > 0.9  # along q: lab z
        assert abs(v["winding"]) == 1
    # the object may come out as its twin (r -> -r): compare with the truth and with its inversion
    errors = []
    for sign in (1, -1):
        per_line = [min(np.hypot(*(np.asarray(v["position_nm"][1:]) - sign * t[1:])) for v in found) for t in truth]
        errors.append(max(per_line))
    assert min(errors) <= voxel  # within one lab voxel across the line
    separation = np.hypot(*np.subtract(found[0]["position_nm"][1:], found[1]["position_nm"][1:]))
    assert separation == pytest.approx(108.0, rel=0.15)
    assert events[2]["dislocation_pairs"] and events[2]["dislocation_pairs"][0]["separation_nm"] == pytest.approx(
        separation, rel=0.05)


def test_gaps_hot_and_saturated_pixels_leave_the_reconstruction_as_it_is(series, processed):
    """The same scan from a perfect detector: the lab-frame objects correlate in amplitude >= 0.95, their strain
    inside the particle differs by at most 2e-4 RMS, and the same lines are found within one voxel."""
    from streamer.analysis.displacement import particle_fields

    proc, events = processed
    clean = ScanProcessor(ServiceConfig(realtime_policy="all", phasing=FAST, budget={"mode": "off"}, detector={
        "count_ceiling": 0, "lab_shape_zyx": events[2]["frame"]["shape_zyx"]}))  # the same lab grid
    scan = series["scans"][2]
    event = clean.process(clean.prepare(_assembled(series["geometry"], 2, scan["perfect"], scan["stage"]), {}))
    assert event["preprocess"]["masked_fraction"] == 0
    a, b = proc.tracker("quad").last.rho, clean.tracker("quad").last.rho
    assert a.shape == b.shape
    aligned = register(b, a).aligned
    corr = np.corrcoef(np.abs(a).ravel(), np.abs(aligned).ravel())[0, 1]
    assert corr >= 0.95
    voxel, q = events[2]["frame"]["voxel_nm"], events[2]["frame"]["q_inv_nm"]
    fa, fb = (particle_fields(x, voxel_nm=voxel, q_inv_nm=q) for x in (a, aligned))
    both = np.isfinite(fa.strain) & np.isfinite(fb.strain)  # where both read a strain (their reliable interiors)
    assert both.sum() > 100
    assert float(np.sqrt(np.mean((fa.strain[both] - fb.strain[both]) ** 2))) <= 2e-4
    assert len(event["vortices"]) == 2
    found = [np.asarray(v["position_nm"]) for v in events[2]["vortices"]]
    for v in event["vortices"]:  # the clean run's lines, compared allowing for its twin relative to ours
        near = min(min(np.linalg.norm(np.asarray(v["position_nm"])[1:] - s * f[1:]) for f in found) for s in (1, -1))
        assert near <= voxel + 0.01  # positions are written to 0.01 nm


def test_frames_that_do_not_fit_the_geometry_are_that_scans_error_and_the_next_scan_goes_on(series):
    proc = ScanProcessor(_config(series))
    scan = series["scans"][0]
    job = proc.prepare(_assembled(series["geometry"], 0, scan["real"][:, :100, :100], scan["stage"]), {})
    event = proc.process(job)
    assert event["reconstruction"]["status"] == "not_possible"
    assert "frames of 100x100 pixels do not fit the geometry" in event["error"]
    assert "detector_shape_px [516, 516]" in event["error"] and "roi_px [236, 364, 236, 364]" in event["error"]
    job = proc.prepare(_assembled(series["geometry"], 1, scan["real"][:, 236:364, 236:364], scan["stage"]), {})
    assert job.error is None and job.stack.shape == (32, 64, 64)  # frames cut to the ROI are as good


def test_detector_maps_are_checked_by_name(series, tmp_path):
    with pytest.raises(ConfigError, match="detector.dark_file: cannot read"):
        ScanProcessor(_config(series, dark_file=str(tmp_path / "missing.npy")))
    np.save(tmp_path / "small.npy", np.zeros((10, 10), bool))
    proc = ScanProcessor(_config(series, bad_pixel_map_file=str(tmp_path / "small.npy")))
    scan = series["scans"][0]
    job = proc.prepare(_assembled(series["geometry"], 0, scan["real"], scan["stage"]), {})
    assert "detector.bad_pixel_map_file has shape (10, 10)" in job.error
    with pytest.raises(ConfigError, match=r"detector.gap_rows_px: each range must be \[start, stop\)"):
        ServiceConfig(detector={"gap_rows_px": [[260, 256]]})


def test_gaps_given_as_ranges_mask_what_the_map_file_does(series):
    proc = ScanProcessor(ServiceConfig(phasing=FAST, detector={"gap_rows_px": [[256, 260]], "gap_cols_px": [[256, 260]]}))
    scan = series["scans"][0]
    job = proc.prepare(_assembled(series["geometry"], 0, scan["real"], scan["stage"]), {})
    mask = np.roll(job.stack_mask, [-s for s in job.preprocess["shift_step_row_col"]], axis=(0, 1, 2))
    assert mask[:, 10, :].all() and mask[:, :, 10].all()  # raw 256..259 -> binned row/col 10, 11 of the ROI
    assert mask[:, 11, :].all() and not mask[:, 12, 5:9].any()


@pytest.mark.system
def test_a_simulated_detector_recording_replays_through_serve_with_lab_frame_events(tmp_path):
    """`bcdi-stream simulate` + `bcdi-stream replay`: what issue 16 found refused ("unsupported geometry kind")."""
    from streamer.cli.replay import run_replay
    from streamer.cli.simulate import run_simulate
    from streamer.recording.event_log import read_events

    path = tmp_path / "quick.toml"
    path.write_text(SCENARIO.replace('name = "quad"', 'name = "quick"'))
    with open(tmp_path / "run.log", "w") as log:
        sim = run_simulate(str(path), out_dir=tmp_path / "sim", scans=2, out=log)
        service = ServiceConfig(realtime_policy="all", phasing=FAST)
        assert run_replay(sim["recording"], out_dir=tmp_path / "replay", service=service, out=log) == 0
    events = read_events(tmp_path / "replay" / "events.jsonl")
    assert [e["scan"] for e in events] == [0, 1]
    for e in events:
        assert "error" not in e and e["reconstruction"]["status"] == "done" and e["frame"]["name"] == "lab"
