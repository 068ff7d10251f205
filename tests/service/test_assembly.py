import numpy as np
import pytest

from streamer.service.assembly import ScanAssembler


def _frame(i, shape=(4, 5)):
    return np.full(shape, i, dtype=np.uint32)


def test_out_of_order_frames_assemble_in_frame_order():
    a = ScanAssembler()
    a.start("run", 0, 4, {"voltage_v": 3.5})
    for i in (2, 0, 3, 1):
        assert a.add("run", 0, i, 7.0 + i, 100.0 + i, _frame(i))
    scan = a.finish("run", 0)
    assert scan.complete and scan.missing == []
    assert [int(f[0, 0]) for f in scan.frames] == [0, 1, 2, 3]
    np.testing.assert_allclose(scan.theta_deg, [7, 8, 9, 10])
    assert scan.last_frame_time == 103.0
    assert scan.metadata == {"voltage_v": 3.5}
    assert not a.counters


def test_missing_frames_mark_the_scan_incomplete_and_are_named():
    a = ScanAssembler()
    a.start("run", 1, 5, {})
    for i in (0, 1, 4):
        a.add("run", 1, i, 0.0, 0.0, _frame(i))
    scan = a.finish("run", 1)
    assert not scan.complete
    assert scan.missing == [2, 3]
    assert np.isnan(scan.theta_deg[2]) and scan.frames[3].sum() == 0
    assert a.counters["incomplete_scan"] == 1


def test_duplicate_frame_is_counted_and_first_copy_kept():
    a = ScanAssembler()
    a.start("run", 0, 2, {})
    assert a.add("run", 0, 0, 0.0, 0.0, _frame(1))
    assert not a.add("run", 0, 0, 0.0, 0.0, _frame(9))
    a.add("run", 0, 1, 0.0, 0.0, _frame(2))
    scan = a.finish("run", 0)
    assert scan.frames[0, 0, 0] == 1
    assert a.counters["duplicate_frame"] == 1


@pytest.mark.parametrize("run, scan, frame, shape, reason", [
    ("other", 0, 0, (4, 5), "unknown_scan"),
    ("run", 7, 0, (4, 5), "unknown_scan"),
    ("run", 0, 3, (4, 5), "frame_out_of_range"),
    ("run", 0, 1, (5, 4), "wrong_shape"),
])
def test_bad_frames_are_rejected_and_counted(run, scan, frame, shape, reason):
    a = ScanAssembler()
    a.start("run", 0, 3, {})
    a.add("run", 0, 0, 0.0, 0.0, _frame(0))
    assert not a.add(run, scan, frame, 0.0, 0.0, _frame(1, shape))
    assert a.counters[reason] == 1
    assert a.finish("run", 0).missing == [1, 2]


def test_end_of_unknown_scan_is_counted():
    a = ScanAssembler()
    assert a.finish("run", 3) is None
    assert a.counters["unknown_scan"] == 1


def test_scan_without_frames_for_too_long_times_out():
    a = ScanAssembler()
    a.start("run", 0, 3, {}, now=0.0)
    a.add("run", 0, 0, 0.0, 0.0, _frame(0), now=1.0)
    a.start("run", 1, 3, {}, now=5.0)
    assert a.expire(4.0, timeout_s=5.0) == []
    (scan,) = a.expire(6.5, timeout_s=5.0)
    assert scan.scan == 0 and scan.timed_out and scan.status == "timed_out" and scan.missing == [1, 2]
    assert a.open_scans == [("run", 1)] and a.counters["timed_out_scan"] == 1


def test_frame_before_its_scan_start_opens_the_scan_implicitly():
    a = ScanAssembler()
    a.start("run", 0, 2, {"geometry": {"voxel_nm": 12.0}, "voltage_v": 3.5})
    a.finish("run", 0)
    assert a.add("run", 1, 1, 0.0, 0.0, _frame(1), num_frames=2)
    assert a.counters["implicit_scan"] == 1
    scan = a.finish("run", 1)
    assert scan.missing == [0] and scan.metadata == {"implicit": True, "geometry": {"voxel_nm": 12.0}}


def test_absurd_frame_count_is_refused():
    a = ScanAssembler(max_frames_per_scan=100)
    with pytest.raises(ValueError, match="num_frames"):
        a.start("run", 0, 101, {})
    assert not a.add("run", 0, 0, 0.0, 0.0, _frame(0), num_frames=10**6)


def test_open_scans_are_bounded_the_stalest_closed_as_incomplete_and_counted():
    a = ScanAssembler(max_open_scans=3)
    for scan in range(5):
        a.start("r", scan, 4, {}, now=float(scan))
        a.add("r", scan, 0, 7.0, 1.0, np.zeros((2, 2), np.uint16), now=float(scan))
    evicted = a.take_evicted()
    assert [s.scan for s in evicted] == [0, 1] and all(not s.complete for s in evicted)
    assert sorted(a.open_scans) == [("r", 2), ("r", 3), ("r", 4)] and a.counters["evicted_scan"] == 2
    assert a.take_evicted() == []


def test_held_frame_bytes_are_bounded():
    frame = np.zeros((16, 16), np.uint32)  # 1 kB
    a = ScanAssembler(max_held_bytes=3 * frame.nbytes)
    a.start("r", 0, 10, {}, now=0.0)
    a.start("r", 1, 10, {}, now=1.0)
    assert a.add("r", 0, 0, 7.0, 1.0, frame, now=0.0) and a.add("r", 1, 0, 7.0, 1.0, frame, now=1.0)
    assert a.add("r", 1, 1, 7.0, 1.0, frame, now=2.0) and a.held_bytes == 3 * frame.nbytes
    assert a.add("r", 1, 2, 7.0, 1.0, frame, now=3.0)  # scan 0, the stalest, is closed to make room
    assert [s.scan for s in a.take_evicted()] == [0] and a.held_bytes == 3 * frame.nbytes
    assert not a.add("r", 1, 3, 7.0, 1.0, frame, now=4.0)  # only its own scan left: the frame is refused, counted
    assert a.counters["over_byte_budget"] == 1
    done = a.finish("r", 1)
    assert len(done.parts) == 3 and a.held_bytes == 0
