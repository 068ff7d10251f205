"""Every live reconstruction kept as a result file, written in a thread of its own, within a disk budget.

``RESULTS_DIR/<run>/scan-00003.h5`` (docs/results.md), beside the run's recording; the run's name made
safe as for recordings. When the folder's result files would pass ``budget_bytes`` the file is not
written: the scan is counted (``result_not_kept``) and an alarm raised, once per run. A write that
fails (disk full, unwritable folder) is an alarm too, and so is a disk with less than ``min_free_bytes``
free; nothing here stops the pipeline. The files are written by a recording process (``process.py``):
HDF5 crashed the process that wrote a file when the disk filled under it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, deque
from pathlib import Path

from streamer.recording.process import RecorderProcess, write_apart
from streamer.recording.room import check_room
from streamer.recording.thread import safe_stem

log = logging.getLogger(__name__)
RESULTS_DIR = "results"


class ResultWriter:
    """Writes result files from a queue; ``submit`` never blocks the caller on the disk."""

    def __init__(self, out_dir: Path, counters: Counter, *, budget_bytes: float, min_free_bytes: int = 256 * 2**20):
        self.root = Path(out_dir) / RESULTS_DIR
        self.counters = counters
        self.budget_bytes = float(budget_bytes)
        self.min_free_bytes = min_free_bytes
        self._process: RecorderProcess | None = None  # started with the first file
        self.alarms: deque[str] = deque(maxlen=20)
        self._used = sum(p.stat().st_size for p in self.root.rglob("*.h5")) if self.root.is_dir() else 0
        self._over: set[str] = set()  # runs already told that the budget is spent
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="result-writer", daemon=True)
        self._thread.start()

    def path(self, run: str, scan: int) -> Path:
        return self.root / safe_stem(run) / f"scan-{int(scan):05d}.h5"

    def submit(self, run: str, scan: int, **fields) -> None:
        """Queue one result (the keyword arguments of ``write_result``)."""
        self._queue.put((run, scan, fields))

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                run, scan, fields = item
                try:
                    self._write(run, scan, fields)
                except Exception as exc:  # a full disk or a vanished folder: said, never raised into the pipeline
                    self.counters["result_not_written"] += 1
                    self.alarms.append(f"result file of scan {scan} of run {run!r} not written: {exc}")
                    log.error("%s", self.alarms[-1])
        finally:
            if self._process is not None:
                self._process.stop()

    def _write(self, run: str, scan: int, fields: dict) -> None:
        estimate = sum(getattr(v, "nbytes", 0) for v in fields.values())  # before compression: an upper bound
        if self._used + estimate > self.budget_bytes:
            self.counters["result_not_kept"] += 1
            if run not in self._over:
                self._over.add(run)
                self.alarms.append(f"the result files' disk budget ({self.budget_bytes / 2**30:.2f} GiB) is spent: "
                                   f"scan {scan} of run {run!r} and later ones are not kept")
                log.warning("%s", self.alarms[-1])
            return
        self.root.mkdir(parents=True, exist_ok=True)
        check_room(self.root, estimate, headroom_bytes=self.min_free_bytes)
        if self._process is None or not self._process.alive:
            self._process = RecorderProcess()
        try:
            path = write_apart(self._process, "write_result", self.path(run, scan), fields)
        except Exception:  # the failed file may have left HDF5 damaged in that process: the next one is new
            self._process.stop(timeout_s=5)
            self._process = None
            raise
        self._used += path.stat().st_size

    def close(self, timeout_s: float = 60.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)
