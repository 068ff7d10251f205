"""``bcdi-stream import``: real-looking inputs to a recording that replay and reconstruct take, or exit 2 with the reason."""

import io
import json

import h5py
import numpy as np
import pytest
import tifffile

from sim.diffraction import DiffractionModel
from sim.particle import Particle, ScrewDislocation, complex_image
from streamer.cli import build_parser, main
from streamer.geometry import STACK_TO_LAB_AXES, DetectorGeometry, OrthogonalGeometry
from streamer.recording.recorder import list_scans, read_scan, recorded_detector
from streamer.recording.result_file import read_result

GEOMETRY = OrthogonalGeometry(shape_zyx=(32, 32, 32), voxel_nm=16.0)
FAST = ["--recipe", "30HIO, 10ER", "--population", "2", "--average", "2"]
DETECTOR_TOML = """kind = "detector"
energy_kev = 9.0
distance_m = 0.5
pixel_um = 55.0
detector_shape_px = [64, 64]
roi_px = [0, 64, 16, 48]
binning = 2
d_spacing_nm = 0.2335
delta_deg = -32.174
gamma_deg = 12.6346
rocking_axis = [0.0, 1.0, 0.0]
rocking_step_deg = 0.005
num_rocking_steps = 12
theta_bragg_deg = 0.22
"""


@pytest.fixture(scope="module")
def stack():
    """A simulated scan on the orthogonal grid as detector frames (theta, row, col) of uint32 counts."""
    particle = Particle(radius_x_nm=100, radius_y_nm=90, thickness_nm=64).with_defects(
        [ScrewDislocation(0.0, 40.0, 1), ScrewDislocation(0.0, -40.0, -1)])
    expected = DiffractionModel(complex_image(particle, GEOMETRY), GEOMETRY, peak_counts=1e4).expected_volume(1.0)
    intensity = np.random.default_rng(0).poisson(expected)
    return np.transpose(intensity, np.argsort(STACK_TO_LAB_AXES)).astype(np.uint32)


def _frames_folder(path, stack):
    path.mkdir(parents=True)
    for k, frame in enumerate(stack):
        tifffile.imwrite(path / f"img_{k}.tif", frame)
    return path


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["import", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "bcdi-stream import" in text and "--flip-cols" in text


def test_an_imported_orthogonal_scan_is_reconstructed(tmp_path, stack, capsys):
    folder = _frames_folder(tmp_path / "scan7", stack)
    (tmp_path / "geometry.toml").write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in GEOMETRY.to_dict().items()))
    recording = tmp_path / "imported.h5"
    assert main(["import", str(folder), "--geometry", str(tmp_path / "geometry.toml"), "--out", str(recording),
                 "--scan", "7", "--voltage", "3.9", "--sample", "simulated plate"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["frames"] == 32 and summary["scans"] == [7] and summary["run"] == "imported"
    assert "32/32 frames" in captured.err and "frames/s" in captured.err  # progress, then the rate
    s = read_scan(recording, 7)
    assert np.array_equal(s["frames"], stack) and s["metadata"]["geometry"] == GEOMETRY.to_dict()
    out = tmp_path / "r7.h5"
    assert main(["reconstruct", str(recording), "--scan", "7", "--out", str(out), *FAST]) == 0
    meta = read_result(out)["metadata"]
    assert meta["scan"] == 7 and meta["voltage_v"] == 3.9 and meta["sample"] == "simulated plate"
    assert meta["scan_status"] == "complete" and meta["geometry"]["kind"] == "orthogonal"


def test_a_nexus_scan_with_a_detector_geometry_keeps_frames_and_geometry(tmp_path, capsys):
    frames = np.random.default_rng(3).integers(0, 2**16, (12, 32, 16), dtype=np.uint16)
    with h5py.File(tmp_path / "scan.nxs", "w") as f:
        f.create_group("entry/instrument/detector").attrs["NX_class"] = "NXdetector"
        f["entry/instrument/detector/data"] = frames
        f.create_group("entry/instrument/monitor").attrs["NX_class"] = "NXmonitor"
        f["entry/instrument/monitor/data"] = np.arange(12) + 1000
    (tmp_path / "geometry.toml").write_text(DETECTOR_TOML)
    rec = tmp_path / "nx.h5"
    assert main(["import", str(tmp_path / "scan.nxs"), "--geometry", str(tmp_path / "geometry.toml"),
                 "--out", str(rec), "--run", "beamtime-3", "--capacity", "28.5"]) == 0
    s = read_scan(rec, 0)
    assert s["frames"].dtype == np.uint16 and np.array_equal(s["frames"], frames)
    geometry = DetectorGeometry.from_dict(s["metadata"]["geometry"])
    assert geometry.frame_shape == (32, 16) and geometry.delta_deg == -32.174 and geometry.num_rocking_steps == 12
    assert s["metadata"]["monitor"] == list(range(1000, 1012)) and s["metadata"]["capacity_mah_g"] == 28.5
    assert np.allclose(s["theta_deg"], geometry.rocking_angles_deg())


def test_a_nexus_pixel_mask_is_kept_for_replay_and_reconstruct(tmp_path, capsys):
    frames = np.random.default_rng(4).poisson(20.0, (12, 32, 16)).astype(np.uint16)
    frames[:, 10:20, 5:11] += 400  # a peak
    bits = np.zeros((32, 16), np.uint32)
    bits[16, :] = 1  # a module gap (NeXus pixel_mask bit 0)
    bits[3, 4] = 8  # a noisy pixel
    for name, with_mask in (("plain", False), ("masked", True)):
        with h5py.File(tmp_path / f"{name}.nxs", "w") as f:
            f.create_group("entry/instrument/detector").attrs["NX_class"] = "NXdetector"
            f["entry/instrument/detector/data"] = frames
            if with_mask:
                f["entry/instrument/detector/pixel_mask"] = bits
    (tmp_path / "geometry.toml").write_text(DETECTOR_TOML)
    masked = {}
    for name in ("plain", "masked"):
        rec = tmp_path / f"{name}.h5"
        assert main(["import", str(tmp_path / f"{name}.nxs"), "--geometry", str(tmp_path / "geometry.toml"),
                     "--out", str(rec), "--flip-cols"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        out = tmp_path / f"{name}-r.h5"
        assert main(["reconstruct", str(rec), "--scan", "0", "--out", str(out), *FAST]) == 0
        masked[name] = read_result(out)["metadata"]["preprocess"]["masked_fraction"]
    mask_file = tmp_path / "masked-pixel-mask.npy"
    assert summary["pixel_mask"] == {"file": str(mask_file), "bad_pixels": 17 * 4}  # raw pixels, binned 2 x 2
    raw = np.zeros((64, 64), bool)  # the whole detector, the frames its roi_px [0, 64, 16, 48] binned 2 x 2
    raw[:, 16:48] = np.repeat(np.repeat(bits[:, ::-1] != 0, 2, axis=0), 2, axis=1)  # oriented as the frames
    assert np.array_equal(np.load(mask_file), raw)
    assert recorded_detector(tmp_path / "masked.h5") == {"bad_pixel_map_file": str(mask_file)}
    assert recorded_detector(tmp_path / "plain.h5") is None and not (tmp_path / "plain-pixel-mask.npy").exists()
    assert masked["masked"] > masked["plain"]  # the gap row and the noisy pixel are not measured zeros
    (tmp_path / "own.toml").write_text("[detector]\ncount_ceiling = 0.0\n")  # a table of one's own: said, not silent
    assert main(["reconstruct", str(tmp_path / "masked.h5"), "--scan", "0", "--config", str(tmp_path / "own.toml"),
                 "--out", str(tmp_path / "own.h5"), *FAST]) == 0
    assert f"the recording's bad-pixel map {mask_file} is not used" in capsys.readouterr().err


def test_several_scans_into_one_recording(tmp_path, stack, capsys):
    series = tmp_path / "series"
    for name in ("scan_2", "scan_10"):
        _frames_folder(series / name, stack)
    (tmp_path / "g.json").write_text(json.dumps(GEOMETRY.to_dict()))
    rec = tmp_path / "series.h5"
    assert main(["import", str(series), "--geometry", str(tmp_path / "g.json"), "--out", str(rec), "--scan", "3",
                 "--voltage", "3.5", "--voltage", "3.7"]) == 0
    scans = list_scans(rec)
    assert [(s["scan"], s["voltage_v"], s["status"]) for s in scans] == [(3, 3.5, "complete"), (4, 3.7, "complete")]
    assert read_scan(rec, 4)["metadata"]["source"]["path"].endswith("scan_10")
    assert main(["import", str(series), "--geometry", str(tmp_path / "g.json"), "--out", str(tmp_path / "x.h5"),
                 "--voltage", "3.5"]) == 2
    assert "--voltage is given 1 times for 2 scans" in capsys.readouterr().err


def test_bad_inputs_exit_2_and_say_why(tmp_path, stack, capsys):
    folder = _frames_folder(tmp_path / "scan", stack)
    (tmp_path / "detector.toml").write_text(DETECTOR_TOML)
    (tmp_path / "ortho.json").write_text(json.dumps(GEOMETRY.to_dict()))
    rec = tmp_path / "run.h5"

    def run(*extra, geometry="ortho.json", frames=folder):
        code = main(["import", str(frames), "--geometry", str(tmp_path / geometry), "--out", str(rec), *extra])
        return code, capsys.readouterr().err

    code, err = run(geometry="detector.toml")
    assert code == 2 and "frames are 32x32 pixels but the geometry's roi_px [0, 64, 16, 48]" in err
    assert run()[0] == 0
    code, err = run()
    assert code == 2 and "exists; it is not replaced without --force" in err
    data = (folder / "img_31.tif").read_bytes()
    (folder / "img_31.tif").write_bytes(data[:1000])
    code, err = run("--force")
    assert code == 2 and "img_31.tif is truncated" in err
    assert np.array_equal(read_scan(rec, 0)["frames"], stack)  # the earlier import survives the failed one
    code, err = run(frames=tmp_path / "missing")
    assert code == 2 and "missing does not exist" in err
    with h5py.File(tmp_path / "masked.nxs", "w") as f:
        f["entry/data/data"] = stack
        f["entry/data/mask"] = np.zeros(stack.shape[1:], np.uint8)
    code, err = run("--force", frames=tmp_path / "masked.nxs")  # imported; the mask said not used, not dropped silently
    assert code == 0 and "/entry/data/mask of " in err and "not used: an orthogonal geometry reads no bad-pixel map" in err
    f = h5py.File(tmp_path / "masked.nxs", "a")
    del f["entry/data/mask"]
    f["entry/data/mask"] = np.zeros(stack.shape, np.uint8)  # a 3D mask: not a pixel mask of the frames
    f.close()
    code, err = run("--force", "--dataset", "/entry/data/data", frames=tmp_path / "masked.nxs")
    assert code == 0 and "not used: it is (32, 32, 32), the frames (32, 32)" in err


def test_an_imported_scan_replays_through_the_pipeline(tmp_path, stack):
    from streamer.cli import run_replay
    from streamer.phasing import PhasingConfig
    from streamer.recording.event_log import read_events
    from streamer.service.config import ServiceConfig

    (tmp_path / "g.json").write_text(json.dumps(GEOMETRY.to_dict()))
    rec = tmp_path / "imported.h5"
    assert main(["import", str(_frames_folder(tmp_path / "scan", stack)), "--geometry", str(tmp_path / "g.json"),
                 "--out", str(rec), "--scan", "5", "--voltage", "3.6"]) == 0
    service = ServiceConfig(phasing=PhasingConfig(population=2), realtime_policy="all")
    assert run_replay(rec, out_dir=tmp_path / "replay", service=service, out=io.StringIO()) == 0
    (event,) = read_events(tmp_path / "replay" / "events.jsonl")
    assert event["scan"] == 5 and event["voltage_v"] == 3.6 and event["ingest"]["complete"]
