"""The pipeline service on loopback: bad input is counted and logged, valid frames all arrive."""

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from streamer.geometry import OrthogonalGeometry
from streamer.messaging.transport import FrameSender
from streamer.phasing import PhasingConfig
from streamer.recording.event_log import read_events
from streamer.recording.recorder import read_scan
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

GEOM = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=30.0)


@pytest.fixture
def pipeline(tmp_path):
    cfg = ServiceConfig(out_dir=str(tmp_path), phasing=PhasingConfig(recipe="20HIO, 10ER", population=1))
    p = Pipeline(cfg)
    ready = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.update(p.run(on_ready=lambda _: ready.set())), daemon=True)
    t.start()
    ready.wait(5)
    yield p, result, t
    p.stop()
    t.join(10)


def _volume(rng):
    z, y, x = np.ogrid[-8:8, -8:8, -8:8]
    return rng.poisson(2000 * np.exp(-(z**2 + y**2 + x**2) / 6.0)).astype(np.uint32)


def test_bad_messages_are_counted_and_valid_frames_processed(pipeline, rng):
    p, counters, thread = pipeline
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(p.results_endpoint)
    sender = FrameSender(p.frames_endpoint, ctx=ctx)
    raw = sender._sock  # garbage goes down the same connection, so it arrives before run_stop
    vol = _volume(rng)  # (q_z, q_y, q_x); frames are (q_z, q_y) at each q_x
    sender.scan_start("r", 0, 16, {"voltage_v": 3.5, "capacity_mah_g": 20.0, "geometry": GEOM.to_dict()})
    for k in range(16):
        sender.frame("r", 0, k, 7.0 + k, np.ascontiguousarray(vol[:, :, k]), timestamp=1000.0 + k)
        if k == 3:
            raw.send_multipart([b"not msgpack at all"])
            raw.send_multipart([msgpack.packb({"type": "frame", "version": 1})])
            sender.frame("r", 0, 3, 7.0, np.zeros((16, 16), np.uint32))  # duplicate
            sender.frame("r", 9, 0, 7.0, np.zeros((16, 16), np.uint32))  # unknown scan
    sender.scan_end("r", 0, 16)
    sender.run_stop("r")
    sender.close()
    thread.join(60)
    topics = []
    while sub.poll(1000):
        topic, body = sub.recv_multipart()
        topics.append((topic, msgpack.unpackb(body)["seq"]))
    sub.close()
    assert not thread.is_alive()
    assert counters == {"malformed": 2, "duplicate_frame": 1, "unknown_scan": 1}
    events = read_events(p.out_dir / "events.jsonl")
    assert len(events) == 1
    ev = events[0]
    assert ev["scan"] == 0 and ev["voltage_v"] == 3.5 and ev["ingest"]["complete"]
    assert ev["peak"]["width_parallel"] > 0 and "error" not in ev
    rec = read_scan(p.out_dir / "r.h5", 0)
    np.testing.assert_array_equal(np.moveaxis(rec["frames"], 0, -1), vol)
    assert topics[-1][0] == b"run_done" and [seq for _, seq in topics] == list(range(1, len(topics) + 1))


def test_missing_frames_and_missing_geometry_are_reported(pipeline, rng):
    p, counters, thread = pipeline
    sender = FrameSender(p.frames_endpoint)
    vol = _volume(rng)
    sender.scan_start("r", 0, 16, {"geometry": GEOM.to_dict()})
    for k in range(16):
        if k not in (4, 5):
            sender.frame("r", 0, k, 7.0, np.ascontiguousarray(vol[:, :, k]), timestamp=1.0)
    sender.scan_end("r", 0, 14)
    sender.scan_start("r", 1, 2, {})
    for k in range(2):
        sender.frame("r", 1, k, 7.0, np.ascontiguousarray(vol[:, :, k]))
    sender.scan_end("r", 1, 2)
    sender.run_stop("r")
    sender.close()
    thread.join(60)
    events = read_events(p.out_dir / "events.jsonl")
    assert events[0]["ingest"]["missing_frames"] == [4, 5] and not events[0]["ingest"]["complete"]
    assert "error" not in events[0] and events[0]["peak"]
    assert "geometry" in events[1]["error"] and events[1]["flags"] == []
    assert counters["incomplete_scan"] == 1


def _pipeline_thread(p):
    ready = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.update(p.run(on_ready=lambda _: ready.set())), daemon=True)
    t.start()
    ready.wait(5)
    return t, result


def test_scan_of_a_dead_sender_times_out_and_names_missing_frames(tmp_path, rng):
    cfg = ServiceConfig(out_dir=str(tmp_path), scan_timeout_s=1.0,
                        phasing=PhasingConfig(recipe="10HIO", population=1))
    p = Pipeline(cfg)
    t, counters = _pipeline_thread(p)
    sender = FrameSender(p.frames_endpoint)
    vol = _volume(rng)
    sender.scan_start("r", 0, 16, {"geometry": GEOM.to_dict()})
    for k in range(10):
        sender.frame("r", 0, k, 7.0, np.ascontiguousarray(vol[:, :, k]))
    sender.close()  # the sender dies mid-scan
    deadline = time.time() + 10
    while time.time() < deadline and not (tmp_path / "events.jsonl").stat().st_size:
        time.sleep(0.1)
    p.stop()
    t.join(10)
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["ingest"]["status"] == "timed_out" and event["ingest"]["missing_frames"] == list(range(10, 16))
    assert counters["timed_out_scan"] == 1
    assert read_scan(tmp_path / "r.h5", 0)["status"] == "timed_out"


def test_receiver_restart_mid_run_loses_no_later_frame(tmp_path, rng):
    cfg = ServiceConfig(out_dir=str(tmp_path), realtime_policy="all",
                        phasing=PhasingConfig(recipe="10HIO", population=1))
    first = Pipeline(cfg)
    t1, _ = _pipeline_thread(first)
    port = int(first.frames_endpoint.rsplit(":", 1)[1])
    sender = FrameSender(first.frames_endpoint)
    vol = _volume(rng)
    meta = {"geometry": GEOM.to_dict(), "voltage_v": 3.5}

    def frames(scan, ks):
        for k in ks:
            sender.frame("r", scan, k, 7.0 + k, np.ascontiguousarray(vol[:, :, k]), num_frames=16)

    sender.run_start("r", {"geometry": GEOM.to_dict(), "sample": "test"})
    sender.scan_start("r", 0, 16, meta)
    frames(0, range(16))
    sender.scan_end("r", 0, 16)
    sender.scan_start("r", 1, 16, meta)
    frames(1, range(6))
    deadline = time.time() + 20
    while first.assembler.received("r", 1) < 6 and time.time() < deadline:
        time.sleep(0.01)
    first.stop()  # the receiver goes away mid-scan ...
    t1.join(30)
    frames(1, range(6, 16))  # ... while the sender goes on (ZeroMQ queues and reconnects)
    second = Pipeline(ServiceConfig(**{**cfg.__dict__, "frames_port": port}))
    t2, counters = _pipeline_thread(second)
    sender.scan_end("r", 1, 16)
    sender.scan_start("r", 2, 16, meta)
    frames(2, range(16))
    sender.scan_end("r", 2, 16)
    sender.run_stop("r")
    sender.close()
    t2.join(60)
    assert not t2.is_alive()
    events = {e["scan"]: e for e in read_events(tmp_path / "events.jsonl")}
    assert set(events) == {0, 1, 2}
    assert events[0]["ingest"]["complete"] and events[2]["ingest"]["complete"]
    assert events[1]["ingest"]["missing_frames"] == list(range(6))  # only what the first receiver held
    assert counters["implicit_scan"] == 1
    for scan in (0, 2):
        rec = read_scan(tmp_path / "r.h5", scan)
        np.testing.assert_array_equal(np.moveaxis(rec["frames"], 0, -1), vol)
    assert list(read_scan(tmp_path / "r.h5", 1)["frame_index"]) == list(range(6, 16))


def _held_pipeline(tmp_path, policy: str):
    """A pipeline whose worker holds each scan until ``gate`` is set (``entered``: one is held), its thread, and a
    sender of 16-frame scans of ``vol``."""
    cfg = ServiceConfig(out_dir=str(tmp_path), realtime_policy=policy, phasing=PhasingConfig(recipe="10HIO", population=1))
    p = Pipeline(cfg)
    gate, entered = threading.Event(), threading.Event()
    original = p.processor.process
    p.processor.process = lambda job: (entered.set(), gate.wait(30), original(job))[2]
    t, _ = _pipeline_thread(p)
    return p, t, gate, entered, FrameSender(p.frames_endpoint)


def _send_scan(sender, scan: int, vol) -> None:
    sender.scan_start("r", scan, 16, {"geometry": GEOM.to_dict()})
    for k in range(16):
        sender.frame("r", scan, k, 7.0, np.ascontiguousarray(vol[:, :, k]))
    sender.scan_end("r", scan, 16)


def test_latest_scan_wins_when_reconstruction_falls_behind(tmp_path, rng):
    p, t, gate, entered, sender = _held_pipeline(tmp_path, "latest")
    vol = _volume(rng)
    for scan in range(3):
        _send_scan(sender, scan, vol)
        if scan == 0:
            assert entered.wait(10)  # scan 0 is being reconstructed (and held there)
    deadline = time.time() + 10
    while time.time() < deadline and not (tmp_path / "events.jsonl").stat().st_size:
        time.sleep(0.05)  # the skipped scan's event comes first, while scan 0 is blocked
    gate.set()
    sender.run_stop("r")
    sender.close()
    t.join(60)
    events = {e["scan"]: e for e in read_events(tmp_path / "events.jsonl")}
    assert events[1]["reconstruction"] == {"status": "skipped", "reason": "superseded", "superseded_by": 2}
    assert events[1]["peak"]["width_parallel"] > 0  # every scan gets its quick metrics
    assert events[0]["reconstruction"]["status"] == "done"
    assert events[2]["reconstruction"] == {"status": "done", "compared_with_scan": 0}


@pytest.mark.parametrize("run_ended", [False, True])
def test_a_stop_finishes_the_scan_in_hand_and_says_the_waiting_ones_were_not_reconstructed(tmp_path, rng, run_ended):
    """A stop (SIGTERM, or the command of a replay gone) must not reconstruct a whole queue first (a killed replay's
    pipeline ran 40 minutes alone): the scan in hand finishes, the waiting ones are recorded and get an event; also
    when the run had ended and its queue was being worked through (a replay sends its run stop at once)."""
    p, t, gate, entered, sender = _held_pipeline(tmp_path, "all")
    vol = _volume(rng)
    for scan in range(3):
        _send_scan(sender, scan, vol)
    if run_ended:
        sender.run_stop("r")
    sender.close()
    assert entered.wait(10)  # scan 0 is being reconstructed (and held there)
    deadline = time.time() + 10
    while time.time() < deadline and (len(p._pending) < 2 or (run_ended and not p._closing)):
        time.sleep(0.05)
    assert len(p._pending) == 2 and p._closing == run_ended
    p.stop()
    gate.set()
    t.join(60)
    assert not t.is_alive()
    events = {e["scan"]: e for e in read_events(tmp_path / "events.jsonl")}
    assert events[0]["reconstruction"]["status"] == "done"
    for scan in (1, 2):
        assert events[scan]["reconstruction"] == {"status": "skipped", "reason": "stopped"}
        assert events[scan]["peak"]["width_parallel"] > 0 and events[scan]["ingest"]["complete"]
        assert read_scan(tmp_path / "r.h5", scan)["status"] == "complete"
    assert p.skipped_reconstructions == 2

def test_compressed_frames_are_recorded_as_sent_and_analysed(tmp_path, rng):
    from streamer.messaging import wire

    cfg = ServiceConfig(out_dir=str(tmp_path), phasing=PhasingConfig(recipe="10HIO", population=1))
    p = Pipeline(cfg)
    t, counters = _pipeline_thread(p)
    sender = FrameSender(p.frames_endpoint, encoding="bslz4")
    vol = _volume(rng)
    sender.scan_start("r", 0, 16, {"geometry": GEOM.to_dict()})
    for k in range(16):
        sender.frame("r", 0, k, 7.0, np.ascontiguousarray(vol[:, :, k]))
        if k == 2:  # a corrupted chunk with an honest-looking header: rejected at the door
            header, chunk = wire.encode_frame(run="r", scan=0, frame=3, seq=0, theta_deg=7.0, timestamp=1.0,
                                              array=np.ascontiguousarray(vol[:, :, 3]), encoding="bslz4")
            chunk = bytearray(chunk)
            chunk[20:40] = b"\xff" * 20
            sender._send([header, bytes(chunk)])
    sender.scan_end("r", 0, 16)
    sender.run_stop("r")
    sender.close()
    t.join(60)
    assert counters["malformed"] == 1
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["ingest"]["complete"] and event["reconstruction"]["status"] == "done"
    rec = read_scan(tmp_path / "r.h5", 0)
    np.testing.assert_array_equal(np.moveaxis(rec["frames"], 0, -1), vol)


def test_the_log_file_rotates(tmp_path):
    import logging

    from streamer.service.launch import rotating_log

    handler = rotating_log(str(tmp_path / "service.log"), max_bytes=2000, keep=2)
    logger = logging.getLogger("rotation-test")
    logger.addHandler(handler)
    try:
        for k in range(200):
            logger.warning("line %d of the service log", k)
    finally:
        logger.removeHandler(handler)
        handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["service.log", "service.log.1", "service.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
