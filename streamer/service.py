"""The pipeline service: ingest -> scan assembly -> recording -> analysis -> flags -> events.

The receive loop records every frame as it arrives; finished scans go to one worker thread that
analyses them in order (so scan k can be compared with scan k-1) while the next scan streams in.
Results are appended to ``events.jsonl`` and published (PUB) with a sequence number.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np
import zmq

from streamer import wire
from streamer.analysis import analyze_scan
from streamer.assembly import AssembledScan, ScanAssembler
from streamer.backend import get_namespace
from streamer.compare import baseline_peak, boundary_flags, broadening_flags, vortex_flags
from streamer.config import ServiceConfig
from streamer.events import EventLog, build_event
from streamer.geometry import STACK_TO_LAB_AXES, OrthogonalGeometry
from streamer.recording import RunRecorder
from streamer.transport import bind

log = logging.getLogger(__name__)


class ScanProcessor:
    """Turns assembled scans into events, remembering what the previous scans showed."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.xp = get_namespace(config.backend)
        self._previous: dict[str, object] = {}  # run -> previous ScanAnalysis
        self._peaks: dict[str, list[dict]] = {}

    def process(self, scan: AssembledScan, ingest: dict) -> dict:
        extra: dict = {"ingest": ingest}
        try:
            geometry = OrthogonalGeometry.from_dict(scan.metadata.get("geometry") or {})
        except (ValueError, TypeError) as exc:
            geometry = None
            extra["error"] = f"cannot analyse scan {scan.scan}: {exc}"
        peak, vortices, boundaries, flags = {}, [], [], []
        if geometry is not None and scan.frames.shape[0] != geometry.num_rocking_steps:
            extra["error"] = (f"scan {scan.scan} has {scan.frames.shape[0]} frames; the geometry expects "
                              f"{geometry.num_rocking_steps}")
            geometry = None
        if geometry is not None:
            volume = np.transpose(scan.frames, STACK_TO_LAB_AXES).astype(np.float32)
            mask = None
            if scan.missing:
                mask = np.zeros(volume.shape, bool)
                mask[:, :, scan.missing] = True
            prev = self._previous.get(scan.run)
            try:
                result = analyze_scan(
                    volume, geometry=geometry, xp=self.xp, phasing=self.config.phasing, config=self.config.analysis,
                    previous_rho=None if prev is None else prev.rho, mask=mask,
                    rng=np.random.default_rng([self.config.seed, scan.scan]),
                )
            except ValueError as exc:
                extra["error"] = f"analysis of scan {scan.scan} failed: {exc}"
            else:
                peak, vortices, boundaries = result.peak, result.vortices, result.domain_boundaries
                peaks = self._peaks.setdefault(scan.run, [])
                base = baseline_peak(peaks, self.config.flags)
                peaks.append(peak)
                if prev is not None:
                    flags += vortex_flags(prev.vortices, vortices, self.config.flags)
                    flags += boundary_flags(prev.domain_boundaries, boundaries)
                flags += broadening_flags(peak, base, self.config.flags)
                self._previous[scan.run] = result
                extra["phasing"] = result.phasing
        return build_event(run=scan.run, scan=scan.scan, metadata=scan.metadata, peak=peak, vortices=vortices,
                           domain_boundaries=boundaries, flags=flags, latency_s=0.0, **extra)


class Pipeline:
    """Owns the sockets, the recorder and the worker; ``run()`` loops until run stop or a signal."""

    def __init__(self, config: ServiceConfig, ctx: zmq.Context | None = None):
        self.config = config
        self.out_dir = Path(config.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._own_ctx = ctx is None
        self._ctx = ctx or zmq.Context()
        self.frames, self.frames_endpoint = bind(self._ctx, zmq.PULL, config.endpoint(config.frames_port))
        self.results, self.results_endpoint = bind(self._ctx, zmq.PUB, config.endpoint(config.results_port))
        self.assembler = ScanAssembler()
        self.processor = ScanProcessor(config)
        self.events = EventLog(self.out_dir / "events.jsonl")
        self._recorders: dict[str, RunRecorder] = {}
        self._todo: queue.Queue = queue.Queue()
        self._pub_lock = threading.Lock()
        self._seq = 0
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="scan-worker", daemon=True)

    # -- publishing -------------------------------------------------------------------------
    def _publish(self, topic: str, body: dict) -> None:
        with self._pub_lock:
            self._seq += 1
            self.results.send_multipart([topic.encode(), msgpack.packb({"seq": self._seq, **body}, default=str)])

    # -- worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._todo.get()
            if item is None:
                return
            scan, ingest = item
            try:
                event = self.processor.process(scan, ingest)
            except Exception:  # a bug must not stop the stream: log it, report the scan as failed
                log.exception("processing scan %s of run %s failed", scan.scan, scan.run)
                event = build_event(run=scan.run, scan=scan.scan, metadata=scan.metadata, peak={}, vortices=[],
                                    domain_boundaries=[], flags=[], latency_s=0.0, error="internal error; see log")
            event["latency_s"] = round(time.time() - scan.last_frame_time, 3)
            self.events.write(event)
            self._publish("event", {"event": event})

    # -- ingest -----------------------------------------------------------------------------
    def _recorder(self, run: str) -> RunRecorder:
        if run not in self._recorders:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run)
            self._recorders[run] = RunRecorder(self.out_dir / f"{safe}.h5", run)
        return self._recorders[run]

    def handle(self, msg: wire.Message) -> bool:
        """Act on one decoded message; True when the run is over and the loop should end."""
        h = msg.header
        if msg.type == "scan_start":
            self.assembler.start(h["run"], h["scan"], h["num_frames"], h["metadata"])
            self._recorder(h["run"]).start_scan(h["scan"], h["num_frames"], h["metadata"])
        elif msg.type == "frame":
            if self.assembler.add(h["run"], h["scan"], h["frame"], h["theta_deg"], h["timestamp"], msg.array):
                self._recorder(h["run"]).add_frame(h["scan"], h["frame"], h["theta_deg"], h["timestamp"], msg.array)
        elif msg.type == "scan_end":
            scan = self.assembler.finish(h["run"], h["scan"])
            if scan is not None:
                self._recorder(h["run"]).end_scan(h["scan"], scan.missing)
                ingest = {"complete": scan.complete, "missing_frames": scan.missing,
                          "rejected": dict(self.assembler.counters)}
                self._todo.put((scan, ingest))
        elif msg.type == "run_stop":
            return self.config.exit_on_run_stop
        return False

    def run(self, on_ready: Callable[[dict], None] | None = None) -> dict:
        """Serve until run stop (or ``stop()``); returns the rejection counters."""
        self._worker.start()
        log.info("listening for frames on %s, publishing results on %s", self.frames_endpoint, self.results_endpoint)
        if on_ready is not None:
            on_ready({"frames": self.frames_endpoint, "results": self.results_endpoint})
        poller = zmq.Poller()
        poller.register(self.frames, zmq.POLLIN)
        timeout_ms = int(self.config.receive_timeout_s * 1000)
        try:
            while not self._stop.is_set():
                if not poller.poll(timeout_ms):
                    continue
                parts = self.frames.recv_multipart(copy=False)
                try:
                    msg = wire.decode(parts)
                except wire.WireError as exc:
                    self.assembler.counters["malformed"] += 1
                    log.warning("rejected malformed message: %s", exc)
                    continue
                try:
                    if self.handle(msg):
                        break
                except ValueError as exc:
                    self.assembler.counters["invalid"] += 1
                    log.warning("rejected %s message: %s", msg.type, exc)
        finally:
            self.shutdown()
        return dict(self.assembler.counters)

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        """Finish queued scans, flush and close recordings, tell subscribers, close sockets."""
        for run, scan in self.assembler.open_scans:
            log.warning("scan %s of run %s was still open at shutdown; its frames are recorded", scan, run)
        if self._worker.is_alive():
            self._todo.put(None)
            self._worker.join()
        for rec in self._recorders.values():
            rec.close()
        self.events.close()
        self._publish("run_done", {"rejected": dict(self.assembler.counters)})
        time.sleep(0.05)  # let the last publication leave before the socket closes
        self.frames.close()
        self.results.close()
        if self._own_ctx:
            self._ctx.term()


def serve(config: ServiceConfig, ready_conn=None) -> None:
    """Process entry point: run a pipeline; report its endpoints on ``ready_conn`` (a Pipe end)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pipeline = Pipeline(config)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: pipeline.stop())

    def ready(endpoints):
        if ready_conn is not None:
            ready_conn.send(endpoints)
            ready_conn.close()

    pipeline.run(on_ready=ready)
