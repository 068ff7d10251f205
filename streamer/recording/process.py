"""The recordings are written by a child process, because HDF5 crashes the process holding a file whose write failed.

A full disk, a quota or a file-size limit met inside HDF5 left its state damaged: closing the file, or
the interpreter's exit, then ended in a segmentation fault. The service's writer thread calls a
``RemoteRecorder`` as it would a ``RunRecorder``; each call is a request and its reply over a socket
pair to our own child (never the network), in msgpack (arrays as dtype, shape and bytes; nothing is
pickled; a large array's bytes follow the message as a message of their own, never copied into it). If
the child dies, the call raises ``RecorderCrashed`` and the next file opened starts a new child. The
one-shot commands (``reconstruct``, ``export``) write their files through one too (``write_apart``).
Run as ``python -m streamer.recording.process FD``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import msgpack
import numpy as np

log = logging.getLogger(__name__)


class RecorderCrashed(OSError):
    """The recording process died (or stopped answering) during a call."""


class RecorderProcess:
    """One child process holding the open recordings by path, and writing result files; calls are synchronous."""

    def __init__(self, detector: dict | None = None, reply_timeout_s: float = 300.0):
        self.reply_timeout_s = reply_timeout_s
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])  # the child imports this checkout's streamer
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._proc = subprocess.Popen([sys.executable, "-m", "streamer.recording.process", str(theirs.fileno())],
                                      pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn = Connection(ours.detach())
        self._lock = threading.Lock()
        _send(self._conn, detector)

    def __enter__(self) -> RecorderProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.alive:
            self.stop(timeout_s=30)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None and not self._conn.closed

    def call(self, op: str, path: Path, run: str, *args):
        """Apply ``op`` to the recorder of ``path`` in the child; its exception is raised here."""
        with self._lock:
            try:
                _send(self._conn, [op, str(path), run, list(args)])
                if not self._conn.poll(self.reply_timeout_s):
                    self._proc.kill()
                    raise RecorderCrashed(f"the recording process did not answer {op} of {path} within "
                                          f"{self.reply_timeout_s:.0f} s: stopped")
                ok, value = _receive(self._conn)
            except (EOFError, OSError) as exc:
                if isinstance(exc, RecorderCrashed):
                    raise
                raise RecorderCrashed(f"the recording process died during {op} of {path} "
                                      f"({self._exit_reason()})") from None
        if ok:
            return value
        raise _exception(value)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Close every recording the child holds, and let it exit."""
        with self._lock:
            try:
                _send(self._conn, None)
            except OSError:
                pass
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error("the recording process did not exit within %.0f s: killed", timeout_s)
                self._proc.kill()
                self._proc.wait()
            self._conn.close()

    def _exit_reason(self) -> str:
        try:
            code = self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return "it stopped answering; killed"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"


def write_apart(process: RecorderProcess, op: str, path: Path, *args) -> Path:
    """A file written by ``process`` (``op``: "write_result" with the fields of ``write_result``, or "export"
    with the source result file and the format): a write that HDF5 fails (a full disk, a quota, a file-size
    limit) is an OSError here, never a crash of the caller, and no ``.partial`` file is left behind."""
    path = Path(path)
    try:
        return Path(process.call(op, path, "", *args))
    except Exception:
        path.with_name(path.name + ".partial").unlink(missing_ok=True)
        raise


class RemoteRecorder:
    """A ``RunRecorder`` held by the recording process: the same calls, made there."""

    def __init__(self, process: RecorderProcess, path: Path, run: str):
        self.process, self.path, self.run = process, Path(path), run
        process.call("open", self.path, run)

    def start_scan(self, scan: int, num_frames: int, metadata: dict) -> None:
        self.process.call("start_scan", self.path, self.run, scan, num_frames, metadata)

    def add_frames(self, frames: list[tuple]) -> list[Exception | None]:
        """Write ``add_frame`` argument tuples in one call: each frame's failure (None: on its way to disk).

        Frames cross compressed (bitshuffle + LZ4, compressed here unless they arrived so): a tenth of
        the bytes through the socket, and the caller's thread compresses without the GIL. After an
        I/O failure the frames behind it are not attempted (the list is shorter).
        """
        portable = [(*f[:4], _portable_frame(f[4])) for f in frames]
        outcomes = self.process.call("add_frames", self.path, self.run, portable)
        return [None if o is None else _exception(o) for o in outcomes]

    def end_scan(self, scan: int, missing: list[int], status: str = "complete") -> None:
        self.process.call("end_scan", self.path, self.run, scan, missing, status)

    def flush(self) -> None:
        self.process.call("flush", self.path, self.run)

    def close(self) -> None:
        self.process.call("close", self.path, self.run)

    def abandon(self) -> None:
        """A write failed inside HDF5: the child never writes or closes this file again."""
        self.process.call("abandon", self.path, self.run)


# -- the child ---------------------------------------------------------------------------------------
def _serve(conn: Connection) -> None:
    from streamer.recording.recorder import RunRecorder, single_threaded_compression

    detector = _receive(conn)
    recorders: dict[str, RunRecorder] = {}
    abandoned: list[RunRecorder] = []  # kept referenced, so HDF5 never flushes them
    with single_threaded_compression():
        while True:
            try:
                message = _receive(conn)
            except EOFError:  # the service is gone: close what is open
                break
            if message is None:
                break
            op, path, run, args = message
            try:
                if op == "open":
                    if path not in recorders:
                        recorders[path] = RunRecorder(Path(path), run, detector=detector)
                    value = None
                elif op == "abandon":
                    value = _abandon(recorders.pop(path, None), abandoned)
                elif op == "close":
                    rec = recorders.pop(path, None)
                    value = rec.close() if rec is not None else None
                elif op == "write_result":  # a whole result file (result_file.py), returns its path
                    from streamer.recording.result_file import write_result

                    value = str(write_result(Path(path), **args[0]))
                elif op == "export":  # a result file in another format (export.py), returns its path
                    from streamer.recording.export import export_result

                    value = str(export_result(args[0], Path(path), fmt=args[1]))
                elif op == "add_frames":
                    value = _add_frames(recorders[path], args[0])
                else:
                    value = getattr(recorders[path], op)(*args)
                reply = (True, value)
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
                reply = (False, _portable(exc))
            _send(conn, reply)
    for path, rec in recorders.items():
        try:
            rec.close()
        except Exception:  # noqa: BLE001 - the others are still closed
            log.exception("closing the recording %s failed", path)


def _portable_frame(array) -> tuple:
    from streamer.messaging.wire import EncodedFrame, bslz4_chunk

    if isinstance(array, EncodedFrame):  # arrived compressed: its chunk crosses as it came
        return array.chunk, tuple(array.shape), np.dtype(array.dtype).str
    array = np.ascontiguousarray(array)
    return bslz4_chunk(array), array.shape, array.dtype.str


def _add_frames(rec, frames: list) -> list[list[str] | None]:
    from streamer.messaging.wire import EncodedFrame

    outcomes: list[list[str] | None] = []
    for *head, (chunk, shape, dtype) in frames:
        try:
            rec.add_frame(*head, EncodedFrame(memoryview(chunk), tuple(shape), np.dtype(dtype)))
            outcomes.append(None)
        except Exception as exc:  # noqa: BLE001 - this frame's failure, told to the caller
            outcomes.append(_portable(exc))
            if not isinstance(exc, ValueError):  # an I/O failure: the file is not written again
                break
    return outcomes


def _portable(exc: Exception) -> list[str]:
    """An exception as it crosses the socket: its kind (a ValueError, or an I/O failure) and its message."""
    return ["value" if isinstance(exc, ValueError) else "io", str(exc)]


def _exception(portable: list[str]) -> Exception:
    kind, message = portable
    return ValueError(message) if kind == "value" else OSError(message)


#: arrays from this size on cross as messages of their own (a real-size result's 650 MB: 1.8 s written in the
#: caller; 5.9 s through the child when every array was copied into one msgpack message)
OUT_OF_BAND_BYTES = 1 << 16


def _send(conn: Connection, value) -> None:
    """``value`` as one msgpack message [count, payload], then the bytes of its ``count`` large arrays."""
    buffers: list[np.ndarray] = []
    payload = msgpack.packb(value, default=lambda v: _encode(v, buffers), use_bin_type=True)
    conn.send_bytes(msgpack.packb([len(buffers), payload], use_bin_type=True))
    for array in buffers:
        conn.send_bytes(array.reshape(-1).view(np.uint8))


def _receive(conn: Connection):
    count, payload = msgpack.unpackb(conn.recv_bytes(), raw=False)
    buffers = [conn.recv_bytes() for _ in range(count)]
    return msgpack.unpackb(payload, ext_hook=lambda code, data: _decode(code, data, buffers), raw=False,
                           strict_map_key=False)


def _encode(value, buffers: list):
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        if array.nbytes >= OUT_OF_BAND_BYTES:
            buffers.append(array)
            return msgpack.ExtType(2, msgpack.packb([array.dtype.str, list(array.shape), len(buffers) - 1]))
        return msgpack.ExtType(1, msgpack.packb([array.dtype.str, list(array.shape), array.tobytes()],
                                                use_bin_type=True))
    if isinstance(value, np.generic):
        return value.item()
    return str(value)  # a path, or anything else the result's JSON would write as text


def _decode(code: int, data: bytes, buffers: list):
    if code == 1:
        dtype, shape, raw = msgpack.unpackb(data, raw=False)
    elif code == 2:
        dtype, shape, index = msgpack.unpackb(data, raw=False)
        raw = buffers[index]
    else:
        raise ValueError(f"unknown msgpack extension {code}")
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)


def _abandon(rec, abandoned: list) -> None:
    """Point the file's descriptor at /dev/null and keep the recorder: no byte reaches the damaged file again."""
    if rec is None or rec._f is None or not rec._f.id.valid:
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, rec._f.id.get_vfd_handle())
    os.close(null)
    abandoned.append(rec)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when its recordings close:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a Ctrl-C or a stop reaching the group leaves them open
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s recording-process %(levelname)s %(message)s")
    conn = Connection(int(argv[0]))
    _serve(conn)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # HDF5's exit handlers would close an abandoned file, and crash


if __name__ == "__main__":
    main(sys.argv[1:])
