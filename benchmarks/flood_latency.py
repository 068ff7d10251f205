"""A valid scan's result latency and the service's memory under floods (issue 20).

A pipeline runs in a thread on loopback; a small valid scan (8^3, one member, "10ER") is sent and
timed from its scan_end to its event on the results channel: alone, after 5,000 scan_starts at full
rate, after two floods of bluesky documents, and after bslz4 frames that declare huge sizes. RSS and
peak RSS (VmHWM) growth are read from /proc/self/status after each flood. Run:
python benchmarks/flood_latency.py [--json] (tests/service/test_floods.py runs a short version).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time

import numpy as np

from streamer.cli import process_settings
from streamer.geometry import OrthogonalGeometry
from streamer.messaging import wire
from streamer.messaging.results import ResultsSubscriber
from streamer.messaging.transport import FrameSender
from streamer.phasing import PhasingConfig
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

GEO = OrthogonalGeometry(shape_zyx=(8, 8, 8), voxel_nm=12.0)


def _trim() -> None:
    """Return freed heap memory to the system (glibc); nothing elsewhere."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``) or its peak so far (``VmHWM``), MB. Memory the program has freed
    is handed back to the system first (glibc's ``malloc_trim``, where there is one): the pipeline's threads each
    keep an arena, and what one freed could otherwise read as growth when another allocates (one clean-clone run:
    a second documents flood read +34.7 MB of 45.8 sent while the kept documents are bounded)."""
    _trim()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _valid_scan(sender: FrameSender, scan: int) -> None:
    rng = np.random.default_rng(scan)
    sender.scan_start("valid", scan, 8, {"voltage_v": 3.5, "capacity_mah_g": 1.0, "geometry": GEO.to_dict()})
    for k in range(8):
        sender.frame("valid", scan, k, 7.0, rng.poisson(50, (8, 8)).astype(np.uint32), timestamp=time.time())


def _latency(sender: FrameSender, sub: ResultsSubscriber, scan: int) -> float:
    t0 = time.perf_counter()
    sender.scan_end("valid", scan, 8)
    while True:
        result = sub.receive(60)
        if result is None:
            return float("nan")
        if result.topic == "event" and result.body["event"]["run"] == "valid" and result.body["event"]["scan"] == scan:
            return time.perf_counter() - t0


def main() -> None:
    process_settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan-starts", type=int, default=5000)
    ap.add_argument("--documents", type=int, default=20000, help="documents of 16 kB each")
    ap.add_argument("--bombs", type=int, default=200, help="bslz4 frames declaring 16384^2 float32")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = ap.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = ServiceConfig(out_dir=tmp, exit_on_run_stop=False, realtime_policy="all",
                               phasing=PhasingConfig(population=1, average=1, recipe="10ER", warm_recipe="10ER"))
        pipeline = Pipeline(config)
        thread = threading.Thread(target=pipeline.run, daemon=True)
        thread.start()
        sender = FrameSender(pipeline.frames_endpoint)
        with ResultsSubscriber(pipeline.results_endpoint, ["event"]) as sub:
            time.sleep(0.3)  # the subscription reaches the publisher
            rss0 = _rss_mb()
            _valid_scan(sender, 0)
            _latency(sender, sub, 0)  # plans made, caches warm
            _valid_scan(sender, 1)
            alone = _latency(sender, sub, 1)
            print(f"valid scan alone: event {alone:.2f} s after its scan_end")
            bomb = wire.encode_frame(run="flood", scan=0, frame=0, seq=0, theta_deg=7.0, timestamp=1.0,
                                     array=np.zeros((64, 64), np.float32), encoding="bslz4")
            header = wire.msgpack.unpackb(bomb[0])
            header["shape"] = [16384, 16384]
            bomb = [wire.msgpack.packb(header)] + bomb[1:]
            hwm0 = _rss_mb("VmHWM")
            for _ in range(args.bombs):
                sender._sock.send_multipart(bomb)
            _valid_scan(sender, 4)
            bombs = _latency(sender, sub, 4)
            figures["bombs"] = {"latency_s": bombs, "peak_rss_growth_mb": _rss_mb("VmHWM") - hwm0,
                                "malformed": pipeline.counters["malformed"]}
            print(f"after {args.bombs} bslz4 frames declaring 16384^2 float32 (1 GB each): event {bombs:.2f} s "
                  f"after its scan_end; malformed {pipeline.counters['malformed']}; peak RSS "
                  f"{figures['bombs']['peak_rss_growth_mb']:+.0f} MB")
            rss1 = _rss_mb()
            t0 = time.perf_counter()
            for s in range(args.scan_starts):
                sender.scan_start("flood", s, 8, {"voltage_v": 3.5})
            _valid_scan(sender, 2)
            flooded = _latency(sender, sub, 2)
            figures["scan_starts"] = {"latency_s": flooded, "added_s": flooded - alone, "rss_growth_mb": _rss_mb() - rss1,
                                      "open_scans": len(pipeline.assembler.open_scans),
                                      "evicted": pipeline.counters["evicted_scan"]}
            print(f"after {args.scan_starts} scan_starts (sent in {time.perf_counter() - t0:.2f} s): event "
                  f"{flooded:.2f} s after its scan_end ({flooded - alone:+.2f} s); open scans held "
                  f"{len(pipeline.assembler.open_scans)}, evicted {pipeline.counters['evicted_scan']}; RSS "
                  f"{figures['scan_starts']['rss_growth_mb']:+.0f} MB")
            doc = {"blob": "x" * 16000}
            for flood in (1, 2):  # the second flood shows whether memory grows with what is sent
                rss = _rss_mb()
                for _ in range(args.documents):
                    sender._sock.send_multipart(wire.encode("document", run="flood", name="event", doc=doc))
                _valid_scan(sender, 4 + flood)
                docs = _latency(sender, sub, 4 + flood)
                figures[f"documents_{flood}"] = {"latency_s": docs, "rss_growth_mb": _rss_mb() - rss,
                                                 "sent_mb": args.documents * 16000 / 2**20,
                                                 "kept": len(pipeline.documents),
                                                 "dropped": pipeline.counters["documents_dropped"]}
                print(f"documents flood {flood}: {args.documents} of 16 kB ({args.documents * 16000 / 2**20:.0f} MB): "
                      f"event {docs:.2f} s after its scan_end; documents kept {len(pipeline.documents)}, dropped "
                      f"{pipeline.counters['documents_dropped']}; RSS {figures[f'documents_{flood}']['rss_growth_mb']:+.0f} MB")
            figures["alone_s"] = alone
            figures["rss_growth_mb"] = _rss_mb() - rss0
            print(f"RSS growth over all the floods: {figures['rss_growth_mb']:.0f} MB")
        sender.close()
        pipeline.stop()
        thread.join(30)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
