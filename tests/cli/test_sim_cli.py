"""``bcdi-stream simulate``: a recording in the live format, truth beside it, same seed same frames."""

import io

import numpy as np
import pytest

from sim.truth import read_truth
from streamer.cli import build_parser, main
from streamer.cli.simulate import run_simulate
from streamer.geometry import DetectorGeometry, from_dict
from streamer.recording.recorder import list_scans, read_scan, run_of


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        folder = tmp_path_factory.mktemp(name)
        out[name] = run_simulate("quick", out_dir=folder, scans=2, seed=seed, out=io.StringIO())
    return out


def test_the_recording_is_a_live_run_recording_with_truth_beside_it(runs):
    rec = runs["a"]["recording"]
    assert run_of(rec) == "sim-quick-seed4"
    scans = list_scans(rec)
    assert [s["scan"] for s in scans] == [0, 1] and all(s["complete"] for s in scans)
    s = read_scan(rec, 1)
    geometry = from_dict(s["metadata"]["geometry"])
    assert isinstance(geometry, DetectorGeometry)
    assert s["frames"].shape == (geometry.num_rocking_steps, 256, 256) and s["frames"].dtype == np.uint32
    np.testing.assert_allclose(s["theta_deg"], geometry.rocking_angles_deg())
    assert s["metadata"]["voltage_v"] == 3.5 and s["metadata"]["exposure_s"] == 0.5
    assert np.all(np.diff(s["timestamp"]) > 0)
    r0, r1, c0, c1 = geometry.roi_px
    assert s["frames"][:, r0:r1, c0:c1].sum() > 0.99 * s["frames"].sum()  # the signal is simulated in the crop
    truth = read_truth(runs["a"]["truth"])
    assert [t["scan"] for t in truth] == [0, 1] and [t["label"] for t in truth] == ["pristine", "pristine"]
    assert truth[0]["lines"] == [] and truth[0]["peak"]["width_parallel_inv_nm"] > truth[0]["peak"]["width_perpendicular_inv_nm"]
    assert truth[0]["rho"].dtype == np.complex64 and truth[0]["voxel_nm"] == 4.0


def test_same_seed_same_frames_bit_for_bit(runs):
    for scan in (0, 1):
        a, b, c = (read_scan(runs[k]["recording"], scan)["frames"] for k in ("a", "b", "c"))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


def test_the_cli_writes_a_run_and_refuses_to_overwrite_it(tmp_path, capsys):
    assert main(["simulate", "quick", "--out", str(tmp_path), "--scans", "1", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "scenario 'quick'" in printed and "truth:" in printed
    assert read_truth(tmp_path / "truth.h5")[0]["scan"] == 0
    assert main(["simulate", "quick", "--out", str(tmp_path), "--scans", "1", "--seed", "2"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["simulate", "quick", "--out", str(tmp_path / "x"), "--scans", "9"]) == 2
    assert "--scans must be 1..3" in capsys.readouterr().err
    assert main(["simulate", "nope", "--out", str(tmp_path / "y")]) == 2
    assert "available" in capsys.readouterr().err


def test_help_has_an_example():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = sub.choices["simulate"].format_help()
    assert "bcdi-stream simulate reference --out" in text and "--seed" in text and "--scans" in text
