"""The decision channel: operator verdicts ("re-measure", "continue", "acknowledge") on a scan, to the plan.

The plan side binds a PULL socket (``DecisionListener``); anyone who decides (the web page, a terminal,
a test) connects a PUSH socket and sends one msgpack map per decision (``send_decision``)::

    {"type": "decision", "run": str, "scan": int, "action": "remeasure" | "continue" | "acknowledge",
     "source": str, "time": float (unix seconds), "token": str (the shared decision token)}

Every message carries the shared secret of the channel, kept in a file only its owner may read
(``load_token``: ``~/.config/bcdi-stream/decision.token`` unless configured, created with mode 0600
when missing). The listener takes a decision only with that token (compared in constant time) and a
``time`` within ``MAX_CLOCK_SKEW_S`` of its own clock; anything else is counted (``rejected``, reason ->
count) and logged, never raised into the plan. The token never leaves the listener: the decisions it
returns, and those ``send_decision`` returns, have no ``token`` key.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import secrets
import stat
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import msgpack
import zmq
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from streamer.settings import ConfigError, Settings, config_error

ACTIONS = ("remeasure", "continue", "acknowledge")
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5570"
DEFAULT_TOKEN_FILE = "~/.config/bcdi-stream/decision.token"
TOKEN_FILE_ENV = "BCDI_DECISION_TOKEN_FILE"  # overrides the default path (not a path given explicitly)
MAX_CLOCK_SKEW_S = 86400.0  # a decision stamped further than this from the listener's clock is refused
MAX_TOKEN_CHARS = 256
MIN_TOKEN_CHARS = 32
MAX_MESSAGE_BYTES = 4096
log = logging.getLogger(__name__)


# -- the shared token -------------------------------------------------------------------------
def token_path(path: str | Path | None = None) -> Path:
    """The token file: ``path`` if given (and not ""), else $BCDI_DECISION_TOKEN_FILE, else the default."""
    chosen = str(path) if path not in (None, "") else (os.environ.get(TOKEN_FILE_ENV) or DEFAULT_TOKEN_FILE)
    return Path(chosen).expanduser()


def load_token(path: str | Path | None = None) -> str:
    """The decision token from ``path`` (see ``token_path``), created (mode 0600, 64 hex digits) when missing.

    ConfigError naming the file when it is readable or writable by group or others, owned by another
    user, not a regular file, or holds no acceptable token.
    """
    path = token_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
    except FileNotFoundError:
        return _create_token(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"decision token file {path} is a symbolic link; point the config at the file itself")
        raise ConfigError(f"decision token file {path} cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"decision token file {path} is not a regular file")
        if st.st_uid != os.getuid():
            raise ConfigError(f"decision token file {path} is owned by uid {st.st_uid}, not by this user "
                              f"(uid {os.getuid()}); copy it to a file of your own with mode 0600")
        if st.st_mode & 0o077:
            raise ConfigError(f"decision token file {path} has mode {stat.S_IMODE(st.st_mode):04o}: group or others "
                              f"may read it; make it private (chmod 600 {path}) or delete it to have a new one made")
        raw = f.read(MAX_TOKEN_CHARS + 2)
    token = raw.decode("ascii", errors="replace").strip()
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS or not token.isascii() or not token.isprintable() \
            or any(c.isspace() for c in token):
        raise ConfigError(f"decision token file {path} must hold one token of {MIN_TOKEN_CHARS}..{MAX_TOKEN_CHARS} "
                          f"printable ASCII characters without spaces; delete it to have a new one made")
    return token


def _create_token(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # made meanwhile by the other side of the channel: take that one
        return load_token(path)
    except OSError as exc:
        raise ConfigError(f"decision token file {path} cannot be created: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.info("created the decision token file %s (mode 0600): the plan's listener and every sender must use "
             "this one file (copy it, keeping that mode, to other machines and users)", path)
    return token


# -- the message ------------------------------------------------------------------------------
class Decision(Settings):
    """One decision message, field by field (the map above); ``time`` is checked against ``now`` when
    validated with ``context={"now": unix seconds}`` (the listener's clock)."""

    type: Literal["decision"] = "decision"
    run: str = Field(max_length=200)
    scan: int = Field(ge=0)
    action: Literal[ACTIONS]
    source: str = Field("operator", max_length=200)
    time: float
    token: str | None = None

    @field_validator("token", mode="plain")
    @classmethod
    def _bounded_string(cls, value: object) -> str | None:  # its errors never repeat the value: no token in a log
        if value is not None and not (isinstance(value, str) and 1 <= len(value) <= MAX_TOKEN_CHARS):
            raise ValueError(f"must be a string of 1..{MAX_TOKEN_CHARS} characters (the value is not shown)")
        return value

    @field_validator("time")
    @classmethod
    def _near_the_listeners_clock(cls, value: float, info: ValidationInfo) -> float:
        now = (info.context or {}).get("now")
        if now is not None and not abs(value - now) <= MAX_CLOCK_SKEW_S:
            raise ValueError(f"must be within {MAX_CLOCK_SKEW_S:.0f} s of the listener's clock ({now:.0f}), "
                             f"got {value!r:.40}")
        return value


def _validated(fields: dict, now: float | None = None) -> dict:
    try:
        decision = Decision.model_validate(fields, context={"now": now})
    except ValidationError as exc:
        raise config_error(exc, "decision") from None
    return decision.model_dump(exclude_none=True)


def make_decision(run: str, scan: int, action: str, source: str = "operator", at: float | None = None,
                  token: str | None = None) -> dict:
    """A validated decision message (made at ``at``, unix seconds, default now; with ``token`` if given);
    ConfigError naming the field."""
    fields = {"run": str(run), "scan": scan, "action": action, "source": str(source),
              "time": time.time() if at is None else at}
    if token is not None:
        fields["token"] = token
    return _validated(fields)


def send_decision(endpoint: str, run: str, scan: int, action: str, source: str = "operator",
                  timeout_s: float = 2.0, *, token: str | None = None,
                  token_file: str | Path | None = None) -> dict:
    """Send one decision, with the channel's token (``token``, else read by ``load_token(token_file)``),
    to the plan's listener; raise TimeoutError if nobody takes it in time. Returns the message sent,
    without its token."""
    msg = make_decision(run, scan, action, source, token=load_token(token_file) if token is None else token)
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
    return {k: v for k, v in msg.items() if k != "token"}


def parse_decision(body: bytes, now: float | None = None) -> dict:
    """Decode and validate one decision message (its ``time`` within ``MAX_CLOCK_SKEW_S`` of ``now`` when
    given); ValueError naming the problem otherwise. The token, if any, is kept: checking it is the
    listener's work."""
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a malformed message
        raise ValueError(f"decision is not valid msgpack: {exc}") from None
    if not isinstance(msg, dict) or msg.get("type") != "decision":
        raise ValueError("decision message must be a map with type 'decision'")
    for key in ("run", "scan", "action"):
        if key not in msg:
            raise ValueError(f"decision message lacks {key!r}")
    fields = {"run": msg["run"], "scan": msg["scan"], "action": msg["action"], "source": msg.get("source", "operator"),
              "time": msg.get("time")}
    if "token" in msg:
        fields["token"] = msg["token"]
    return _validated(fields, now)


class _Refused(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class DecisionListener:
    """The plan's end of the channel: bound PULL socket, polled with a timeout.

    ``token`` is the channel's secret (default: read by ``load_token(token_file)``, which makes the
    file when missing). Refused messages are counted in ``rejected`` by reason: ``invalid`` (not a
    valid decision, its time included), ``no_token``, ``wrong_token``.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, token: str | None = None,
                 token_file: str | Path | None = None):
        self._token = (load_token(token_file) if token is None else token).encode()
        self._sock = zmq.Context.instance().socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)  # a bigger message drops its sender's connection
        self._sock.bind(endpoint)
        self.endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.rejected: Counter[str] = Counter()

    def check(self, body: bytes) -> dict:
        """The decision in ``body`` without its token, if valid and authentic; ``_Refused`` (a ValueError
        with a ``reason``) otherwise."""
        try:
            msg = parse_decision(body, now=time.time())
        except ValueError as exc:
            raise _Refused("invalid", str(exc)) from None
        sent = msg.pop("token", None)
        if sent is None:
            raise _Refused("no_token", f"decision from {msg['source']!r} on run {msg['run']!r} scan {msg['scan']} "
                                       f"carries no token")
        if not hmac.compare_digest(sent.encode(), self._token):
            raise _Refused("wrong_token", f"decision from {msg['source']!r} on run {msg['run']!r} scan {msg['scan']} "
                                          f"carries a wrong token")
        return msg

    def wait(self, timeout_s: float, scan: int | None = None, run: str | None = None) -> dict | None:
        """The next valid decision (for ``scan``/``run`` if given) within ``timeout_s``, else None."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not self._sock.poll(int(left * 1000) + 1):
                continue
            body = self._sock.recv()
            try:
                msg = self.check(body)
            except _Refused as exc:
                self.rejected[exc.reason] += 1
                n = sum(self.rejected.values())
                if n <= 20 or n % 100 == 0:  # a flood of refused messages must not flood the log
                    log.warning("rejected decision message (%s, %d refused so far): %.300s", exc.reason, n, exc)
                continue
            if (scan is None or msg["scan"] == scan) and (run is None or msg["run"] == run):
                return msg
            log.info("ignored decision for run %s scan %s while waiting for %s/%s",
                     msg["run"], msg["scan"], run, scan)
        return None

    def close(self) -> None:
        self._sock.close()
