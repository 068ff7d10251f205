"""Frame-stream throughput: raw pyzmq PUSH/PULL vs our ingest + assembly + compressed recording.

Both runs move the same 512x512 uint32 frames (mostly zeros, a bright Poisson peak) over
loopback from a sender process to this process, in the same invocation, so their ratio is fair.

    .venv/bin/python benchmarks/ingest_throughput.py [--frames 3000] [--per-scan 100] [--checksum both]

``--checksum on|off|both``: whether FrameSender adds each frame's crc32 (verified on arrival).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

SHAPE = (512, 512)


def make_frames(n_distinct: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Realistic counting-detector frames: zeros, sparse dark counts and a bright speckled peak."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[: SHAPE[0], : SHAPE[1]]
    frames = []
    for i in range(n_distinct):
        cy, cx = 256 + 3 * np.sin(i), 256 + 3 * np.cos(i)
        peak = 5000 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 6.0**2)) * (1 + np.cos(0.8 * (x - cx)))
        frames.append(rng.poisson(peak + 0.001).astype(np.uint32))
    return frames


def _raw_sender(endpoint: str, n: int, copy: bool = False) -> None:
    frames = make_frames()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.connect(endpoint)
    for i in range(n):
        sock.send_multipart([b"h", frames[i % len(frames)]], copy=copy)
    sock.close(linger=60_000)
    ctx.term()


def _bcdi_sender(endpoint: str, n: int, per_scan: int, encoding: str, checksum: bool = True) -> None:
    from streamer.messaging.transport import FrameSender
    from streamer.messaging.wire import EncodedFrame, bslz4_chunk

    frames = make_frames()
    if encoding == "bslz4":  # compressed once, as a detector's stream arrives: the sender does no work
        frames = [EncodedFrame(memoryview(bslz4_chunk(f)), f.shape, f.dtype) for f in frames]
    sender = FrameSender(endpoint, timeout_s=120, encoding=encoding, checksum=checksum)
    sent = 0
    scan = 0
    while sent < n:
        count = min(per_scan, n - sent)
        sender.scan_start("bench", scan, count, {"voltage_v": 3.5})
        for k in range(count):
            sender.frame("bench", scan, k, 7.0 + 0.01 * k, frames[(sent + k) % len(frames)])
        sender.scan_end("bench", scan, count)
        sent += count
        scan += 1
    sender.run_stop("bench")
    sender.close(linger_s=120)


def bench_raw(n: int, copy: bool = False) -> float:
    """Frames/s of bare pyzmq PUSH/PULL; ``copy`` True copies each buffer on both sides."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 1000)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    proc = multiprocessing.get_context("spawn").Process(target=_raw_sender,
                                                         args=(f"tcp://127.0.0.1:{port}", n, copy))
    proc.start()
    sock.recv_multipart(copy=copy)
    t0 = time.perf_counter()
    for _ in range(n - 1):
        sock.recv_multipart(copy=copy)
    dt = time.perf_counter() - t0
    proc.join()
    sock.close()
    ctx.term()
    return (n - 1) / dt


def bench_pipeline(n: int, per_scan: int, encoding: str = "raw", checksum: bool = True,
                   ) -> tuple[float, int, Path, float]:
    from streamer.recording.recorder import list_scans
    from streamer.service.config import ServiceConfig
    from streamer.service.pipeline import Pipeline

    out = Path(tempfile.mkdtemp(prefix="bcdi-bench-"))
    pipeline = Pipeline(ServiceConfig(out_dir=str(out), receive_timeout_s=0.05))
    first = threading.Event()
    original = pipeline.ingest
    t0, cpu0 = [0.0], [0.0]

    def timed_ingest(parts):
        if not first.is_set():
            first.set()
            t0[0] = time.perf_counter()
            cpu0[0] = time.process_time()
        return original(parts)

    pipeline.ingest = timed_ingest
    proc = multiprocessing.get_context("spawn").Process(target=_bcdi_sender,
                                                         args=(pipeline.frames_endpoint, n, per_scan, encoding,
                                                               checksum))
    proc.start()
    pipeline.run()  # returns after run_stop, with every scan assembled, recorded and flushed
    dt = time.perf_counter() - t0[0]
    cpu = time.process_time() - cpu0[0]
    proc.join()
    recorded = sum(s["frames_recorded"] for s in list_scans(out / "bench.h5"))
    return n / dt, recorded, out, cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--per-scan", type=int, default=100)
    ap.add_argument("--checksum", choices=("on", "off", "both"), default="both",
                    help="frames with their crc32 (verified on arrival), without, or both in turn")
    args = ap.parse_args()
    frames = make_frames(4)
    raw_bytes = frames[0].nbytes
    print(f"{args.frames} frames of {SHAPE[0]}x{SHAPE[1]} uint32 ({raw_bytes / 1e6:.2f} MB each), "
          f"{args.per_scan} per scan, loopback, sender in a second process")
    copied = bench_raw(args.frames, copy=True)
    raw = bench_raw(args.frames)
    print(f"raw pyzmq PUSH/PULL, copying buffers:  {copied:8.0f} frames/s  ({copied * raw_bytes / 1e9:.2f} GB/s)")
    print(f"raw pyzmq PUSH/PULL, zero-copy:        {raw:8.0f} frames/s  ({raw * raw_bytes / 1e9:.2f} GB/s)"
          f"  <- the floor the ratios use")
    checksums = {"on": (True,), "off": (False,), "both": (True, False)}[args.checksum]
    labels = (("raw", "raw frames on the wire"),
              ("bslz4", "frames arriving bitshuffle+LZ4 compressed (as from a Dectris/Timepix stream)"))
    for (encoding, label), checksum in itertools.product(labels, checksums):
        ours, recorded, out, cpu_per_frame = bench_pipeline(args.frames, args.per_scan, encoding, checksum)
        size = sum(f.stat().st_size for f in out.glob("*.h5"))
        print(f"ours, {label}, crc32 {'on' if checksum else 'off'}: ingest + assembly + recording")
        print(f"    {ours:8.0f} frames/s  ({ours * raw_bytes / 1e9:.2f} GB/s of pixels), ratio to raw pyzmq "
              f"{ours / raw:.2f}, receiver CPU {cpu_per_frame * 1e3:.3f} ms/frame")
        print(f"    frames recorded: {recorded} of {args.frames} (lost: {args.frames - recorded}); "
              f"file {size / 1e6:.1f} MB, compression {args.frames * raw_bytes / max(size, 1):.1f}x")
    print(f"peak memory (max RSS of this process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
