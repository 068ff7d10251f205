"""``bcdi-stream reconstruct``: from a recording scan or an intensity file to a result file, or a clear error."""

import json

import h5py
import numpy as np
import pytest

from sim.diffraction import DiffractionModel
from sim.particle import Particle, ScrewDislocation, complex_image
from streamer.cli import main
from streamer.geometry import STACK_TO_LAB_AXES, OrthogonalGeometry
from streamer.recording.recorder import RunRecorder
from streamer.recording.result_file import read_result

GEOMETRY = OrthogonalGeometry(shape_zyx=(32, 32, 32), voxel_nm=16.0)
FAST = ["--recipe", "30HIO, 10ER", "--population", "2", "--average", "2"]


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
    assert main(["reconstruct", str(tmp_path / "i.npz"), "--q-axis", "2", "--out", str(tmp_path / "r.h5"),
                 "--voxel-nm", "16", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["recipe"] == "30HIO, 10ER" and summary["population"] == 2
    r = read_result(tmp_path / "r.h5")
    # the pair splits the peak: centring on it crops a few pixels, to an even FFT-friendly size
    assert r["members"].shape == (2,) + r["object"].shape and all(28 <= n <= 32 for n in r["object"].shape)
    assert r["recipe"] == "30HIO, 10ER" and r["error_curve"].shape == (40,)
    assert r["metadata"]["preprocess"]["masked_fraction"] > 0 and r["metadata"]["voxel_nm_zyx"] == [16.0] * 3
    assert r["peak"]["integrated_counts"] == pytest.approx(float(intensity[~mask].sum()), rel=0.01)  # crop: < 1%
    assert r["amplitude_error"].any()  # two members averaged: a spread


def test_npy_and_h5_inputs(tmp_path, intensity):
    np.save(tmp_path / "i.npy", intensity)
    with h5py.File(tmp_path / "i.h5", "w") as f:
        f["entry/instrument/detector/data"] = intensity
    for name in ("i.npy", "i.h5"):
        assert main(["reconstruct", str(tmp_path / name), "--out", str(tmp_path / f"{name}.out.h5"), *FAST]) == 0
        assert read_result(tmp_path / f"{name}.out.h5")["object"].shape[0] == 32


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
    assert z <= 16 and y <= 16 and x <= 32  # rows and columns binned by 2, theta not
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


def test_a_simulated_detector_scan_gets_its_resolution_from_the_detector_geometry(tmp_path, intensity, capsys):
    """A `simulate` recording (Timepix frames on the sheared detector grid): voxel sizes from that geometry."""
    from streamer.geometry import DetectorGeometry

    det = DetectorGeometry(detector_shape_px=(32, 32), roi_px=(0, 32, 0, 32), center_px=(16.0, 16.0),
                           num_rocking_steps=32)
    stack = np.transpose(intensity, np.argsort(STACK_TO_LAB_AXES)).astype(np.uint32)
    assert stack.shape == det.stack_shape
    path = _record(tmp_path / "sim.h5", "sim-1", 0, stack, {"geometry": det.to_dict()})
    out = tmp_path / "rs.h5"
    assert main(["reconstruct", str(path), "--scan", "0", "--out", str(out), *FAST]) == 0
    assert "detector (sheared) grid" in capsys.readouterr().err
    r = read_result(out)
    z, y, x = r["object"].shape
    v_step, v_row, v_col = det.voxel_sizes_nm
    assert r["metadata"]["voxel_nm_zyx"] == pytest.approx([v_row * 32 / z, v_col * 32 / y, v_step * 32 / x], rel=1e-3)
    assert r["metadata"]["geometry"]["shape_zyx"] == [z, y, x]


@pytest.mark.parametrize("args, match", [
    (["nope.npy"], "does not exist"),
    (["run.h5"], "choose a scan with --scan"),
    (["run.h5", "--scan", "9"], "scan 9 is not recorded"),
    (["nan.npy"], "NaN"),
    (["flat.npy"], "must be 3D"),
    (["junk.h5"], "cannot read"),
])
def test_bad_input_gets_a_clear_error(tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.chdir(tmp_path)
    _record(tmp_path / "run.h5", "r", 0, np.ones((1, 8, 8), np.uint32), {})
    bad = np.ones((16, 16, 16), np.float32)
    bad[3, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "flat.npy", np.ones((16, 16), np.float32))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    assert main(["reconstruct", *args, "--out", "r.h5"]) == 2
    assert match in capsys.readouterr().err
