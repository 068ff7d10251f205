"""Recording off the receive thread: one writer thread applies the recorder calls in order.

Compression releases the GIL, so the receive loop keeps draining the socket while frames are
compressed and written. The queue is bounded: when the disk falls behind, the receive loop
blocks and the sender waits at its high-water mark (lossless back-pressure).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from pathlib import Path

from streamer.recording.recorder import RunRecorder, single_threaded_compression

log = logging.getLogger(__name__)


class RecordingWriter:
    """One HDF5 recording per run under ``out_dir``, written by a background thread."""

    def __init__(self, out_dir: Path, counters: Counter | None = None, max_queued_frames: int = 512):
        self.out_dir = Path(out_dir)
        self.counters = counters if counters is not None else Counter()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued_frames)
        self._recorders: dict[str, RunRecorder] = {}
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    def path(self, run: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run)
        return self.out_dir / f"{safe}.h5"

    def start_scan(self, run: str, scan: int, num_frames: int, metadata: dict) -> None:
        self._queue.put(("start_scan", run, (scan, num_frames, metadata)))

    def add_frame(self, run: str, scan: int, frame: int, theta_deg: float, timestamp: float, array) -> None:
        self._queue.put(("add_frame", run, (scan, frame, theta_deg, timestamp, array)))

    def end_scan(self, run: str, scan: int, missing: list[int], status: str) -> None:
        self._queue.put(("end_scan", run, (scan, missing, status)))

    def wait(self) -> None:
        """Block until everything queued so far is written and flushed."""
        done = threading.Event()
        self._queue.put(("wait", None, (done,)))
        done.wait()

    def close(self) -> None:
        """Write what is queued, close every recording, stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        with single_threaded_compression():  # this thread's OpenMP limit, restored when it ends
            self._write_until_closed()

    def _write_until_closed(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            name, run, args = item
            if name == "wait":
                for rec in self._recorders.values():
                    rec.flush()
                args[0].set()
                continue
            try:
                if run not in self._recorders:
                    self._recorders[run] = RunRecorder(self.path(run), run)
                getattr(self._recorders[run], name)(*args)
            except Exception:  # the stream goes on; the failure is logged and counted
                self.counters["recording_error"] += 1
                log.exception("recording %s of run %s failed", name, run)
        for rec in self._recorders.values():
            rec.close()
