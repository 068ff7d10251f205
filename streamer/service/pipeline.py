"""The pipeline service: ingest -> scan assembly -> recording -> quick metrics -> analysis -> events.

The receive loop records every frame as it arrives and gives every finished scan its quick peak
metrics at once. One worker thread reconstructs and analyses scans in order, so scan k is compared
with the last reconstructed scan. With ``realtime_policy = "latest"`` a scan still waiting when a
newer one finishes is not reconstructed (latest wins): its event carries the peak metrics and says
which scan superseded it, so memory stays bounded whatever the rate. Results are appended to
``events.jsonl`` and published (PUB) with a sequence number.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import zmq

from streamer.messaging import wire
from streamer.messaging.results import ResultsPublisher
from streamer.messaging.transport import bind
from streamer.recording.event_log import EventLog
from streamer.recording.result_writer import ResultWriter
from streamer.recording.thread import RecordingWriter
from streamer.service.assembly import AssembledScan, ScanAssembler
from streamer.service.config import ServiceConfig
from streamer.service.metadata import check_metadata
from streamer.service.processing import ScanJob, ScanProcessor
from streamer.service.progress import ScanProgress

log = logging.getLogger(__name__)
PROGRESS_PERIOD_S = 0.25  # how often open scans' progress and the pipeline's health are published
RECORDING_WAIT_S = 30.0  # the worker waits this long for a scan's frames to reach the disk before its event


def _say_what_was_recorded(job, wait_s: float) -> None:
    """A scan is complete in its event only when its frames reached the disk: take the recording's word."""
    recorded = getattr(job, "recorded", None)
    if recorded is None or (wait_s == 0 and not recorded.done()):
        return
    try:
        result = recorded.result(timeout=wait_s)
    except Exception:  # not written in time: say so, the event goes out
        result = {"complete": False, "error": f"the recording did not confirm the scan within {wait_s} s"}
    if not result["complete"] and job.ingest.get("complete"):
        job.ingest.update(complete=False, status="incomplete")
    if result.get("error"):
        job.ingest["recording_error"] = result["error"]


class Pipeline:
    """Owns the sockets, the recorders and the worker; ``run()`` loops until run stop or ``stop()``."""

    def __init__(self, config: ServiceConfig, ctx: zmq.Context | None = None):
        self.config = config
        self.out_dir = Path(config.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._own_ctx = ctx is None
        self._ctx = ctx or zmq.Context()
        self.frames, self.frames_endpoint = bind(self._ctx, zmq.PULL, config.endpoint(config.frames_port))
        self.results = ResultsPublisher.bind(config.endpoint(config.results_port), self._ctx)
        self.results_endpoint = self.results.endpoint
        self.assembler = ScanAssembler(max_frames_per_scan=config.max_frames_per_scan,
                                       max_open_scans=config.max_open_scans,
                                       max_held_bytes=config.max_held_frame_bytes)
        self.counters: Counter[str] = self.assembler.counters
        self.processor = ScanProcessor(config)
        self.events = EventLog(self.out_dir / "events.jsonl")
        self.documents: deque[tuple[str, dict]] = deque(maxlen=config.max_documents)  # the newest (name, doc)
        self.run_metadata: dict[str, dict] = {}  # run -> metadata of its run_start
        rec = config.recording
        self.result_files = (ResultWriter(self.out_dir, self.counters, budget_bytes=rec.results_budget_gb * 2**30,
                                         min_free_bytes=int(rec.min_free_mb * 2**20))
                             if rec.keep_results else None)
        self.recording = RecordingWriter(self.out_dir, self.counters, flush_every_s=rec.flush_every_s,
                                         idle_close_s=rec.idle_close_s, max_open_runs=rec.max_open_runs,
                                         min_free_bytes=int(rec.min_free_mb * 2**20),
                                         detector=config.detector.model_dump(mode="json"))
        self.progress = ScanProgress()
        self.skipped_reconstructions = 0
        self._last_seq: int | None = None
        self._lock = threading.Lock()  # guards the pending jobs, the event log and the publisher
        self._pending: list[ScanJob] = []
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="scan-worker", daemon=True)

    # -- results ----------------------------------------------------------------------------
    def _emit(self, event: dict, scan: AssembledScan) -> None:
        """Write and publish one event (caller holds the lock)."""
        event["latency_s"] = round(time.time() - scan.last_frame_time, 3)
        try:
            self.events.write(event)
        except OSError as exc:  # a full disk: the operator still gets the event; what is held is retried
            self.counters["event_not_written"] += 1
            log.error("the event of scan %s of run %s did not reach %s: %s", scan.scan, scan.run, self.events.path, exc)
        self._publish("event", {"event": event})

    def _publish(self, topic: str, body: dict) -> None:
        """Publish one result with the next seq (caller holds the lock)."""
        self.results.publish(topic, body)

    def _publish_health(self) -> None:
        """Queue depth, skipped reconstructions and rejected messages (caller holds the lock)."""
        self._publish("health", {"queue_depth": len(self._pending), "skipped_reconstructions": self.skipped_reconstructions,
                                 "rejected": dict(self.counters), "open_scans": len(self.progress.open_scans),
                                 "open_recordings": self.recording.open_runs,
                                 "recording_alarms": (list(self.recording.alarms)
                                                      + list(self.result_files.alarms if self.result_files else []))[-5:]})

    def _publish_progress(self, now: float) -> None:
        with self._lock:
            for run, scan in self.progress.open_scans:
                self._publish("progress", self.progress.snapshot(run, scan, now))
            self._publish_health()

    # -- worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if self._stop.is_set():  # also while a run's end drains the queue: no new scan is taken
                    self._say_stopped()
                if not self._pending:
                    if self._closing:
                        return
                    continue
                job = self._pending.pop(0)
            _say_what_was_recorded(job, wait_s=RECORDING_WAIT_S)
            try:
                event = self.processor.process(job)
            except Exception:  # a bug must not stop the stream: log it, report the scan as failed
                log.exception("processing scan %s of run %s failed", job.scan.scan, job.scan.run)
                job.error = "internal error during reconstruction; see the service log"
                event = self.processor.failed(job)
            try:
                with self._lock:
                    self._emit(event, job.scan)
                    if job.display is not None:
                        self._publish("slices", job.display)
                    self._publish_health()
            except Exception:  # the next scan is analysed whatever became of this one's event
                self.counters["event_not_written"] += 1
                log.exception("the event of scan %s of run %s could not be written or published",
                              job.scan.scan, job.scan.run)
            self._keep_result(job, event)

    def _say_stopped(self) -> None:
        """After ``stop()``: the scans waiting for reconstruction are recorded, each gets an event saying it was not
        reconstructed, and none is taken (caller holds the lock)."""
        if not self._pending:
            return
        log.warning("stopped with %d scan(s) waiting: recorded, not reconstructed (replay them)", len(self._pending))
        for job in self._pending:
            _say_what_was_recorded(job, wait_s=0.0)
            self._emit(self.processor.stopped(job), job.scan)
            self.skipped_reconstructions += 1
        self._pending.clear()
        self._publish_health()

    def _keep_result(self, job, event: dict) -> None:
        """The scan's reconstruction to its result file, after its event (off the critical path)."""
        if self.result_files is None or job.result is None:
            return
        try:
            fields = self.processor.result_fields(job, event, recording=self.recording.path(job.scan.run))
            self.result_files.submit(job.scan.run, job.scan.scan, **fields)
        except Exception:
            self.counters["result_not_written"] += 1
            log.exception("no result file for scan %s of run %s", job.scan.scan, job.scan.run)

    def _submit(self, scan: AssembledScan) -> None:
        recorded = self.recording.end_scan(scan.run, scan.scan, scan.missing, scan.status, num_frames=scan.shape[0])
        ingest = {"complete": scan.complete, "status": scan.status, "missing_frames": scan.missing,
                  "rejected": dict(self.counters)}
        job = self.processor.prepare(scan, ingest)
        job.recorded = recorded
        finished = self.progress.finish(scan.run, scan.scan, time.monotonic(), scan.status)
        try:
            image = self.processor.peak_image(job)
        except Exception:  # a side path never stops the scan
            log.exception("no projected peak for scan %s", scan.scan)
            image = None
        if scan.corrupt:  # compressed frames that did not decode: counted, and missing for the analysis
            self.counters["corrupt_frame"] += len(scan.corrupt)
            ingest["corrupt_frames"] = scan.corrupt
        with self._wake:
            if finished is not None:
                self._publish("progress", finished)
            if image is not None:
                self._publish("peak_image", image)
            if self.config.realtime_policy == "latest":
                for old in self._pending:
                    log.info("scan %s superseded by scan %s before reconstruction", old.scan.scan, scan.scan)
                    _say_what_was_recorded(old, wait_s=0.0)
                    self._emit(self.processor.skipped(old, scan.scan), old.scan)
                    self.skipped_reconstructions += 1
                self._pending.clear()
            self._pending.append(job)
            self._publish_health()
            self._wake.notify()

    # -- ingest -----------------------------------------------------------------------------
    def _check_sequence(self, header: dict) -> None:
        seq = header.get("seq")
        if isinstance(seq, int):
            if self._last_seq is not None and seq > self._last_seq + 1:
                gap = seq - self._last_seq - 1
                self.counters["sequence_gap"] += gap
                log.warning("sequence gap: %d message(s) between seq %d and %d never arrived", gap,
                            self._last_seq, seq)
            self._last_seq = seq

    def handle(self, msg: wire.Message) -> bool:
        """Act on one decoded message; True when the run is over and the loop should end."""
        h = msg.header
        now = time.monotonic()
        self._check_sequence(h)
        if msg.type == "run_start":
            metadata = self._checked_metadata(h, f"run {h['run']!r}")
            self.assembler.start_run(h["run"], metadata)
            self.run_metadata[h["run"]] = metadata
        elif msg.type == "scan_start":
            metadata = self._checked_metadata(h, f"scan {h['scan']} of run {h['run']!r}")
            self.assembler.start(h["run"], h["scan"], h["num_frames"], metadata, now=now)
            self.recording.start_scan(h["run"], h["scan"], h["num_frames"], metadata)
            self.progress.start(h["run"], h["scan"], h["num_frames"], now)
            self.processor.scan_started(h["run"], metadata, h["num_frames"])
        elif msg.type == "frame":
            run, scan = h["run"], h["scan"]
            known = self.assembler.is_open(run, scan)
            num = h.get("num_frames") if isinstance(h.get("num_frames"), int) else None
            if self.assembler.add(run, scan, h["frame"], h["theta_deg"], h["timestamp"], msg.frame,
                                  num_frames=num, now=now):
                if not known:  # opened implicitly: the recording needs the scan too
                    self.recording.start_scan(run, scan, num, {"implicit": True})
                self.recording.add_frame(run, scan, h["frame"], h["theta_deg"], h["timestamp"], msg.frame)
                self.progress.frame(run, scan, h["frame"], now, num)
        elif msg.type == "scan_end":
            scan = self.assembler.finish(h["run"], h["scan"])
            if scan is not None:
                self._submit(scan)
        if self.assembler.evicted:  # closed to keep the budgets: they end as any scan does
            for evicted in self.assembler.take_evicted():
                if evicted.parts:  # an empty one (a flood of starts) is counted and logged, and stays "partial"
                    self._submit(evicted)
                else:
                    self.recording.forget_scan(evicted.run, evicted.scan)
                    self.progress.finish(evicted.run, evicted.scan, now, "incomplete")
        if msg.type == "document":
            if len(self.documents) == self.documents.maxlen:
                self.counters["documents_dropped"] += 1
            if self.documents.maxlen:
                self.documents.append((h["name"], h["doc"]))
        elif msg.type == "run_stop":
            self.recording.end_run(h["run"])
            return self.config.exit_on_run_stop
        return False

    def _checked_metadata(self, header: dict, what: str) -> dict:
        """The message's metadata with the fields the pipeline reads checked; bad ones counted and named."""
        metadata, problems = check_metadata(header["metadata"])
        if problems:
            self.counters["invalid_metadata"] += 1
            log.warning("%s: %s; those fields are left out", what, "; ".join(problems))
            metadata["metadata_problems"] = problems
        return metadata

    def ingest(self, parts: list) -> bool:
        """Decode and handle one received message; bad input is counted and logged, never raised."""
        try:
            msg = wire.decode(parts, max_frame_bytes=self.config.detector.max_frame_bytes)
        except wire.WireError as exc:
            self.counters["malformed"] += 1
            log.warning("rejected malformed message: %s", exc)
            return False
        try:
            return self.handle(msg)
        except ValueError as exc:
            self.counters["invalid"] += 1
            log.warning("rejected %s message: %s", msg.type, exc)
        except Exception:  # a bug met by one message must not stop the stream
            self.counters["internal_error"] += 1
            log.exception("internal error handling a %s message; the pipeline goes on", msg.type)
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
        last_expiry = last_progress = time.monotonic()
        try:
            while True:
                if self._stop.is_set():
                    self._drain_after_stop()
                    break
                if poller.poll(timeout_ms) and self._drain():
                    break
                now = time.monotonic()
                if now - last_progress > PROGRESS_PERIOD_S:
                    last_progress = now
                    self._publish_progress(now)
                if now - last_expiry > 1.0:
                    last_expiry = now
                    for scan in self.assembler.expire(now, self.config.scan_timeout_s):
                        try:
                            self._submit(scan)
                        except Exception:  # one scan's data must not end the receive loop
                            self.counters["internal_error"] += 1
                            log.exception("scan %s of run %s could not be submitted", scan.scan, scan.run)
        finally:
            self.shutdown()
        return dict(self.counters)

    def _drain(self, most: int = 1000) -> bool:
        """Handle every message already waiting (one poll per burst, not per message)."""
        for _ in range(most):
            try:
                parts = self.frames.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            if self.ingest(parts):
                return True
        return False

    def _drain_after_stop(self) -> None:
        """Handle what the socket already holds (bounded by ``drain_timeout_s``), so that frames a sender
        saw accepted are recorded before the service exits."""
        deadline = time.monotonic() + self.config.drain_timeout_s
        handled = 0
        while time.monotonic() < deadline and self.frames.poll(50):
            for _ in range(1000):
                try:
                    parts = self.frames.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                handled += 1
                self.ingest(parts)
        if handled:
            log.info("handled %d message(s) received before the stop", handled)

    def stop(self) -> None:
        self._stop.set()

    def wait_for_stop(self, timeout_s: float) -> bool:
        """Whether a stop was asked within ``timeout_s``."""
        return self._stop.wait(timeout_s)

    def shutdown(self) -> None:
        """Record open scans as ended, finish queued work (after ``stop()``: the scan in hand only, the waiting ones
        get a "stopped" event), flush and close, tell subscribers."""
        for run, scan in self.assembler.open_scans:
            log.warning("scan %s of run %s was still open at shutdown; recorded as incomplete", scan, run)
            done = self.assembler.finish(run, scan)
            self.recording.end_scan(run, scan, done.missing, "incomplete")
        with self._wake:
            if self._stop.is_set():
                self._say_stopped()
            self._closing = True
            self._wake.notify()
        if self._worker.is_alive():
            self._worker.join()
        if hasattr(self.processor.reconstructor, "close"):
            self.processor.reconstructor.close()
        if self.processor.costs is not None:
            self.processor.costs.close()
        if self.result_files is not None:
            self.result_files.close()
        self.recording.close()
        self.events.close()
        with self._lock:
            self._publish("run_done", {"rejected": dict(self.counters)})
        time.sleep(0.05)  # let the last publication leave before the socket closes
        self.frames.close()
        self.results.close()
        if self._own_ctx:
            self._ctx.term()
