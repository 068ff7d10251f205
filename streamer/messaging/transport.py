"""ZeroMQ sockets of the frame stream: stable stages bind, senders connect.

Every socket has a high-water mark, LINGER 0 and a timeout that becomes an error naming the
endpoint. Frames go PUSH/PULL, so a sender blocks (losslessly) when the receiver falls behind.
"""

from __future__ import annotations

import time

import zmq

from streamer.messaging import wire


class SendTimeout(TimeoutError):
    """The receiver did not take a message in time."""


def bind(ctx: zmq.Context, kind: int, endpoint: str, *, hwm: int = 10_000) -> tuple[zmq.Socket, str]:
    """Bind a socket; returns it and the endpoint actually bound (a port of 0 or * resolved)."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM if kind in (zmq.PULL, zmq.SUB) else zmq.SNDHWM, hwm)
    if endpoint.endswith(":0"):
        endpoint = endpoint[:-2] + ":*"
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        raise OSError(f"cannot bind {endpoint}: {exc}") from None
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


class FrameSender:
    """Sends the messages of a run to a pipeline's frame endpoint (PUSH, connect).

    ``checksum`` gives frames a ``crc32`` of their buffer as sent, which the receiver verifies
    (docs/protocol.md); None (the default): compressed frames have it, raw ones not.
    """

    def __init__(self, endpoint: str, *, ctx: zmq.Context | None = None, hwm: int = 1000, timeout_s: float = 30.0,
                 encoding: str = "raw", checksum: bool | None = None):
        if encoding not in wire.ENCODINGS:
            raise ValueError(f"encoding must be one of {wire.ENCODINGS}, got {encoding!r}")
        self.endpoint = endpoint
        self.encoding = encoding
        self.checksum = checksum
        self._own_ctx = ctx is None
        self._ctx = ctx or zmq.Context()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        self._sock.connect(endpoint)
        self.sent = 0

    def _send(self, parts: list) -> None:
        try:
            self._sock.send_multipart(parts, copy=False)
        except zmq.Again:
            timeout = self._sock.getsockopt(zmq.SNDTIMEO) / 1000
            raise SendTimeout(f"pipeline at {self.endpoint} took no message for {timeout:.0f} s") from None
        self.sent += 1

    def _control(self, msg_type: str, **fields) -> None:
        self._send(wire.encode(msg_type, seq=self.sent, **fields))

    def run_start(self, run: str, metadata: dict) -> None:
        self._control("run_start", run=run, metadata=metadata)

    def scan_start(self, run: str, scan: int, num_frames: int, metadata: dict) -> None:
        self._control("scan_start", run=run, scan=scan, num_frames=num_frames, metadata=metadata)

    def frame(self, run: str, scan: int, frame: int, theta_deg: float, array, timestamp: float | None = None,
              **extra) -> None:
        """Send one frame (its buffer is not copied); ``extra`` header fields ride along."""
        ts = time.time() if timestamp is None else timestamp
        self._send(wire.encode_frame(run=run, scan=scan, frame=frame, seq=self.sent, theta_deg=theta_deg,
                                     timestamp=ts, array=array, encoding=self.encoding,
                                     checksum=self.checksum, **extra))

    def scan_end(self, run: str, scan: int, num_frames: int, **fields) -> None:
        self._control("scan_end", run=run, scan=scan, num_frames=num_frames, **fields)

    def document(self, run: str, name: str, doc: dict) -> None:
        self._control("document", run=run, name=name, doc=doc)

    def heartbeat(self) -> None:
        self._control("heartbeat")

    def run_stop(self, run: str, **fields) -> None:
        self._control("run_stop", run=run, **fields)

    def close(self, linger_s: float = 10.0) -> None:
        """Close, waiting up to ``linger_s`` for queued messages to leave (nothing lost on exit)."""
        self._sock.close(linger=int(linger_s * 1000))
        if self._own_ctx:
            self._ctx.term()  # blocks until the queue is sent or the linger expires
