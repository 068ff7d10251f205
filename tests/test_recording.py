import h5py
import numpy as np

from streamer.recording import RunRecorder, read_scan


def test_frames_and_metadata_round_trip(tmp_path):
    path = tmp_path / "run.h5"
    rec = RunRecorder(path, "run-1")
    rec.start_scan(0, 3, {"voltage_v": 3.6, "capacity_mah_g": 30.0, "geometry": {"voxel_nm": 12.0}})
    for i in (1, 0, 2):
        rec.add_frame(0, i, 7.0 + i, 100.0 + i, np.full((4, 5), i, np.uint32))
    rec.end_scan(0, [])
    rec.start_scan(1, 3, {"voltage_v": 3.7})
    rec.add_frame(1, 0, 7.0, 200.0, np.ones((4, 5), np.uint32))
    rec.end_scan(1, [1, 2])
    rec.close()
    s = read_scan(path, 0)
    assert s["complete"] and s["metadata"]["geometry"] == {"voxel_nm": 12.0}
    assert [int(f[0, 0]) for f in s["frames"]] == [0, 1, 2]
    np.testing.assert_allclose(s["theta_deg"], [7, 8, 9])
    with h5py.File(path) as f:
        g = f["entry/scan_00001"]
        assert not g.attrs["complete"] and list(g.attrs["missing"]) == [1, 2]
        assert g.attrs["voltage_v"] == 3.7
        assert f["entry"].attrs["run"] == "run-1"
        assert f["entry/scan_00000/data"].compression == "lzf"


def test_file_is_readable_after_each_scan_while_open(tmp_path):
    path = tmp_path / "run.h5"
    rec = RunRecorder(path, "r")
    rec.start_scan(0, 1, {})
    rec.add_frame(0, 0, 0.0, 0.0, np.ones((2, 2), np.uint16))
    rec.end_scan(0, [])
    with h5py.File(path, "r", locking=False) as f:
        assert f["entry/scan_00000/data"].shape == (1, 2, 2)
    rec.close()
