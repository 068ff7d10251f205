"""The pipeline service on loopback: bad input is counted and logged, valid frames all arrive."""

import threading

import msgpack
import numpy as np
import pytest
import zmq

from streamer.config import ServiceConfig
from streamer.events import read_events
from streamer.geometry import OrthogonalGeometry
from streamer.phasing import PhasingConfig
from streamer.recording import read_scan
from streamer.service import Pipeline
from streamer.transport import FrameSender

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
    raw = ctx.socket(zmq.PUSH)
    raw.connect(p.frames_endpoint)
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
    raw.close()
    thread.join(60)
    assert not thread.is_alive()
    assert counters == {"malformed": 2, "duplicate_frame": 1, "unknown_scan": 1}
    events = read_events(p.out_dir / "events.jsonl")
    assert len(events) == 1
    ev = events[0]
    assert ev["scan"] == 0 and ev["voltage_v"] == 3.5 and ev["ingest"]["complete"]
    assert ev["peak"]["width_parallel"] > 0 and "error" not in ev
    rec = read_scan(p.out_dir / "r.h5", 0)
    np.testing.assert_array_equal(np.moveaxis(rec["frames"], 0, -1), vol)
    topics = []
    while sub.poll(1000):
        topic, body = sub.recv_multipart()
        topics.append((topic, msgpack.unpackb(body)["seq"]))
    sub.close()
    assert topics[-1][0] == b"run_done"


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
