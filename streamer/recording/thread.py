"""Recording off the receive thread: one writer thread applies the recorder calls in order.

The thread compresses each frame (bitshuffle + LZ4 release the GIL); a recording process
(``process.py``) writes the files, so HDF5 crashing on a failed write never stops the service. The queue
is bounded: when the disk falls behind, the receive loop blocks and the sender waits at its
high-water mark (lossless back-pressure). The writer knows which frames reached the file: a scan is
recorded complete only when all of them did, and every failure is counted, logged and kept as an
alarm for the health report.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from streamer.recording.process import RecorderCrashed, RecorderProcess, RemoteRecorder
from streamer.recording.recorder import single_threaded_compression

log = logging.getLogger(__name__)
FRAME_BATCH = 32  # queued frames of one scan sent to the recording process in one call


def safe_stem(run: str) -> str:
    """A run's name made safe for a file name, with a hash of the name when that changed it (so two runs
    never share a file), at most 200 characters."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run).lstrip(".") or "_"
    if safe != run:
        safe += "-" + hashlib.sha256(run.encode()).hexdigest()[:8]
    return safe[:200]


class RecordingWriter:
    """One HDF5 recording per run under ``out_dir``, written by a background thread.

    Recordings are flushed at least every ``flush_every_s`` (a paused scan's frames reach readers);
    a run's file is closed ``idle_close_s`` after its last write, at ``end_run``, or when more than
    ``max_open_runs`` are open (least recently used first), and reopened if the run goes on.
    While the disk has less than ``min_free_bytes`` free, scans and frames are not written (counted,
    one alarm): HDF5 crashed the process when the disk filled under it.
    """

    def __init__(self, out_dir: Path, counters: Counter | None = None, max_queued_frames: int = 512, *,
                 flush_every_s: float = 1.0, idle_close_s: float = 60.0, max_open_runs: int = 16,
                 detector: dict | None = None, min_free_bytes: int = 256 * 2**20,
                 free_bytes: Callable[[Path], int] | None = None):
        self.out_dir = Path(out_dir)
        self.detector = detector  # recorded in each new file: a replay prepares the frames the same way
        self.counters = counters if counters is not None else Counter()
        self.flush_every_s = flush_every_s
        self.idle_close_s = idle_close_s
        self.max_open_runs = max_open_runs
        self.alarms: deque[str] = deque(maxlen=20)  # the latest recording failures, newest last
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued_frames)
        self._recorders: dict[str, RemoteRecorder] = {}
        self._process: RecorderProcess | None = None  # started with the first file opened
        self._last_write: dict[str, float] = {}
        self._written: dict[tuple[str, int], set[int]] = {}  # (run, scan) -> frames on disk
        self._failed: dict[tuple[str, int], str] = {}  # (run, scan) -> first failure
        self._starts: dict[tuple[str, int], tuple] = {}  # scans started but not yet in the file (no frame yet)
        self._in_file: set[tuple[str, int]] = set()  # scans whose start reached the file
        self._broken: dict[str, str] = {}  # run -> the I/O failure after which its file is not touched again
        self._why = ""  # the latest refusal or failure, given to the scan it cost a frame
        self.min_free_bytes = min_free_bytes
        self._free_bytes = free_bytes or (lambda path: shutil.disk_usage(path).free)
        self._disk_full: str | None = None  # the alarm while the disk is under its reserve
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    def path(self, run: str) -> Path:
        """The run's file (``safe_stem``)."""
        return self.out_dir / f"{safe_stem(run)}.h5"

    def start_scan(self, run: str, scan: int, num_frames: int, metadata: dict) -> None:
        self._queue.put(("start_scan", run, (scan, num_frames, metadata)))

    def add_frame(self, run: str, scan: int, frame: int, theta_deg: float, timestamp: float, array) -> None:
        self._queue.put(("add_frame", run, (scan, frame, theta_deg, timestamp, array)))

    def end_scan(self, run: str, scan: int, missing: list[int], status: str, num_frames: int | None = None) -> Future:
        """Mark a scan ended. The future gives what reached the disk: ``{"complete", "frames_on_disk",
        "error"}``; frames that did not reach it count as missing in the recording."""
        done: Future = Future()
        self._queue.put(("end_scan", run, (scan, missing, status, num_frames, done)))
        return done

    def forget_scan(self, run: str, scan: int) -> None:
        """A scan closed with no frame (a budget): it is not written at all."""
        self._queue.put(("forget", run, (scan,)))

    def end_run(self, run: str) -> None:
        """The run is over: close its file (it is reopened if the run goes on)."""
        self._queue.put(("end_run", run, ()))

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

    @property
    def open_runs(self) -> int:
        return len(self._recorders)

    def _run(self) -> None:
        try:
            with single_threaded_compression():  # this thread compresses the frames: OpenMP limited here
                self._write_until_closed()
        finally:
            if self._process is not None:
                self._process.stop()

    def _write_until_closed(self) -> None:
        last_flush = time.monotonic()
        held = ()  # an item taken from the queue while gathering frames, applied next
        while True:
            try:
                item, held = (held, ()) if held != () else (self._queue.get(timeout=self.flush_every_s / 2), ())
            except queue.Empty:
                item = ()
            now = time.monotonic()
            if now - last_flush >= self.flush_every_s:
                last_flush = now
                self._tick(now)
            if item is None:
                break
            if item and item[0] == "add_frame":  # queued frames of the scan go over in one call
                batch = [item[2]]
                while len(batch) < FRAME_BATCH:
                    try:
                        held = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if not (held and held[:2] == item[:2] and held[2][0] == item[2][0]):
                        break
                    batch.append(held[2])
                    held = ()
                self._add_frames(item[1], batch)
            elif item:
                self._apply(*item)
        for run in list(self._recorders):
            self._close(run)

    def _apply(self, name: str, run: str | None, args: tuple) -> None:
        if name == "wait":
            for r in list(self._recorders):
                self._guard(r, "flush", lambda rec: rec.flush(), touch=False)
            args[0].set()
        elif name == "end_run":
            self._close(run)
        elif name == "forget":
            self._starts.pop((run, int(args[0])), None)
            self._written.pop((run, int(args[0])), None)
            self._in_file.discard((run, int(args[0])))
        elif name == "start_scan":  # written with the scan's first frame or its end: a flood of bare
            key = (run, int(args[0]))  # starts costs the disk nothing
            self._starts[key] = args
            self._written[key] = set()  # a restarted scan starts again
            self._failed.pop(key, None)
            self._in_file.discard(key)
        elif name == "end_scan":
            self._write_start(run, int(args[0]))
            self._end_scan(run, *args)

    def _add_frames(self, run: str, frames: list[tuple]) -> None:
        """Write frames of one scan (``add_frame`` arguments) in one call; each failure is its frame's."""
        key = (run, int(frames[0][0]))
        self._write_start(run, key[1])
        if key in self._failed and key not in self._in_file:  # its start never reached the file
            self.counters["recording_refused"] += len(frames)
            return
        outcomes: list = []
        if not self._guard(run, "add_frame", lambda rec: outcomes.extend(rec.add_frames(frames)), write=True):
            outcomes = []
        for k, args in enumerate(frames):
            failure = outcomes[k] if k < len(outcomes) else None
            if k < len(outcomes) and failure is None:
                self._written.setdefault(key, set()).add(int(args[1]))
                continue
            if failure is not None:
                self._failed_call(run, "add_frame", failure)
            self._failed.setdefault(key, self._why)

    def _write_start(self, run: str, scan: int) -> None:
        args = self._starts.pop((run, scan), None)
        if args is None:
            return
        if self._guard(run, "start_scan", lambda rec: rec.start_scan(*args), write=True):
            self._in_file.add((run, scan))
        else:
            self._failed.setdefault((run, scan), self._why)

    def _end_scan(self, run: str, scan: int, missing: list[int], status: str, num_frames, done: Future) -> None:
        key = (run, int(scan))
        on_disk = self._written.pop(key, set())
        error = self._failed.pop(key, None)
        in_file = key in self._in_file
        self._in_file.discard(key)
        expected = set(range(num_frames)) if num_frames else on_disk | set(missing)
        lost = sorted(expected - on_disk - set(missing))
        all_missing = sorted(set(missing) | set(lost))
        if lost:
            self.counters["frames_not_recorded"] += len(lost)
        ok = (in_file or not error) and self._guard(run, "end_scan",
                                                     lambda rec: rec.end_scan(scan, all_missing, status))
        error = error or (None if ok else self._why)
        done.set_result({"complete": ok and status == "complete" and not all_missing,
                         "frames_on_disk": len(on_disk), "error": error})

    def _guard(self, run: str, name: str, call, *, touch: bool = True, write: bool = False) -> bool:
        """Apply ``call`` to the run's recorder; a failure is counted, logged and kept as an alarm.

        A ``write`` (a scan's start, a frame) is refused while the disk is under its reserve.
        """
        refusal = self._broken.get(run) or (self._short_of_space() if write else None)
        if refusal:  # said once, when it happened; each refused write is counted
            self.counters["recording_refused"] += 1
            self._why = refusal
            return False
        try:
            call(self._recorder(run))
            if touch:
                self._last_write[run] = time.monotonic()
            return True
        except Exception as exc:  # the stream goes on; the failure is logged, counted and shown
            self._failed_call(run, name, exc)
            return False

    def _failed_call(self, run: str, name: str, exc: Exception) -> None:
        """Count, log and keep as an alarm a call that failed; an I/O failure stops the run's file."""
        self.counters["recording_error"] += 1
        self.alarms.append(f"recording {name} of run {run!r} failed: {exc}")
        self._why = self.alarms[-1]
        log.error("recording %s of run %s failed", name, run, exc_info=exc)
        if isinstance(exc, RecorderCrashed):
            self._process_died(run, str(exc))
        elif not isinstance(exc, ValueError) and run not in self._broken:  # an I/O failure (disk full,
            # unwritable): HDF5 crashed the process when the damaged file was written or closed, so
            # this run's file is left alone from now on; the scans say what did not reach it
            self._broken[run] = f"the recording of run {run!r} stopped after: {exc}"
            rec = self._recorders.pop(run, None)
            if rec is not None:
                try:
                    rec.abandon()
                except RecorderCrashed as crash:
                    self._process_died(run, str(crash))

    def _short_of_space(self) -> str | None:
        """Why writes are refused while the disk is under its reserve, else None (a statvfs, microseconds)."""
        try:
            free = self._free_bytes(self.out_dir)
        except OSError:  # the folder is gone: the write itself says so
            return None
        if free >= self.min_free_bytes:
            if self._disk_full:
                log.warning("recording resumes: %.0f MB free in %s", free / 2**20, self.out_dir)
            self._disk_full = None
        elif not self._disk_full:
            self._disk_full = (f"the disk of {self.out_dir} has {free / 2**20:.1f} MB free, under the "
                               f"{self.min_free_bytes / 2**20:.1f} MB kept free: frames are not recorded")
            self.counters["recording_disk_full"] += 1
            self.alarms.append(self._disk_full)
            log.error("%s", self._disk_full)
            for r in list(self._recorders):  # what is written reaches the disk while there is room
                self._guard(r, "flush", lambda rec: rec.flush(), touch=False)
        return self._disk_full

    def _process_died(self, run: str, why: str) -> None:
        """The recording process died: ``run``'s file is not touched again; the other runs' open scans may
        have lost frames since their last flush (incomplete), and their files reopen in a new process."""
        self.counters["recording_process_died"] += 1
        self._broken.setdefault(run, f"the recording of run {run!r} stopped: {why}")
        for key in self._in_file:
            self._failed.setdefault(key, f"{why}: frames since the last flush may be lost")
        self._recorders.clear()
        if self._process is not None:
            self._process.stop(timeout_s=5)  # reaped, its socket closed
        self._process = None

    def _recorder(self, run: str) -> RemoteRecorder:
        if run in self._broken:
            raise OSError(self._broken[run])
        if run not in self._recorders:
            path = self.path(run)
            if path.is_symlink() or (path.exists() and path.resolve().parent != self.out_dir.resolve()):
                raise OSError(f"{path} is a link out of the output folder: not followed")
            while len(self._recorders) >= self.max_open_runs:  # least recently written first
                self._close(min(self._recorders, key=lambda r: self._last_write.get(r, 0.0)))
            if self._process is None or not self._process.alive:
                self._process = RecorderProcess(self.detector)
            self._recorders[run] = RemoteRecorder(self._process, path, run)
        return self._recorders[run]

    def _tick(self, now: float) -> None:
        """Flush what is open; close idle runs; say so when a run's file or the folder vanished."""
        for run, rec in list(self._recorders.items()):
            if not os.path.exists(rec.path):
                self.counters["recording_vanished"] += 1
                self.alarms.append(f"the recording of run {run!r} ({rec.path}) vanished: folder deleted?")
                log.error("%s", self.alarms[-1])
                self._close(run, quiet=True)
            elif now - self._last_write.get(run, now) > self.idle_close_s:
                self._close(run)
            else:
                self._guard(run, "flush", lambda r: r.flush(), touch=False)

    def _close(self, run: str, quiet: bool = False) -> None:
        rec = self._recorders.pop(run, None)
        if rec is None:
            return
        try:
            rec.close()
        except RecorderCrashed as exc:
            self._process_died(run, str(exc))
        except Exception:
            if not quiet:
                self.counters["recording_error"] += 1
                log.exception("closing the recording of run %s failed", run)

