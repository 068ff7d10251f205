"""The results channel: what the pipeline publishes (PUB) and how consumers read it (SUB), docs/results-channel.md.

One publisher numbers every result (``seq``) and stamps its format version; subscribers get typed
``Result`` objects with arrays back as numpy, and skip (count, log) anything they cannot read.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Self

import msgpack
import numpy as np
import zmq

from streamer.messaging.transport import bind

log = logging.getLogger(__name__)
FORMAT = 1  # version of the result message format; a subscriber skips any other
TOPICS = ("event", "slices", "peak_image", "progress", "health", "run_done")
RESERVED = ("seq", "format")  # fields the publisher adds to every body
ARRAY_KEYS = frozenset({"dtype", "shape", "data"})
ARRAY_KINDS = "biufc"  # numeric dtypes only: nothing that needs Python objects to rebuild


class ResultError(ValueError):
    """A result message that cannot be read (malformed, or of another format version)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Result:
    """One published result: its topic, its sequence number and its body (without ``seq`` and ``format``)."""

    topic: str
    seq: int
    body: dict


def _packable(obj):
    """msgpack fallback: arrays as ``{"dtype", "shape", "data"}`` (raw bytes, C order), anything else as text."""
    if isinstance(obj, np.ndarray):
        return {"dtype": obj.dtype.str, "shape": list(obj.shape), "data": np.ascontiguousarray(obj).tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def encode(topic: str, seq: int, body: dict) -> list[bytes]:
    """The two frames of one result message: ``[topic, msgpack map {seq, format, **body}]``."""
    if not isinstance(body, dict):
        raise TypeError(f"a result body must be a dict, got {type(body).__name__}")
    clash = [k for k in RESERVED if k in body]
    if clash:
        raise ValueError(f"a result body must not set {clash}: the publisher adds them")
    return [topic.encode(), msgpack.packb({"seq": seq, "format": FORMAT, **body}, default=_packable)]


def _array(packed: dict) -> np.ndarray:
    dtype = np.dtype(packed["dtype"])
    if dtype.kind not in ARRAY_KINDS:
        raise ValueError(f"array of dtype {dtype} is not accepted")
    shape = tuple(int(n) for n in packed["shape"])
    return np.frombuffer(packed["data"], dtype=dtype).reshape(shape).copy()


def _decode_arrays(obj):
    """Turn packed ``{"dtype", "shape", "data": bytes}`` maps back into numpy arrays, at any depth."""
    if isinstance(obj, dict):
        if obj.keys() == ARRAY_KEYS and isinstance(obj["data"], bytes):
            return _array(obj)
        return {k: _decode_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_arrays(v) for v in obj]
    return obj


def decode(parts: list) -> Result:
    """Read one received message; raises ``ResultError`` (reason ``malformed`` or ``format``) when it cannot."""
    if len(parts) != 2:
        raise ResultError("malformed", f"a result has 2 frames, got {len(parts)}")
    try:
        topic = bytes(parts[0]).decode()
        body = msgpack.unpackb(bytes(parts[1]), raw=False)
    except Exception as exc:  # noqa: BLE001 - whatever the bytes, the reader only learns "malformed"
        raise ResultError("malformed", f"not a msgpack result: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("seq"), int):
        raise ResultError("malformed", "a result body is a map with an integer seq")
    version = body.pop("format", None)
    if version != FORMAT:
        raise ResultError("format", f"result format {version!r}, this reader takes {FORMAT}")
    seq = body.pop("seq")
    try:
        body = _decode_arrays(body)
    except Exception as exc:  # noqa: BLE001 - a bad dtype, shape or size
        raise ResultError("malformed", f"bad array in a {topic!r} result: {exc}") from None
    return Result(topic, seq, body)


class ResultsPublisher:
    """Publishes results on a PUB (or XPUB) socket, numbering them; not thread-safe (callers serialise)."""

    def __init__(self, sock: zmq.Socket, endpoint: str | None = None):
        self.sock = sock
        self.endpoint = endpoint or sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.seq = 0  # of the last result published

    @classmethod
    def bind(cls, endpoint: str, ctx: zmq.Context | None = None, *, hwm: int = 10_000) -> ResultsPublisher:
        """A publisher on a new PUB socket bound to ``endpoint`` (port 0 or *: any free one)."""
        sock, bound = bind(ctx or zmq.Context.instance(), zmq.PUB, endpoint, hwm=hwm)
        return cls(sock, bound)

    def publish(self, topic: str, body: dict) -> int:
        """Send one result (numpy arrays anywhere in ``body`` packed as maps); returns its ``seq``."""
        parts = encode(topic, self.seq + 1, body)
        self.sock.send_multipart(parts)
        self.seq += 1
        return self.seq

    def close(self, linger_s: float = 0.0) -> None:
        self.sock.close(linger=int(linger_s * 1000))


class ResultsSubscriber:
    """Follows a results endpoint (SUB, connect): ``receive(timeout_s)``, or iterate; closes as a context manager.

    ``topics`` None takes every topic. Unreadable messages are skipped, counted in ``rejected``
    (reason -> count) and logged, never raised. ``last_seq`` is the seq of the last result returned.
    """

    def __init__(self, endpoint: str, topics: Iterable[str] | None = None, *, ctx: zmq.Context | None = None,
                 hwm: int = 10_000):
        self.endpoint = endpoint
        self.topics = None if topics is None else tuple(topics)
        self.rejected: Counter[str] = Counter()
        self.received = 0
        self.last_seq: int | None = None
        self._sock = (ctx or zmq.Context.instance()).socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, hwm)
        for topic in self.topics if self.topics is not None else ("",):
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sock.connect(endpoint)

    @property
    def closed(self) -> bool:
        return self._sock.closed

    def receive(self, timeout_s: float | None = None) -> Result | None:
        """The next readable result, waiting up to ``timeout_s`` (None: for ever); None when none came."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(wait_ms):
                return None
            parts = self._sock.recv_multipart()
            if self.topics is not None and bytes(parts[0]).decode(errors="replace") not in self.topics:
                continue  # a longer topic sharing a subscribed prefix (SUB filters by prefix)
            try:
                result = decode(parts)
            except ResultError as exc:
                self.rejected[exc.reason] += 1
                log.warning("skipped a result message from %s (%s): %s", self.endpoint, exc.reason, exc)
                if deadline is not None and time.monotonic() >= deadline:
                    return None  # a flood of bad messages must not hold the caller past its timeout
                continue
            self.received += 1
            self.last_seq = result.seq
            return result

    def __iter__(self) -> Iterator[Result]:
        while True:
            result = self.receive()
            if result is not None:
                yield result

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
