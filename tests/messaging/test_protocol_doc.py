"""A sender written from docs/protocol.md alone (plain pyzmq + msgpack, no project imports)."""

import threading
import time
import zlib

import msgpack
import numpy as np
import zmq

from streamer.phasing import PhasingConfig
from streamer.recording.event_log import read_events
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline


def test_a_sender_written_from_the_protocol_document(tmp_path):
    cfg = ServiceConfig(out_dir=str(tmp_path), phasing=PhasingConfig(recipe="20HIO, 10ER", population=1))
    pipeline = Pipeline(cfg)
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()

    # --- from here on only what docs/protocol.md says ---
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDTIMEO, 30_000)
    sock.connect(pipeline.frames_endpoint)
    seq = 0

    def send(header, buffer=None):
        nonlocal seq
        parts = [msgpack.packb({"version": 1, "seq": seq, **header}, use_bin_type=True)]
        if buffer is not None:
            parts.append(buffer)
        sock.send_multipart(parts, copy=False)
        seq += 1

    geometry = {"kind": "orthogonal", "shape_zyx": [16, 16, 16], "voxel_nm": 30.0, "d_spacing_nm": 0.55,
                "theta_bragg_deg": 7.0}
    rng = np.random.default_rng(5)
    z, y, x = np.ogrid[-8:8, -8:8, -8:8]
    volume = rng.poisson(3000 * np.exp(-(z**2 + y**2 + x**2) / 5.0)).astype(np.uint32)
    send({"type": "run_start", "run": "doc-run", "metadata": {"sample": "test"}})
    send({"type": "scan_start", "run": "doc-run", "scan": 0, "num_frames": 16,
          "metadata": {"voltage_v": 3.6, "capacity_mah_g": 30.0, "geometry": geometry}})
    for i in range(16):
        frame = np.ascontiguousarray(volume[:, :, i])
        buffer = memoryview(frame).cast("B")
        header = {"type": "frame", "run": "doc-run", "scan": 0, "frame": i, "theta_deg": 7.0 + 0.02 * i,
                  "timestamp": time.time(), "shape": list(frame.shape), "dtype": "uint32", "encoding": "raw"}
        if i == 5:  # corrupted in transit: its crc32 no longer matches, so it is rejected; then sent again
            damaged = bytearray(buffer)
            damaged[100] ^= 0xFF
            send({**header, "crc32": zlib.crc32(buffer)}, bytes(damaged))
        if i == 0:  # crc32 is optional: a frame without it is accepted unchecked
            send(header, buffer)
        else:
            send({**header, "crc32": zlib.crc32(buffer)}, buffer)
    send({"type": "heartbeat"})
    send({"type": "scan_end", "run": "doc-run", "scan": 0, "num_frames": 16})
    send({"type": "run_stop", "run": "doc-run"})
    sock.close(linger=10_000)
    ctx.term()
    # --- end of the document's sender ---

    thread.join(60)
    assert not thread.is_alive()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["run"] == "doc-run" and event["voltage_v"] == 3.6
    # the damaged frame: rejected, and its seq, unreadable, is a gap
    assert event["ingest"]["complete"] and event["ingest"]["rejected"] == {"malformed": 1, "sequence_gap": 1}
    assert event["reconstruction"]["status"] == "done" and "error" not in event
