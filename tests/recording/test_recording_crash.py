"""The recording survives kill -9 of its writer, and can be read by another process while written."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys

import h5py
import numpy as np

from streamer.recording.recorder import RunRecorder, list_scans, read_scan

FRAMES = 8
SHAPE = (64, 64)


def frame(scan: int, k: int) -> np.ndarray:
    """A detector frame: mostly zeros, a Poisson-counted Gaussian peak, regenerated from (scan, k)."""
    rng = np.random.default_rng([7, scan, k])
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    peak = 500.0 * np.exp(-((y - 30 - k) ** 2 + (x - 34) ** 2) / 18.0)
    return rng.poisson(peak).astype(np.uint32)


def record_scan(rec: RunRecorder, scan: int, frames=range(FRAMES), end=True) -> None:
    rec.start_scan(scan, FRAMES, {"voltage_v": 3.5 + 0.1 * scan})
    for k in frames:
        rec.add_frame(scan, k, 10.0 + 0.01 * k, 1000.0 * scan + k, frame(scan, k))
    if end:
        rec.end_scan(scan, [] if len(frames) == FRAMES else sorted(set(range(FRAMES)) - set(frames)))


def write_then_die(path: str) -> None:
    """Child: two complete scans, half a third flushed, two more frames, then SIGKILL mid-scan."""
    rec = RunRecorder(path, "crash-run", flush_every_s=3600.0)
    record_scan(rec, 0)
    record_scan(rec, 1)
    record_scan(rec, 2, frames=range(FRAMES // 2), end=False)
    rec.flush()
    for k in range(FRAMES // 2, FRAMES // 2 + 2):
        rec.add_frame(2, k, 0.0, 0.0, frame(2, k))
    os.kill(os.getpid(), signal.SIGKILL)


def test_completed_scans_survive_kill_9_and_the_file_can_be_appended_to(tmp_path):
    path = tmp_path / "run.h5"
    child = multiprocessing.get_context("spawn").Process(target=write_then_die, args=(str(path),))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL

    for scan in (0, 1):
        s = read_scan(path, scan)
        assert s["complete"] and s["status"] == "complete" and s["metadata"]["voltage_v"] == 3.5 + 0.1 * scan
        np.testing.assert_array_equal(s["frames"], [frame(scan, k) for k in range(FRAMES)])
        np.testing.assert_array_equal(s["frame_index"], range(FRAMES))
    partial = read_scan(path, 2)
    assert partial["status"] == "partial" and not partial["complete"]
    half = FRAMES // 2
    assert half <= len(partial["frames"]) <= half + 2  # all flushed frames; maybe some written after the flush
    np.testing.assert_array_equal(partial["frames"][:half], [frame(2, k) for k in range(half)])

    with RunRecorder(path, "crash-run") as rec:  # the receiver restarts: scan 2 again, then scan 3
        record_scan(rec, 2)
        record_scan(rec, 3)
    assert [(x["scan"], x["status"]) for x in list_scans(path)] == [(k, "complete") for k in range(4)]
    for scan in range(4):
        np.testing.assert_array_equal(read_scan(path, scan)["frames"], [frame(scan, k) for k in range(FRAMES)])


def test_rows_a_killed_writer_left_half_written_are_cut_before_appending(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "r") as rec:
        record_scan(rec, 0)
        record_scan(rec, 1, frames=range(2), end=False)
    with h5py.File(path, "r+") as f:  # what a kill in the middle of a flush can leave: columns of unequal length
        f["entry/data/data"].resize(FRAMES + 4, axis=0)
        f["entry/data/frame_index"].resize(FRAMES + 3, axis=0)
        f["entry/scans/scan"].resize(3, axis=0)
        blob = f["entry/scans/metadata_json"]
        blob.resize(blob.shape[0] - 5, axis=0)  # the end of scan 1's JSON is lost
    assert [x["scan"] for x in list_scans(path)] == [0, 1]  # readers ignore the half-written rows
    with RunRecorder(path, "r") as rec:
        record_scan(rec, 2)
    assert [(x["scan"], x["status"], x["frames_recorded"]) for x in list_scans(path)] == [
        (0, "complete", FRAMES), (1, "partial", 2), (2, "complete", FRAMES)]
    for scan in (0, 2):
        s = read_scan(path, scan)
        np.testing.assert_array_equal(s["frames"], [frame(scan, k) for k in range(FRAMES)])
        assert s["metadata"] == {"voltage_v": 3.5 + 0.1 * scan}
    assert read_scan(path, 1)["metadata"] != read_scan(path, 2)["metadata"]  # scan 2's JSON went after scan 1's
    with h5py.File(path, "r") as f:
        columns = [name for name in f["entry/data"] if name != "data"]
        assert {f["entry/data"][name].shape[0] for name in columns} == {2 * FRAMES + 2}
        assert f["entry/data/data"].shape[0] >= 2 * FRAMES + 2  # grown ahead in blocks of frames


READER = """
import json, sys
import numpy as np
from streamer.recording.recorder import list_scans, read_scan
scans = list_scans(sys.argv[1])
frames = read_scan(sys.argv[1], 0)["frames"]
print(json.dumps({"scans": [(x["scan"], x["status"], x["frames_recorded"]) for x in scans],
                  "sum": int(frames.sum(dtype=np.int64)), "shape": frames.shape}))
"""


def test_another_process_reads_completed_scans_while_the_writer_holds_the_file(tmp_path):
    path = tmp_path / "run.h5"
    with RunRecorder(path, "live-run") as rec:
        record_scan(rec, 0)
        record_scan(rec, 1, frames=range(3), end=False)
        rec.flush()
        out = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        rec.add_frame(1, 3, 0.0, 0.0, frame(1, 3))  # the writer goes on after the reader looked
    assert seen["scans"] == [[0, "complete", FRAMES], [1, "partial", 3]]
    assert seen["shape"] == [FRAMES, *SHAPE]
    assert seen["sum"] == sum(int(frame(0, k).sum()) for k in range(FRAMES))
    assert list_scans(path)[1]["frames_recorded"] == 4
