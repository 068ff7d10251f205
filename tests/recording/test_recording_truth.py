"""The recording's truth and budgets (issue 20): complete only when the frames are on disk, failures
named, paused frames visible, open files bounded, one file per run, no link followed, nothing read
from the socket lost at a stop."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from streamer.beamline.verdict import event_alarm
from streamer.messaging import wire
from streamer.messaging.transport import FrameSender
from streamer.recording.event_log import read_events
from streamer.recording.recorder import list_scans, read_scan
from streamer.recording.thread import RecordingWriter
from streamer.service.config import RecordingConfig, ServiceConfig
from streamer.service.pipeline import Pipeline


def _frame(value, shape=(8, 8), dtype=np.uint32):
    return np.full(shape, value, dtype)


def test_a_frame_that_does_not_reach_the_disk_makes_the_scan_incomplete_and_is_named(tmp_path):
    writer = RecordingWriter(tmp_path)
    writer.start_scan("r", 0, 3, {})
    writer.add_frame("r", 0, 0, 7.0, 1.0, _frame(1))
    writer.add_frame("r", 0, 1, 7.1, 1.0, _frame(2, shape=(4, 4)))  # another shape mid-scan
    writer.add_frame("r", 0, 2, 7.2, 1.0, _frame(3))
    recorded = writer.end_scan("r", 0, [], "complete", num_frames=3).result(10)
    writer.close()
    assert recorded["complete"] is False and recorded["frames_on_disk"] == 2
    assert "(4, 4)" in recorded["error"] and writer.counters["frames_not_recorded"] == 1
    (scan,) = list_scans(writer.path("r"))
    assert scan["status"] == "incomplete" and scan["frames_recorded"] == 2
    assert any("add_frame" in a for a in writer.alarms)


def test_the_event_says_incomplete_when_the_recording_lost_a_frame(tmp_path):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), realtime_policy="all"))
    p._worker.start()
    p.ingest(wire.encode("scan_start", run="r", scan=0, num_frames=2, metadata={}))
    p.ingest(wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=7.0, timestamp=1.0, array=_frame(1)))
    p.recording._queue.put(("add_frame", "r", (0, 1, 7.1, 1.0, _frame(2, dtype=np.float32))))  # a disk-side failure
    p.assembler.add("r", 0, 1, 7.1, 1.0, _frame(2), now=0.0)
    p.ingest(wire.encode("scan_end", run="r", scan=0, num_frames=2))
    p.shutdown()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["ingest"]["complete"] is False and event["ingest"]["status"] == "incomplete"
    assert "float32" in event["ingest"]["recording_error"]
    assert event_alarm(event).startswith("recording: ")  # what the plan's verdict device raises on


def test_a_paused_scans_frames_reach_a_reader_within_one_and_a_half_seconds(tmp_path):
    writer = RecordingWriter(tmp_path, flush_every_s=1.0)
    writer.start_scan("paused", 0, 10, {})
    for k in range(3):
        writer.add_frame("paused", 0, k, 7.0, 1.0, _frame(k))
    time.sleep(1.5)
    reader = ("import sys; from streamer.recording.recorder import read_scan; "
              "print(len(read_scan(sys.argv[1], 0)['frames']))")
    out = subprocess.run([sys.executable, "-c", reader, str(writer.path("paused"))], capture_output=True, text=True,
                         timeout=60)
    writer.close()
    assert out.stdout.strip() == "3", out.stderr


def test_two_thousand_runs_keep_the_open_files_bounded(tmp_path):
    writer = RecordingWriter(tmp_path, max_open_runs=8)
    fds = len(os.listdir("/proc/self/fd"))
    for run in range(2000):
        writer.start_scan(f"run-{run}", 0, 1, {})
        writer.add_frame(f"run-{run}", 0, 0, 7.0, 1.0, _frame(run, shape=(2, 2)))
        writer.end_scan(f"run-{run}", 0, [], "complete", num_frames=1)
        if run % 500 == 499:
            writer.wait()
            assert writer.open_runs <= 8 and len(os.listdir("/proc/self/fd")) < fds + 20
    writer.close()
    assert len(list(tmp_path.glob("*.h5"))) == 2000 and writer.counters["recording_error"] == 0
    assert read_scan(writer.path("run-1234"), 0)["frames"][0, 0, 0] == 1234


def test_runs_whose_names_sanitise_alike_get_their_own_files(tmp_path):
    writer = RecordingWriter(tmp_path)
    for run, value in (("a/b", 1), ("a?b", 2), ("a_b", 3)):
        writer.start_scan(run, 0, 1, {})
        writer.add_frame(run, 0, 0, 7.0, 1.0, _frame(value))
        writer.end_scan(run, 0, [], "complete", num_frames=1)
    writer.close()
    assert len({writer.path(r) for r in ("a/b", "a?b", "a_b")}) == 3 and writer.counters["recording_error"] == 0
    assert [read_scan(writer.path(r), 0)["frames"][0, 0, 0] for r in ("a/b", "a?b", "a_b")] == [1, 2, 3]
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())


def test_a_link_out_of_the_folder_is_not_followed(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    writer = RecordingWriter(out)
    writer.path("run").symlink_to(elsewhere / "target.h5")
    writer.start_scan("run", 0, 1, {})
    recorded = writer.end_scan("run", 0, [], "complete", num_frames=1).result(10)
    writer.close()
    assert not (elsewhere / "target.h5").exists() and recorded["complete"] is False
    assert any("link" in a for a in writer.alarms)


def test_a_vanished_recording_raises_an_alarm(tmp_path):
    writer = RecordingWriter(tmp_path, flush_every_s=0.2)
    writer.start_scan("r", 0, 2, {})
    writer.add_frame("r", 0, 0, 7.0, 1.0, _frame(1))
    writer.wait()
    writer.path("r").unlink()  # the folder's content deleted under the service
    deadline = time.monotonic() + 5
    while not writer.alarms and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    assert writer.counters["recording_vanished"] == 1 and "vanished" in writer.alarms[0]


def test_a_stop_handles_what_the_socket_already_holds(tmp_path):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), exit_on_run_stop=False, drain_timeout_s=5.0,
                               recording=RecordingConfig(flush_every_s=0.5)))
    thread = threading.Thread(target=p.run, daemon=True)
    sender = FrameSender(p.frames_endpoint)
    sender.scan_start("r", 0, 500, {})
    for k in range(500):
        sender.frame("r", 0, k, 7.0, _frame(k, shape=(16, 16)), timestamp=1.0)
    p.stop()  # as SIGTERM does, with the frames sent but (the loop not started yet) none handled
    thread.start()
    thread.join(60)
    sender.close()
    assert not thread.is_alive()
    (scan,) = list_scans(tmp_path / "r.h5")
    assert scan["frames_recorded"] == 500  # recorded, as incomplete (the scan never ended)


def test_documents_are_bounded_and_the_overflow_counted(tmp_path):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), max_documents=10))
    for k in range(50):
        p.ingest(wire.encode("document", run="r", name="event", doc={"k": k}))
    p.shutdown()
    assert [d["k"] for _, d in p.documents] == list(range(40, 50)) and p.counters["documents_dropped"] == 40


@pytest.mark.parametrize("key, value", [("flush_every_s", 0), ("max_open_runs", 0)])
def test_recording_budgets_are_validated(key, value):
    from streamer.settings import ConfigError

    with pytest.raises(ConfigError, match=f"recording.{key}"):
        ServiceConfig(recording={key: value})


def test_a_flood_of_bare_scan_starts_costs_the_disk_nothing_and_is_bounded(tmp_path):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), max_open_scans=8))
    for s in range(500):
        p.ingest(wire.encode("scan_start", run="flood", scan=s, num_frames=4, metadata={}))
    p.ingest(wire.encode("scan_start", run="flood", scan=999, num_frames=1, metadata={}))
    p.ingest(wire.encode_frame(run="flood", scan=999, frame=0, seq=0, theta_deg=7.0, timestamp=1.0, array=_frame(5)))
    p.ingest(wire.encode("scan_end", run="flood", scan=999, num_frames=1))
    assert len(p.assembler.open_scans) <= 8 and p.counters["evicted_scan"] == 500 - 7
    p.recording.wait()
    assert [s["scan"] for s in list_scans(tmp_path / "flood.h5")] == [999]  # the bare starts never reached it
    p.shutdown()


def test_the_event_log_is_never_written_through_a_link(tmp_path):
    from streamer.recording.event_log import EventLog

    target = tmp_path / "elsewhere.jsonl"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "events.jsonl").symlink_to(target)
    with pytest.raises(OSError, match="link is never followed"):
        EventLog(tmp_path / "out" / "events.jsonl")
    assert not target.exists()


CHILD = """
import json, resource, signal, sys
import numpy as np
from streamer.recording.thread import RecordingWriter
limit = int(sys.argv[2])  # a disk that fills: writes beyond the limit fail (EFBIG) inside HDF5
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
writer = RecordingWriter(sys.argv[1], flush_every_s=0.2)
rng = np.random.default_rng(0)
writer.start_scan("r", 0, 60, {})
for k in range(60):
    writer.add_frame("r", 0, k, 7.0, 1.0, rng.integers(0, 2**32, (64, 64), dtype=np.uint32))
first = writer.end_scan("r", 0, [], "complete", num_frames=60).result(60)
writer.start_scan("r", 1, 1, {})
writer.add_frame("r", 1, 0, 7.0, 1.0, np.zeros((64, 64), np.uint32))
second = writer.end_scan("r", 1, [], "complete", num_frames=1).result(60)
writer.close()
print(json.dumps({"first": first, "second": second, "alarms": list(writer.alarms), "counters": dict(writer.counters)}))
"""


@pytest.mark.parametrize("limit_bytes", [300_000, 30_000, 12_000, 0],
                         ids=["fills-mid-scan", "fills-at-the-swmr-switch", "fills-at-the-first-frame", "no-space"])
def test_a_full_disk_is_an_alarm_not_a_crash(tmp_path, limit_bytes):
    """HDF5's own writes fail (a file-size limit in a child process: the disk fills mid-scan, as the file
    switches to SWMR, which crashed HDF5 at close, or has no space at all): the process lives and exits
    cleanly, no scan is called complete, one alarm is raised."""
    import json

    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(limit_bytes)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]  # alive to the end, and a clean exit (no segfault)
    report = json.loads(done.stdout)
    assert report["first"]["complete"] is False and report["second"]["complete"] is False
    assert report["first"]["error"] and report["counters"]["recording_error"] == 1
    assert len(report["alarms"]) == 1


def test_a_disk_under_its_reserve_refuses_frames_with_one_alarm_and_recording_resumes_when_freed(tmp_path):
    """A disk that fills (its free space is the capacity less the files written): no HDF5 write fails,
    the scans written before stay complete, those refused are incomplete, one alarm; freed, it goes on."""
    disk = {"capacity_bytes": 2**20 + 400_000}

    def free_bytes(path):
        return disk["capacity_bytes"] - sum(f.stat().st_size for f in path.iterdir())

    writer = RecordingWriter(tmp_path, min_free_bytes=2**20, free_bytes=free_bytes, flush_every_s=0.2)
    rng = np.random.default_rng(0)
    sent, results = {}, []
    for scan in range(8):
        if scan == 6:
            writer.wait()
            disk["capacity_bytes"] += 20 * 2**20  # the operator freed space
        writer.start_scan("r", scan, 20, {})
        sent[scan] = rng.integers(0, 2**32, (20, 64, 64), dtype=np.uint32)  # 16 KB a frame, incompressible
        for k in range(20):
            writer.add_frame("r", scan, k, 7.0 + k, 1.0, sent[scan][k])
        results.append(writer.end_scan("r", scan, [], "complete", num_frames=20).result(30))
    writer.close()
    complete = [r["complete"] for r in results]
    assert complete[0] and not all(complete[:6]) and complete[6] and complete[7], complete
    first_refused = complete.index(False)
    assert not any(complete[first_refused:6]), complete  # refused until space was freed
    assert all("kept free" in r["error"] for r in results[first_refused:6])
    assert writer.counters["recording_disk_full"] == 1 and writer.counters["recording_error"] == 0
    assert writer.counters["recording_refused"] > 0
    assert [a for a in writer.alarms if "kept free" in a] == list(writer.alarms) and len(writer.alarms) == 1
    statuses = {s["scan"]: s["status"] for s in list_scans(writer.path("r"))}
    assert all(statuses[s] == "complete" for s in range(first_refused)) and statuses[7] == "complete"
    assert all(statuses.get(s, "incomplete") == "incomplete" for s in range(first_refused, 6)), statuses
    np.testing.assert_array_equal(read_scan(writer.path("r"), 0)["frames"], sent[0])
    np.testing.assert_array_equal(read_scan(writer.path("r"), 7)["frames"], sent[7])


def test_the_service_keeps_its_configured_disk_reserve_and_says_so_in_the_event(tmp_path):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), realtime_policy="all",
                               recording={"min_free_mb": 2.0**40}))  # more than any disk has
    p._worker.start()
    p.ingest(wire.encode("scan_start", run="r", scan=0, num_frames=2, metadata={}))
    for f in range(2):
        p.ingest(wire.encode_frame(run="r", scan=0, frame=f, seq=f, theta_deg=7.0, timestamp=1.0, array=_frame(f)))
    p.ingest(wire.encode("scan_end", run="r", scan=0, num_frames=2))
    p.shutdown()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["ingest"]["complete"] is False and "MB kept free" in event["ingest"]["recording_error"]
    assert p.counters["recording_disk_full"] == 1 and p.counters["frames_not_recorded"] == 2
    assert not (tmp_path / "r.h5").exists()


def test_a_recording_process_that_dies_costs_its_open_scans_not_the_service(tmp_path):
    """The recording process is killed mid-scan: that scan is incomplete and says why, the run's file is
    not touched again, and the next run is recorded by a new process."""
    import signal

    writer = RecordingWriter(tmp_path)
    writer.start_scan("r", 0, 3, {})
    writer.add_frame("r", 0, 0, 7.0, 1.0, _frame(1))
    writer.wait()
    first_pid = writer._process.pid
    os.kill(first_pid, signal.SIGKILL)
    writer.add_frame("r", 0, 1, 7.1, 1.0, _frame(2))
    writer.add_frame("r", 0, 2, 7.2, 1.0, _frame(3))
    lost = writer.end_scan("r", 0, [], "complete", num_frames=3).result(30)
    writer.start_scan("s", 0, 1, {})
    writer.add_frame("s", 0, 0, 7.0, 1.0, _frame(4))
    kept = writer.end_scan("s", 0, [], "complete", num_frames=1).result(30)
    second_pid = writer._process.pid
    writer.close()
    assert lost["complete"] is False and "SIGKILL" in lost["error"], lost
    assert kept["complete"] is True and second_pid != first_pid
    assert writer.counters["recording_process_died"] == 1
    assert read_scan(writer.path("s"), 0)["frames"][0, 0, 0] == 4


UNWRITABLE_CHILD = """
import json, os, subprocess, sys, time
import numpy as np
from streamer.messaging import wire
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

def scan(p, run, k):
    p.ingest(wire.encode("scan_start", run=run, scan=k, num_frames=2, metadata={}))
    for f in range(2):
        p.ingest(wire.encode_frame(run=run, scan=k, frame=f, seq=f, theta_deg=7.0, timestamp=1.0,
                                   array=np.full((8, 8), f + 1, np.uint32)))
    p.ingest(wire.encode("scan_end", run=run, scan=k, num_frames=2))

out, how = sys.argv[1], sys.argv[2]
p = Pipeline(ServiceConfig(out_dir=out, realtime_policy="all"))
p._worker.start()
scan(p, "a", 0)
events = os.path.join(out, "events.jsonl")
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not os.path.exists(events) or not open(events).read():
    time.sleep(0.05)  # scan 0's event: its recording confirmed
if how == "chmod":  # the folder becomes unwritable mid-run
    os.chmod(out, 0o500)
elif how == "chattr":  # root writes anywhere, but not into an immutable folder
    subprocess.run(["chattr", "+i", out], check=True)
else:  # no way to stop root writing here: the new run's file name is taken by a folder
    os.mkdir(os.path.join(out, "b.h5"))
scan(p, "a", 1)  # its file is open already
scan(p, "b", 0)  # a new run needs a new file
p.shutdown()
if how == "chattr":
    subprocess.run(["chattr", "-i", out], check=True)
print(json.dumps({"alarms": list(p.recording.alarms), "counters": dict(p.counters),
                  "recording": dict(p.recording.counters)}))
"""


def _unwritable_folder_method(tmp_path) -> str:
    """chmod for a user; for root (whom permissions do not stop) an immutable folder where the file system
    allows it, else a folder in the place of the new run's file."""
    if os.geteuid() != 0:
        return "chmod"
    import shutil

    probe = tmp_path / "probe"
    probe.mkdir()
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode == 0:
        try:
            (probe / "x").touch()
            blocked = False
        except OSError:
            blocked = True
        subprocess.run(["chattr", "-i", str(probe)], check=True)
        if blocked:
            return "chattr"
    return "folder-in-the-way"


def test_a_folder_made_unwritable_mid_run_is_an_alarm_not_a_crash(tmp_path):
    """The run whose file is open goes on; the new run that cannot get a file is an alarm and its scan is
    not complete; the process (and its recording process) exits cleanly."""
    import json

    out = tmp_path / "out"
    out.mkdir()
    how = _unwritable_folder_method(tmp_path)
    try:
        done = subprocess.run([sys.executable, "-c", UNWRITABLE_CHILD, str(out), how], capture_output=True,
                              text=True, timeout=180)
    finally:
        if how == "chattr":
            subprocess.run(["chattr", "-i", str(out)], capture_output=True)
        os.chmod(out, 0o700)
    assert done.returncode == 0, f"{how}: {done.stderr[-3000:]}"  # alive to the end, no segfault
    report = json.loads(done.stdout.strip().splitlines()[-1])
    events = {(e["run"], e["scan"]): e for e in read_events(out / "events.jsonl")}
    assert events[("a", 0)]["ingest"]["complete"] is True and events[("a", 1)]["ingest"]["complete"] is True, how
    assert events[("b", 0)]["ingest"]["complete"] is False, how
    assert event_alarm(events[("b", 0)]).startswith("recording: ")
    assert report["alarms"] and any("b" in a or "ermission" in a for a in report["alarms"])
    recorded = [s for f in out.glob("*.h5") if f.is_file() for s in list_scans(f)]
    assert sorted((s["scan"], s["frames_recorded"]) for s in recorded) == [(0, 2), (1, 2)]


def _small_recording(path):
    from streamer.recording.recorder import RunRecorder

    r = RunRecorder(path, "r")
    for s in range(3):
        r.start_scan(s, 4, {"voltage_v": 3.5, "note": "x" * 3000})
        for k in range(4):
            r.add_frame(s, k, 7.0, 1.0, np.full((8, 8), k, np.uint32))
        r.end_scan(s, [])
    r.close()
    return bytearray(path.read_bytes())


def test_a_damaged_recording_fails_at_once_naming_it_instead_of_hanging(tmp_path):
    """HDF5's SWMR reader retries a block whose checksum fails for minutes: a file no writer holds is read
    as a plain file, so damage is an error within seconds (the test runs in a child with a timeout)."""
    data = _small_recording(tmp_path / "good.h5")
    rng = np.random.default_rng(1)
    for p in rng.integers(2048, len(data), 50):
        data[p] ^= 0xFF
    (tmp_path / "bad.h5").write_bytes(bytes(data))
    code = ("from streamer.recording.recorder import list_scans, read_scan\n"
            "import sys\n"
            "try:\n    [read_scan(sys.argv[1], s['scan']) for s in list_scans(sys.argv[1])]\n"
            "except ValueError as exc:\n    print(type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bad.h5")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("DamagedRecording cannot read the recording") and "bad.h5" in done.stdout


def test_damaged_metadata_is_named_and_the_frames_still_read(tmp_path):
    data = _small_recording(tmp_path / "r.h5")
    at = bytes(data).find(b'"voltage_v"')
    data[at:at + 20] = b"\xff" * 20
    (tmp_path / "r.h5").write_bytes(bytes(data))
    s = read_scan(tmp_path / "r.h5", 0)
    assert "not readable JSON" in s["metadata_error"] and s["metadata"] == {}
    assert s["frames"].shape == (4, 8, 8) and s["complete"]
    assert "metadata_error" not in read_scan(tmp_path / "r.h5", 1)


def test_a_frame_larger_than_the_configured_detector_is_refused_and_counted(tmp_path):
    from streamer.service.config import DetectorConfig

    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), detector=DetectorConfig(max_frame_bytes=64 * 64 * 4)))
    p.ingest(wire.encode("scan_start", run="r", scan=0, num_frames=2, metadata={}))
    p.ingest(wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=7.0, timestamp=1.0,
                               array=np.zeros((64, 64), np.uint32)))  # exactly the detector: taken
    p.ingest(wire.encode_frame(run="r", scan=0, frame=1, seq=1, theta_deg=7.0, timestamp=1.0,
                               array=np.zeros((64, 65), np.uint32)))  # one column more: refused
    assert p.counters["malformed"] == 1
    p.ingest(wire.encode("scan_end", run="r", scan=0, num_frames=2))
    p.shutdown()
    (scan,) = list_scans(next(tmp_path.glob("*.h5")))
    assert scan["frames_recorded"] == 1 and not scan["complete"]


def test_an_event_the_disk_refuses_is_counted_and_the_next_scan_goes_on(tmp_path):
    import errno

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), realtime_policy="all"))
    p._worker.start()
    kept, p.events._f = p.events._f, FullDisk()
    published, publish = [], p.results.publish
    p.results.publish = lambda topic, body: (published.append((topic, body)), publish(topic, body))[1]

    def scan(k):
        p.ingest(wire.encode("scan_start", run="r", scan=k, num_frames=1, metadata={}))
        p.ingest(wire.encode_frame(run="r", scan=k, frame=0, seq=k, theta_deg=7.0, timestamp=1.0, array=_frame(k)))
        p.ingest(wire.encode("scan_end", run="r", scan=k, num_frames=1))

    scan(0)
    deadline = time.monotonic() + 60
    while not p.counters["event_not_written"] and time.monotonic() < deadline:
        time.sleep(0.05)
    p.events._f = kept  # space freed
    scan(1)
    p.shutdown()
    assert p.counters["event_not_written"] == 1
    assert [e["scan"] for e in read_events(tmp_path / "events.jsonl")] == [1]
    assert [b["event"]["scan"] for t, b in published if t == "event"] == [0, 1]  # the operator saw both


KILLED_SERVICE = """
import sys, time
import numpy as np
from streamer.recording.thread import RecordingWriter
w = RecordingWriter(sys.argv[1])
w.start_scan("r", 0, 2, {})
for k in range(2):
    w.add_frame("r", 0, k, 7.0, 1.0, np.full((8, 8), k + 1, np.uint32))
w.end_scan("r", 0, [], "complete", num_frames=2).result(30)
w.start_scan("r", 1, 5, {})
for k in range(3):
    w.add_frame("r", 1, k, 7.0, 1.0, np.full((8, 8), 10 + k, np.uint32))
w.wait()
print(w._process.pid, flush=True)
time.sleep(120)
"""


def test_a_service_killed_with_sigkill_leaves_its_files_closed_by_the_recording_process(tmp_path):
    import signal

    import h5py

    with subprocess.Popen([sys.executable, "-c", KILLED_SERVICE, str(tmp_path)], stdout=subprocess.PIPE,
                          text=True) as service:
        child = int(service.stdout.readline())
        service.send_signal(signal.SIGKILL)
        service.wait(30)

    def running(pid):  # an exited child not yet reaped by whoever adopted it is a zombie: not running
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 30
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child), "the recording process outlived the service"
    with h5py.File(tmp_path / "r.h5", "r"):  # closed: a reader without SWMR opens it
        pass
    assert [(s["scan"], s["status"], s["frames_recorded"]) for s in list_scans(tmp_path / "r.h5")] == \
        [(0, "complete", 2), (1, "partial", 3)]
    assert list(read_scan(tmp_path / "r.h5", 1)["frames"][:, 0, 0]) == [10, 11, 12]
