import math

import h5py
import numpy as np
import pytest

from streamer.recording.recorder import RunRecorder, list_scans, read_scan, run_of

BITSHUFFLE_FILTER_ID = 32008


def _frame(scan, i, shape=(4, 5), dtype=np.uint32):
    return np.full(shape, 100 * scan + i, dtype)


def _record(rec, scan, frames, order=None, metadata=None, missing=(), status="complete", end=True):
    rec.start_scan(scan, frames, metadata or {})
    for i in order if order is not None else range(frames):
        rec.add_frame(scan, i, 7.0 + i, 100.0 * scan + i, _frame(scan, i))
    if end:
        rec.end_scan(scan, list(missing), status)


def test_frames_and_metadata_round_trip(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "run-1") as rec:
        meta = {"voltage_v": 3.6, "capacity_mah_g": 30.0, "geometry": {"voxel_nm": 12.0}}
        _record(rec, 0, 3, order=(1, 0, 2), metadata=meta)
        _record(rec, 1, 2, metadata={"voltage_v": 3.7})
    s = read_scan(path, 0)
    assert s["complete"] and s["status"] == "complete" and s["metadata"] == meta
    assert s["frames"].shape == (3, 4, 5) and s["frames"].dtype == np.uint32
    np.testing.assert_array_equal(s["frames"], [_frame(0, i) for i in range(3)])
    np.testing.assert_array_equal(s["frame_index"], [0, 1, 2])
    np.testing.assert_allclose(s["theta_deg"], [7, 8, 9])
    np.testing.assert_allclose(s["timestamp"], [0, 1, 2])
    assert run_of(path) == "run-1"
    summary = list_scans(path)
    assert [x["scan"] for x in summary] == [0, 1]
    assert summary[0] == {"scan": 0, "num_frames": 3, "frames_recorded": 3, "status": "complete", "complete": True,
                          "voltage_v": 3.6, "capacity_mah_g": 30.0}
    assert summary[1]["voltage_v"] == 3.7 and math.isnan(summary[1]["capacity_mah_g"])


def test_statuses_incomplete_timed_out_and_partial(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        _record(rec, 0, 3, order=(0,), missing=[1, 2], status="incomplete")
        _record(rec, 1, 3, order=(0, 2), missing=[1])  # "complete" with missing frames is not complete
        _record(rec, 2, 3, order=(), missing=[0, 1, 2], status="timed_out")
        _record(rec, 3, 3, order=(0, 1), end=False)  # never ended
        with pytest.raises(ValueError, match="unknown scan status"):
            rec.end_scan(3, [], "done")
    statuses = {x["scan"]: (x["status"], x["complete"], x["frames_recorded"]) for x in list_scans(path)}
    assert statuses == {0: ("incomplete", False, 1), 1: ("incomplete", False, 2), 2: ("timed_out", False, 0),
                        3: ("partial", False, 2)}
    s = read_scan(path, 1)
    assert s["missing"] == [1] and list(s["frame_index"]) == [0, 2]
    empty = read_scan(path, 2)
    assert empty["frames"].shape == (0, 4, 5) and empty["status"] == "timed_out"


def test_reopening_the_file_of_the_run_appends(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        _record(rec, 0, 2, metadata={"voltage_v": 3.5})
        _record(rec, 1, 2)
    with RunRecorder(path, "r") as rec:  # receiver restart mid-run
        _record(rec, 2, 2, metadata={"voltage_v": 3.9})
    assert [(x["scan"], x["status"]) for x in list_scans(path)] == [(0, "complete"), (1, "complete"), (2, "complete")]
    for scan in range(3):
        np.testing.assert_array_equal(read_scan(path, scan)["frames"], [_frame(scan, 0), _frame(scan, 1)])
    assert read_scan(path, 0)["metadata"] == {"voltage_v": 3.5}
    with pytest.raises(ValueError, match="records run 'r'"):
        RunRecorder(path, "another-run")


def test_reopening_before_any_frame_appends(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        rec.start_scan(0, 2, {"voltage_v": 3.5})
    with RunRecorder(path, "r") as rec:
        _record(rec, 1, 2)
    assert [(x["scan"], x["status"], x["frames_recorded"]) for x in list_scans(path)] == [(0, "partial", 0),
                                                                                            (1, "complete", 2)]


def test_a_restarted_scan_supersedes_the_earlier_attempt_without_deleting_it(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        _record(rec, 0, 2)
        _record(rec, 1, 3, order=(0, 1), metadata={"voltage_v": 3.1}, end=False)
        rec.start_scan(1, 3, {"voltage_v": 3.2})
        for i in (2, 1, 0):
            rec.add_frame(1, i, 0.0, 0.0, np.full((4, 5), 7 + i, np.uint32))
        rec.end_scan(1, [])
    s = read_scan(path, 1)
    assert s["complete"] and s["metadata"] == {"voltage_v": 3.2}
    np.testing.assert_array_equal(s["frames"][:, 0, 0], [7, 8, 9])
    summary = list_scans(path)
    assert [(x["scan"], x["frames_recorded"]) for x in summary] == [(0, 2), (1, 3)]
    assert summary[1]["voltage_v"] == 3.2 and summary[1]["status"] == "complete"
    with h5py.File(path, "r") as f:
        assert f["entry/data/attempt"].shape[0] == 2 + 2 + 3  # the first attempt's frames are still there
        assert list(f["entry/scans/scan"][()]) == [0, 1, 1]


def test_frames_are_bitshuffle_lz4_compressed_one_frame_per_chunk(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        _record(rec, 0, 2)
    with h5py.File(path, "r") as f:
        data = f["entry/data/data"]
        assert data.chunks == (1, 4, 5) and data.maxshape == (None, 4, 5)
        plist = data.id.get_create_plist()
        assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == [BITSHUFFLE_FILTER_ID]
        assert f["entry"].attrs["NX_class"] == "NXentry" and f["entry/data"].attrs["signal"] == "data"


def test_frames_of_another_shape_or_dtype_are_rejected(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        _record(rec, 0, 2)
        rec.start_scan(1, 2, {})
        with pytest.raises(ValueError, match=r"\(4, 6\) uint32; this recording holds \(4, 5\) uint32"):
            rec.add_frame(1, 0, 0.0, 0.0, np.zeros((4, 6), np.uint32))
        with pytest.raises(ValueError, match="float32"):
            rec.add_frame(1, 0, 0.0, 0.0, np.zeros((4, 5), np.float32))
        with pytest.raises(ValueError, match="scan 5 was never started"):
            rec.add_frame(5, 0, 0.0, 0.0, _frame(5, 0))
        rec.add_frame(1, 0, 0.0, 0.0, _frame(1, 0))
        rec.end_scan(1, [1])
    assert [x["frames_recorded"] for x in list_scans(path)] == [2, 1]
    np.testing.assert_array_equal(read_scan(path, 1)["frames"], [_frame(1, 0)])


def test_the_file_is_readable_while_the_recorder_holds_it(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        rec.start_scan(0, 2, {})
        assert read_scan(path, 0)["status"] == "partial"  # before the first frame
        rec.add_frame(0, 0, 0.0, 0.0, _frame(0, 0))
        rec.add_frame(0, 1, 0.0, 0.0, _frame(0, 1))
        rec.end_scan(0, [])
        rec.start_scan(1, 2, {})
        rec.add_frame(1, 0, 0.0, 0.0, _frame(1, 0))
        rec.flush()
        assert [(x["status"], x["frames_recorded"]) for x in list_scans(path)] == [("complete", 2), ("partial", 1)]
        np.testing.assert_array_equal(read_scan(path, 0)["frames"], [_frame(0, 0), _frame(0, 1)])
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            assert f["entry/data/attempt"].shape == (3,) and f["entry/data/data"].shape[1:] == (4, 5)
        rec.add_frame(1, 1, 0.0, 0.0, _frame(1, 1))
        rec.end_scan(1, [])
    with h5py.File(path, "r") as f:  # closed cleanly: plain readers work too
        assert f["entry/data/data"].shape == (4, 4, 5)


def test_an_unknown_scan_is_a_key_error(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        _record(rec, 0, 1)
    with pytest.raises(KeyError, match="scan 3"):
        read_scan(path, 3)


def test_the_detector_preparation_is_recorded_once_with_the_layout(tmp_path):
    from streamer.recording.recorder import recorded_detector

    detector = {"binning": 2, "gap_rows_px": [[256, 260]], "bad_pixel_map_file": "/somewhere/dead.npy"}
    with RunRecorder(tmp_path / "run.h5", "run-1", detector=detector) as rec:
        _record(rec, 0, 2)
    with RunRecorder(tmp_path / "run.h5", "run-1", detector={"binning": 4}) as rec:  # appending keeps the first
        _record(rec, 1, 2)
    assert recorded_detector(tmp_path / "run.h5") == detector
    with RunRecorder(tmp_path / "plain.h5", "run-2") as rec:
        _record(rec, 0, 1)
    assert recorded_detector(tmp_path / "plain.h5") is None


def test_a_frame_the_disk_has_no_room_for_is_refused_before_hdf5_meets_the_full_disk(tmp_path, monkeypatch):
    """HDF5 crashed the process that wrote a file when the disk filled under it: the recorder refuses first
    (ENOSPC, naming the folder), and the file stays whole with the scans ended before."""
    import collections
    import errno
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    free = {"bytes": 2**30}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**31, 2**31 - free["bytes"], free["bytes"]))
    path = tmp_path / "run.h5"
    rec = RunRecorder(path, "r")
    rec.start_scan(0, 1, {})
    rec.add_frame(0, 0, 7.0, 1.0, np.full((8, 8), 5, np.uint32))
    rec.end_scan(0, [])
    free["bytes"] = 2**20  # 1 MB left
    with pytest.raises(OSError) as refused:
        rec.add_frame(0, 1, 7.1, 1.0, np.full((8, 8), 6, np.uint32))
    assert refused.value.errno == errno.ENOSPC and str(tmp_path) in str(refused.value)
    with pytest.raises(OSError, match="MB free"):
        rec.start_scan(1, 1, {})
    rec.close()
    (scan,) = list_scans(path)
    assert scan["status"] == "complete" and read_scan(path, 0)["frames"][0, 0, 0] == 5
