"""``bcdi-stream reconstruct``: from a recording scan or an intensity file to a result file, or a clear error."""

import json

import h5py
import numpy as np
import pytest

from sim.diffraction import DiffractionModel
from sim.particle import Particle, ScrewDislocation, complex_image
from streamer.cli import main
from streamer.geometry import STACK_TO_LAB_AXES, DetectorGeometry, OrthogonalGeometry
from streamer.phasing.budget import CROPS, cropped_shape
from streamer.recording.recorder import RunRecorder
from streamer.recording.result_file import read_result

GEOMETRY = OrthogonalGeometry(shape_zyx=(32, 32, 32), voxel_nm=16.0)
FAST = ["--recipe", "30HIO, 10ER", "--population", "2", "--average", "2"]
CONVERGED = ["--recipe", "(80HIO, 20ER)*2, 10ER", "--population", "4", "--average", "2"]  # a real object


def _record(path, run, scan, stack, metadata, lost=()):
    """A recording of one scan, as the pipeline writes it; frames in ``lost`` never arrived."""
    with RunRecorder(path, run) as rec:
        rec.start_scan(scan, len(stack), metadata)
        for k, frame in enumerate(stack):
            if k not in lost:
                rec.add_frame(scan, k, 0.01 * k, 1000.0 + k, frame)
        rec.end_scan(scan, list(lost), "incomplete" if lost else "complete")
    return path


@pytest.fixture(scope="module")
def intensity():
    particle = Particle(radius_x_nm=100, radius_y_nm=90, thickness_nm=64).with_defects(
        [ScrewDislocation(0.0, 40.0, 1), ScrewDislocation(0.0, -40.0, -1)])
    expected = DiffractionModel(complex_image(particle, GEOMETRY), GEOMETRY, peak_counts=1e4).expected_volume(1.0)
    return np.random.default_rng(0).poisson(expected).astype(np.float32)


def test_npz_with_mask_and_q_on_the_last_axis(tmp_path, intensity, capsys):
    mask = np.zeros(intensity.shape, bool)
    mask[16, 16, :3] = True
    np.savez(tmp_path / "i.npz", data=np.moveaxis(intensity, 0, 2), mask=np.moveaxis(mask, 0, 2))
    # 40 iterations leave the two members far apart: both averaged whatever their chi-squares and agreement
    (tmp_path / "both.toml").write_text("[phasing]\naverage_max_chi_ratio = 1000.0\naverage_min_agreement = 0.0\n")
    assert main(["reconstruct", str(tmp_path / "i.npz"), "--q-axis", "2", "--out", str(tmp_path / "r.h5"),
                 "--voxel-nm", "16", "--config", str(tmp_path / "both.toml"), *FAST]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["recipe"] == "30HIO, 10ER" and summary["population"] == 2
    assert len(summary["metric"]["chi_square"]) == 2 and summary["averaged"] == 2
    r = read_result(tmp_path / "r.h5")
    # the pair splits the peak: centring on it rolls the data, nothing is cropped (issue 16)
    assert r["members"].shape == (2,) + r["object"].shape and r["object"].shape == (32, 32, 32)
    assert r["recipe"] == "30HIO, 10ER" and r["error_curve"].shape == (40,)
    assert r["metadata"]["preprocess"]["masked_fraction"] > 0 and r["metadata"]["voxel_nm_zyx"] == [16.0] * 3
    assert r["peak"]["integrated_counts"] == pytest.approx(float(intensity[~mask].sum()), rel=1e-6)  # every count
    assert r["amplitude_error"].any()  # two members averaged: a spread


def test_npy_and_h5_inputs(tmp_path, intensity):
    np.save(tmp_path / "i.npy", intensity)
    with h5py.File(tmp_path / "i.h5", "w") as f:
        f["entry/instrument/detector/data"] = intensity
    for name in ("i.npy", "i.h5"):
        assert main(["reconstruct", str(tmp_path / name), "--out", str(tmp_path / f"{name}.out.h5"), *FAST]) == 0
        assert read_result(tmp_path / f"{name}.out.h5")["object"].shape[0] == 32


def test_cxi_and_nexus_files_bring_their_detector_mask(tmp_path, intensity, capsys):
    flags = np.zeros(intensity.shape, np.uint32)
    flags[14:18, 16, :] = 4  # CXI mask bits: nonzero is a pixel not to trust
    with h5py.File(tmp_path / "i.cxi", "w") as f:  # as PyNX and silx write CXI data
        f["entry_1/instrument_1/detector_1/data"] = intensity
        f["entry_1/instrument_1/detector_1/mask"] = flags
        f["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
    pixels = np.zeros(intensity.shape[1:], np.int32)
    pixels[16, :] = 1
    with h5py.File(tmp_path / "i.nxs", "w") as f:  # NeXus: a (row, col) pixel mask of a frame stack
        f["entry/data/data"] = intensity
        f["entry/instrument/detector/pixel_mask"] = pixels
    with h5py.File(tmp_path / "i.h5", "w") as f:  # any HDF5 file: a mask beside the data
        f["intensity"] = intensity
        f["mask"] = flags != 0
    for name, masked in (("i.cxi", flags != 0), ("i.nxs", np.broadcast_to(pixels != 0, intensity.shape)),
                         ("i.h5", flags != 0)):
        out = tmp_path / f"{name}.h5"
        assert main(["reconstruct", str(tmp_path / name), "--out", str(out), "--voxel-nm", "16", *FAST]) == 0
        assert "(mask: " + str(tmp_path / name) in capsys.readouterr().err  # the progress lines
        r = read_result(out)
        assert r["peak"]["integrated_counts"] == pytest.approx(float(intensity[~masked].sum()), rel=1e-6)
        assert r["metadata"]["preprocess"]["masked_fraction"] == pytest.approx(masked.mean(), abs=1e-4)
        assert r["metadata"]["mask"].startswith(str(tmp_path / name) + ":") and r["metadata"]["mask"].endswith("mask")
    with h5py.File(tmp_path / "none.h5", "w") as f:  # --mask replaces the file's own
        f["mask"] = np.zeros(intensity.shape, bool)
    assert main(["reconstruct", str(tmp_path / "i.cxi"), "--mask", str(tmp_path / "none.h5"), "--out",
                 str(tmp_path / "r.h5"), "--voxel-nm", "16", *FAST]) == 0
    assert read_result(tmp_path / "r.h5")["peak"]["integrated_counts"] == pytest.approx(float(intensity.sum()), rel=1e-6)


def test_a_recorded_scan_is_binned_and_keeps_its_metadata(tmp_path, intensity):
    stack = np.transpose(intensity, np.argsort(STACK_TO_LAB_AXES)).astype(np.uint32)  # lab -> (theta, row, col)
    path = _record(tmp_path / "run.h5", "run-1", 4, stack, {"geometry": GEOMETRY.to_dict(), "voltage_v": 3.9},
                   lost=[7])  # one frame lost on the way
    out = tmp_path / "r4.h5"
    assert main(["reconstruct", str(path), "--scan", "4", "--bin", "2", "--out", str(out), *FAST]) == 0
    r = read_result(out)
    meta = r["metadata"]
    assert meta["scan"] == 4 and meta["voltage_v"] == 3.9 and meta["preprocess"]["binning"] == [2, 2]
    z, y, x = r["object"].shape
    assert (z, y, x) == (16, 16, 32)  # rows and columns binned by 2, theta not; nothing cropped
    assert meta["voxel_nm_zyx"][0] == pytest.approx(16.0 * 32 / (z * 2))
    assert meta["preprocess"]["masked_fraction"] > 0  # the lost frame is unmeasured, not zeros
    assert meta["geometry"]["shape_zyx"] == [z, y, x]  # the result's own grid, which analyze checks


def test_a_demo_recording_reconstructs_and_analyzes(tmp_path, intensity, capsys):
    """Unbinned frames on the orthogonal grid: the result keeps the grid, and analyze reads it."""
    stack = np.transpose(intensity, np.argsort(STACK_TO_LAB_AXES)).astype(np.uint32)
    path = _record(tmp_path / "run.h5", "run-2", 0, stack, {"geometry": GEOMETRY.to_dict()})
    out = tmp_path / "r0.h5"
    assert main(["reconstruct", str(path), "--scan", "0", "--out", str(out), *FAST]) == 0
    assert read_result(out)["object"].shape == GEOMETRY.shape_zyx
    capsys.readouterr()
    assert main(["analyze", str(out)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert {"vortices", "domain_boundaries", "peak"} <= set(found)


# a 128 x 128 crop of the Timepix at 1 m, 32 steps of 0.03 deg; binned 2 x 2: a 32 x 64 x 64 grid of ~20 nm
DETECTOR = DetectorGeometry(roi_px=(64, 192, 64, 192), rocking_step_deg=0.03, num_rocking_steps=32)
PAIR_NM = ((6.0, 54.0), (6.0, -54.0))  # (y, x) of the screw lines (along z)


@pytest.fixture(scope="module")
def detector_frames():
    """Whole Timepix frames (256 x 256) of a screw pair, signal in the ROI, as `bcdi-stream simulate` records."""
    particle = Particle().with_defects([ScrewDislocation(y, x, w) for (y, x), w in zip(PAIR_NM, (1, -1))])
    expected = DiffractionModel(complex_image(particle, DETECTOR), DETECTOR, peak_counts=1e4).expected_stack(1.0)
    r0, r1, c0, c1 = DETECTOR.roi_px
    frames = np.zeros((32, 256, 256), np.uint32)
    frames[:, r0:r1, c0:c1] = np.random.default_rng(0).poisson(expected)
    return frames


def _geometry_table(geometry, drop=()) -> dict:
    return {k: v for k, v in geometry.to_dict().items() if k not in ("kind", *drop)}


def test_a_detector_scan_is_phased_on_its_grid_and_written_in_the_lab_frame(tmp_path, detector_frames, capsys):
    path = _record(tmp_path / "sim.h5", "sim-1", 0, detector_frames, {"geometry": DETECTOR.to_dict()})
    out = tmp_path / "rs.h5"
    assert main(["reconstruct", str(path), "--scan", "0", "--out", str(out), *CONVERGED]) == 0
    assert "lab frame:" in capsys.readouterr().err
    r = read_result(out)
    meta = r["metadata"]
    binned = DETECTOR.rebinned(2)[0]
    voxel = min(binned.voxel_sizes_nm)
    assert r["frame"] == "lab" and meta["frame"]["name"] == "lab" and meta["frame"]["voxel_nm"] == pytest.approx(voxel)
    assert meta["voxel_nm_zyx"] == [pytest.approx(voxel)] * 3 and meta["geometry"]["kind"] == "orthogonal"
    assert meta["geometry"]["shape_zyx"] == list(r["object"].shape) == list(r["support"].shape)
    assert meta["detector_geometry"]["binning"] == 2 and meta["preprocess"]["binned_shape"] == [32, 64, 64]
    assert r["phasing"]["binned_pixels"] == [1, 2, 2]  # the modulus step met the 2 x 2 pixels' sum
    assert r["members"].shape[1:] == r["object"].shape and r["peak"]["frame"] == "lab"
    assert r["peak"]["width_parallel"] > 2 * r["peak"]["width_perpendicular"]  # the plate is thin along q
    inside = np.argwhere(np.abs(r["object"]) > 0.5 * np.abs(r["object"]).max())
    extent = (inside.max(0) - inside.min(0) + 1) * voxel  # the plate: 96 thick (z), 264 (y) x 288 (x) nm
    np.testing.assert_allclose(extent, (96, 264, 288), atol=1.5 * voxel)  # along the rocking direction too
    capsys.readouterr()
    assert main(["analyze", str(out)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["frame"]["name"] == "lab" and len(found["vortices"]) == 2
    for v in found["vortices"]:
        assert v["type"] == "screw" and abs(v["direction"][0]) > 0.9
    errors = [max(min(np.hypot(*(np.asarray(v["position_nm"][1:]) - sign * np.asarray(t))) for v in found["vortices"])
                  for t in PAIR_NM) for sign in (1, -1)]  # the twin (r -> -r) is as good a solution
    assert min(errors) <= voxel


def test_frames_with_a_geometry_file_toml_or_json(tmp_path, detector_frames):
    np.save(tmp_path / "frames.npy", detector_frames)
    (tmp_path / "g.json").write_text(json.dumps(_geometry_table(DETECTOR)))
    toml = "[geometry]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in _geometry_table(DETECTOR).items())
    (tmp_path / "g.toml").write_text(toml)
    objects = []
    for name in ("g.json", "g.toml"):
        out = tmp_path / f"{name}.h5"
        assert main(["reconstruct", str(tmp_path / "frames.npy"), "--geometry", str(tmp_path / name),
                     "--out", str(out), *FAST]) == 0
        r = read_result(out)
        assert r["frame"] == "lab" and r["metadata"]["detector_geometry"]["roi_px"] == [64, 192, 64, 192]
        objects.append(r["object"])
    np.testing.assert_allclose(objects[0], objects[1], atol=1e-5)  # one geometry, however written


@pytest.mark.parametrize("case, match", [
    ("missing", "missing key distance_m (sample-detector distance (m))"),
    ("roi", "roi_px"),
    ("frames", "frames of 100x100 pixels do not fit the geometry: detector_shape_px [256, 256], roi_px [64, 192"),
    ("steps", "31 frames; the geometry's num_rocking_steps is 32"),
    ("binning", "binning 32 (detector.binning) leaves frames of 4x4 pixels of the 128x128 roi_px"),
    ("not_toml", "is not valid TOML"),
])
def test_bad_geometry_input_is_refused_naming_the_field(tmp_path, detector_frames, capsys, case, match):
    table, frames, extra = _geometry_table(DETECTOR), detector_frames, []
    if case == "missing":
        table.pop("distance_m")
    elif case == "roi":
        table["roi_px"] = [64, 300, 64, 192]
    elif case == "frames":
        frames = detector_frames[:, :100, :100]
    elif case == "steps":
        frames = detector_frames[:31]
    elif case == "binning":
        extra = ["--bin", "32"]
    np.save(tmp_path / "frames.npy", frames)
    geometry = tmp_path / "g.toml"
    geometry.write_text("energy_kev = [" if case == "not_toml" else
                        "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items()))
    assert main(["reconstruct", str(tmp_path / "frames.npy"), "--geometry", str(geometry), "--out",
                 str(tmp_path / "r.h5"), *extra, *FAST]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize("args, match", [
    (["nope.npy"], "does not exist"),
    (["run.h5"], "choose a scan with --scan"),
    (["run.h5", "--scan", "9"], "scan 9 is not recorded"),
    (["nan.npy"], "NaN"),
    (["flat.npy"], "must be 3D"),
    (["junk.h5"], "cannot read"),
    (["object.cxi"], "object.cxi:entry_1/image_1/data is complex (a reconstructed object?)"),
    (["badmask.cxi"], "the mask entry_1/instrument_1/detector_1/mask has shape (5, 5)"),
])
def test_bad_input_gets_a_clear_error(tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.chdir(tmp_path)
    _record(tmp_path / "run.h5", "r", 0, np.ones((1, 8, 8), np.uint32), {})
    bad = np.ones((16, 16, 16), np.float32)
    bad[3, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "flat.npy", np.ones((16, 16), np.float32))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with h5py.File(tmp_path / "object.cxi", "w") as f:  # a result exported as CXI, given back as data
        f["entry_1/image_1/data"] = np.ones((16, 16, 16), np.complex64)
    with h5py.File(tmp_path / "badmask.cxi", "w") as f:
        f["entry_1/data_1/data"] = np.ones((16, 16, 16), np.float32)
        f["entry_1/instrument_1/detector_1/mask"] = np.zeros((5, 5), np.uint32)
    assert main(["reconstruct", *args, "--out", "r.h5"]) == 2
    assert match in capsys.readouterr().err


def test_a_time_budget_too_short_for_anything_takes_the_cheapest_choice_and_says_so(tmp_path, intensity, capsys):
    """The choice depends on FFT costs timed on this machine; a budget below any cost always gets the
    cheapest by those costs (the fewest members and iterations), whatever the machine. Which crop is cheapest is
    the machine's: FFTs of 16^3 to 32^3 take microseconds, and on a loaded machine even the full grid timed fastest
    once (which crop the costs choose: tests/phasing/test_budget.py, with costs given)."""
    np.save(tmp_path / "i.npy", intensity)
    assert main(["reconstruct", str(tmp_path / "i.npy"), "--out", str(tmp_path / "r.h5"), "--voxel-nm", "16",
                 "--budget-s", "1e-6"]) == 0
    captured = capsys.readouterr()
    assert "will be late" in captured.err and "--budget-s 0" in captured.err
    budget = json.loads(captured.out.strip().splitlines()[-1])["budget"]
    assert budget["crop"] in CROPS and budget["shape"] == list(cropped_shape((32, 32, 32), budget["crop"]))
    assert budget["population"] == 2 and budget["iterations"] < 610 and budget["actual_s"] > 0
    r = read_result(tmp_path / "r.h5")
    averaged = json.loads(captured.out.strip().splitlines()[-1])["averaged"]
    assert r["object"].shape == (32, 32, 32) and r["members"].shape == (averaged, 32, 32, 32)  # back on the full grid


def test_explicit_phasing_options_are_kept_without_a_budget(tmp_path, intensity, capsys):
    np.save(tmp_path / "i.npy", intensity)
    assert main(["reconstruct", str(tmp_path / "i.npy"), "--out", str(tmp_path / "r.h5"), *FAST]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "budget" not in summary and summary["population"] == 2


def test_the_budget_is_the_whole_commands_time_spent_and_writing_come_off_it(tmp_path, intensity, capsys):
    """What the command spent before phasing, timing the FFTs and what writing the result will take leave the
    phasing less; the result file's float arrays are written as they are (the user waits), its support
    compressed."""
    import argparse
    import io

    from streamer.cli.reconstruct_budget import RESULT_WRITE_BYTES_PER_S, budget_choice
    from streamer.service.config import ServiceConfig

    service = ServiceConfig()
    args = argparse.Namespace(budget_s=10.0, population=None, recipe=None, generations=None)
    xp = __import__("streamer.backend", fromlist=["get_namespace"]).get_namespace("numpy")
    shape = (32, 32, 32)
    writing = 32**3 * (8 * (1 + service.phasing.population) + 9) / RESULT_WRITE_BYTES_PER_S
    _, _, fresh, _, _ = budget_choice(args, service.phasing, xp, shape, io.StringIO(), service.budget, spent_s=0.0)
    _, _, late, _, _ = budget_choice(args, service.phasing, xp, shape, io.StringIO(), service.budget, spent_s=6.0)
    share = service.budget.share
    # ... and so does timing the full grid's FFT pair (planning it first when no plan is remembered)
    # (planning and timing the FFTs took 0.02-1.0 s, the most on a loaded machine's first call; 2 s leaves room
    # for that and still tells the 6 s spent apart)
    assert (10.0 - writing) * share - 2.0 < fresh.budget_s < (10.0 - writing) * share
    assert (4.0 - writing) * share - 2.0 < late.budget_s < (4.0 - writing) * share
    _, _, over, _, _ = budget_choice(args, service.phasing, xp, shape, io.StringIO(), service.budget, spent_s=60.0)
    assert over.budget_s == pytest.approx(1.0 * share)  # a tenth of the budget is always left to phasing

    np.save(tmp_path / "i.npy", intensity)
    assert main(["reconstruct", str(tmp_path / "i.npy"), "--out", str(tmp_path / "r.h5"), *FAST]) == 0
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["result/object"].compression is None and f["result/members"].compression is None
        assert f["result/support"].compression == "gzip"


def test_the_models_error_is_remembered_beside_the_wisdom_and_scales_the_next_prediction(tmp_path):
    from streamer.service.costs import remember_slowness, remembered_slowness

    assert remembered_slowness("numpy", tmp_path) == 1.0  # nothing remembered
    kept = remember_slowness("numpy", actual_s=16.0, predicted_s=10.0, used=1.0, folder=tmp_path)
    assert kept == pytest.approx(1.6) and remembered_slowness("numpy", tmp_path) == pytest.approx(1.6)
    # the next prediction already carried 1.6 and was right: the remembered value stays
    assert remember_slowness("numpy", actual_s=16.0, predicted_s=16.0, used=1.6, folder=tmp_path) == pytest.approx(1.6)
    assert remembered_slowness("cupy", tmp_path) == 1.0  # each backend apart
    (tmp_path / "phasing-slowness.json").write_text("not json")
    assert remembered_slowness("numpy", tmp_path) == 1.0  # a damaged file costs accuracy only


def test_the_slowness_of_runs_on_the_scipy_stand_in_is_kept_apart_from_fftws(tmp_path, monkeypatch):
    """A slowness learned on FFTW-planned runs (here: they ran at half the predicted time) is not applied to a
    grid that will run on the stand-in, and that run's error is remembered under its own key."""
    import argparse
    import io

    from streamer.backend import get_namespace
    from streamer.cli.reconstruct_budget import budget_choice
    from streamer.phasing import fft, wisdom
    from streamer.service.config import ServiceConfig
    from streamer.service.costs import remember_slowness

    monkeypatch.setattr(wisdom, "_wisdom_dir", tmp_path)
    monkeypatch.setattr(fft, "_planner", "measure")
    monkeypatch.setattr(fft, "_unplanned", "scipy")
    monkeypatch.setattr(fft, "PLAN_NOW_VOXELS", 1000)  # every grid here is "large": no plan made in the test
    remember_slowness("numpy", actual_s=5.0, predicted_s=10.0, used=1.0, folder=tmp_path)
    service = ServiceConfig()
    args = argparse.Namespace(budget_s=10.0, population=None, recipe=None, generations=None)
    xp = get_namespace("numpy")
    _, _, choice, slowness, key = budget_choice(args, service.phasing, xp, (24, 24, 24), io.StringIO(), service.budget)
    assert fft.runs_on_stand_in(xp, (choice.population, *choice.shape))
    assert key == "numpy-stand-in" and slowness == 1.0  # nothing learned for the stand-in yet; not FFTW's 0.5
    monkeypatch.setattr(fft, "PLAN_NOW_VOXELS", 1 << 22)  # now every grid is planned at once: FFTW's slowness
    _, _, choice, slowness, key = budget_choice(args, service.phasing, xp, (24, 24, 24), io.StringIO(), service.budget)
    assert key == "numpy" and slowness == pytest.approx(0.5)


def test_reconstruct_plans_an_unplanned_shape_at_once_unless_the_config_says_otherwise(tmp_path, intensity,
                                                                                        monkeypatch):
    """One process, one scan: `reconstruct` measures the plan of a shape it has none for before phasing (the
    scipy stand-in runs such shapes 1.5-1.7x slower, docs/phasing.md); `[fft] unplanned = "scipy"` keeps the
    stand-in, as the service has it by default."""
    from streamer.phasing import fft, wisdom

    for name in ("_planner", "_unplanned"):  # this process's FFT settings come back after the test
        monkeypatch.setattr(fft, name, getattr(fft, name))
    monkeypatch.setattr(wisdom, "_wisdom_dir", wisdom._wisdom_dir)
    monkeypatch.setattr(fft, "PLAN_NOW_VOXELS", 1000)  # the test's grid counts as large
    monkeypatch.setenv("BCDI_STREAM_FFTW_PLANNER", "measure")
    wisdom.import_pyfftw().forget_wisdom()  # no plan remembered in this process either
    np.save(tmp_path / "i.npy", intensity)
    (tmp_path / "scipy.toml").write_text('[fft]\nunplanned = "scipy"\n')
    for name, config in (("scipy", ["--config", str(tmp_path / "scipy.toml")]), ("default", [])):
        monkeypatch.setattr(fft, "_PLANS", {})
        monkeypatch.setenv("BCDI_STREAM_CACHE", str(tmp_path / f"cache-{name}"))
        assert main(["reconstruct", str(tmp_path / "i.npy"), "--out", str(tmp_path / f"{name}.h5"), "--voxel-nm",
                     "16", *FAST, *config]) == 0
        kinds = {key[0] for key in fft._PLANS if key[2] == (2, 32, 32, 32)}
        assert fft._unplanned == ("plan" if name == "default" else "scipy")
        assert kinds == ({"fftw"} if name == "default" else {"scipy"})


def test_the_budget_times_the_cropped_grid_it_chooses(monkeypatch):
    """A cropped grid's cost is first scaled from the full grid's by N log N; the grid chosen is then timed (its plan
    the run needs anyway) and the choice made again with that time. Pair times are stubbed (N log N, with a grid
    FFTW runs slowly), so the choice is the same on every machine."""
    import argparse
    import io
    import math

    from streamer.cli.reconstruct_budget import budget_choice
    from streamer.service.config import ServiceConfig
    from streamer.service.costs import FftCosts

    timed, slow = [], {}

    def time_pair(self, shape):
        n = math.prod(shape)
        timed.append(tuple(shape))
        self._timed[tuple(shape)] = seconds = 1e-9 * n * math.log2(n) * slow.get(tuple(shape), 1.0)
        return seconds

    monkeypatch.setattr(FftCosts, "time_pair", time_pair)
    service = ServiceConfig()
    args = argparse.Namespace(budget_s=1e-6, population=None, recipe=None, generations=None)
    xp = __import__("streamer.backend", fromlist=["get_namespace"]).get_namespace("numpy")

    def choose():
        timed.clear()
        return budget_choice(args, service.phasing, xp, (32, 32, 32), io.StringIO(), service.budget, spent_s=0.0)[2]

    choice = choose()  # nothing fits: the cheapest, half the q range
    assert choice.shape == (16, 16, 16)
    assert timed == [(32, 32, 32), (16, 16, 16)]  # the full grid, then the chosen one, each once
    slow[(16, 16, 16)] = 50.0  # timed, the chosen grid runs far slower than N log N said: choose again
    choice = choose()
    assert timed == [(32, 32, 32), (16, 16, 16), (24, 24, 24)] and choice.shape == (20, 20, 20)


def test_a_recordings_scan_is_prepared_as_recorded_unless_the_config_says_otherwise(tmp_path, detector_frames,
                                                                                    capsys):
    """The [detector] table the recording service kept (here: known bad pixels) prepares the scan again; a
    --config with a [detector] table of its own replaces it."""
    r0, _, c0, _ = DETECTOR.roi_px
    bad = [[r0 + 3, c0 + 5], [r0 + 40, c0 + 41], [r0 + 60, c0 + 7]]
    frames = detector_frames.copy()
    for r, c in bad:
        frames[:, r, c] = 0  # dead
    path = tmp_path / "live.h5"
    with RunRecorder(path, "live-1", detector={"binning": 2, "bad_pixels_px": bad}) as rec:
        rec.start_scan(0, len(frames), {"geometry": DETECTOR.to_dict()})
        for k, frame in enumerate(frames):
            rec.add_frame(0, k, 0.01 * k, 1000.0 + k, frame)
        rec.end_scan(0, [], "complete")
    out = tmp_path / "a.h5"
    assert main(["reconstruct", str(path), "--scan", "0", "--out", str(out), *FAST]) == 0
    assert "detector preparation as recorded" in capsys.readouterr().err
    assert read_result(out)["metadata"]["preprocess"]["bad_pixels"] == len(bad)
    config = tmp_path / "own.toml"
    config.write_text("[detector]\nbinning = 2\n")
    assert main(["reconstruct", str(path), "--scan", "0", "--out", str(tmp_path / "b.h5"), "--config", str(config),
                 *FAST]) == 0
    assert "as recorded" not in capsys.readouterr().err
    assert read_result(tmp_path / "b.h5")["metadata"]["preprocess"].get("bad_pixels", 0) == 0


def test_a_disk_without_room_for_the_result_is_said_before_phasing(tmp_path, intensity, capsys, monkeypatch):
    """HDF5 crashed the process when the disk filled under a result file: the room is checked first."""
    import collections
    import shutil

    np.save(tmp_path / "i.npy", intensity)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**19, 2**19))  # 0.5 MB free
    assert main(["reconstruct", str(tmp_path / "i.npy"), "--out", str(tmp_path / "r.h5"), *FAST]) != 0
    err = capsys.readouterr().err
    assert "0.5 MB free" in err and "the write needs up to" in err
    assert "\nreconstruct: " not in "\n" + err  # no phasing started
    assert not list(tmp_path.glob("r.h5*"))
