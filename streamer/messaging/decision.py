"""The decision channel: operator verdicts ("re-measure", "continue", "acknowledge") on a scan, to the plan.

The plan side binds a PULL socket (``DecisionListener``); anyone who decides (the web page, a terminal,
a test) connects a PUSH socket and sends one msgpack map per decision (``send_decision``)::

    {"type": "decision", "run": str, "scan": int, "action": "remeasure" | "continue" | "acknowledge",
     "source": str, "time": float (unix seconds)}

Malformed messages are counted and logged, never raised into the plan.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import msgpack
import zmq
from pydantic import Field

from streamer.settings import Settings, from_mapping

ACTIONS = ("remeasure", "continue", "acknowledge")
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5570"
log = logging.getLogger(__name__)


class Decision(Settings):
    """One decision message, field by field (the map above)."""

    type: Literal["decision"] = "decision"
    run: str
    scan: int = Field(ge=0)
    action: Literal[ACTIONS]
    source: str = "operator"
    time: float


def make_decision(run: str, scan: int, action: str, source: str = "operator", at: float | None = None) -> dict:
    """A validated decision message (made at ``at``, unix seconds, default now); ConfigError naming the field."""
    fields = {"run": str(run), "scan": scan, "action": action, "source": str(source),
              "time": time.time() if at is None else at}
    return from_mapping(Decision, fields, "decision").model_dump()


def send_decision(endpoint: str, run: str, scan: int, action: str, source: str = "operator",
                  timeout_s: float = 2.0) -> dict:
    """Send one decision to the plan's listener; raise TimeoutError if nobody takes it in time."""
    msg = make_decision(run, scan, action, source)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, int(timeout_s * 1000))
    sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
    sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a live connection: no listener is a TimeoutError, not a lost message
    try:
        sock.connect(endpoint)
        try:
            sock.send(msgpack.packb(msg))
        except zmq.Again:
            raise TimeoutError(f"no decision listener took the message at {endpoint} within {timeout_s} s") from None
    finally:
        sock.close()
    return msg


def parse_decision(body: bytes) -> dict:
    """Decode and validate one decision message; ValueError naming the problem otherwise."""
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a malformed message
        raise ValueError(f"decision is not valid msgpack: {exc}") from None
    if not isinstance(msg, dict) or msg.get("type") != "decision":
        raise ValueError("decision message must be a map with type 'decision'")
    for key in ("run", "scan", "action"):
        if key not in msg:
            raise ValueError(f"decision message lacks {key!r}")
    return make_decision(msg["run"], msg["scan"], msg["action"], msg.get("source", "operator"), msg.get("time"))


class DecisionListener:
    """The plan's end of the channel: bound PULL socket, polled with a timeout."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT):
        self._sock = zmq.Context.instance().socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(endpoint)
        self.endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.rejected = 0

    def wait(self, timeout_s: float, scan: int | None = None, run: str | None = None) -> dict | None:
        """The next valid decision (for ``scan``/``run`` if given) within ``timeout_s``, else None."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not self._sock.poll(int(left * 1000) + 1):
                continue
            body = self._sock.recv()
            try:
                msg = parse_decision(body)
            except ValueError as exc:
                self.rejected += 1
                log.warning("rejected decision message: %s", exc)
                continue
            if (scan is None or msg["scan"] == scan) and (run is None or msg["run"] == run):
                return msg
            log.info("ignored decision for run %s scan %s while waiting for %s/%s",
                     msg["run"], msg["scan"], run, scan)
        return None

    def close(self) -> None:
        self._sock.close()
