"""The frame-stream wire format: a msgpack header part, then zero or more raw buffer parts.

This module is the bottom floor: it imports nothing from the project. A frame travels as
``[header, buffer]`` where ``buffer`` is the C-contiguous array memory (sent without a copy),
and the header names its shape and dtype. Every decoding problem raises :class:`WireError`
with a message that says what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1

#: message type -> header fields it must carry (besides ``type`` and ``version``)
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "run_start": ("run", "metadata"),
    "scan_start": ("run", "scan", "num_frames", "metadata"),
    "frame": ("run", "scan", "frame", "seq", "theta_deg", "timestamp", "shape", "dtype", "encoding"),
    "scan_end": ("run", "scan", "num_frames"),
    "run_stop": ("run",),
    "document": ("run", "name", "doc"),
    "heartbeat": (),
}

#: pixel encodings of a frame buffer
ENCODINGS = ("raw",)

#: sanity limits on header values (anything larger is an absurd header, not a detector)
MAX_FRAME_SIDE = 16384
MAX_FRAMES_PER_SCAN = 100_000

#: detector dtypes accepted on the wire (counting detectors: unsigned integers, or float32)
FRAME_DTYPES = ("uint8", "uint16", "uint32", "int32", "float32")


class WireError(ValueError):
    """A message that does not follow the protocol."""


@dataclass
class Message:
    type: str
    header: dict[str, Any]
    array: np.ndarray | None = None  # the frame, for ``frame`` messages (read-only view)


def encode(msg_type: str, **fields: Any) -> list[bytes]:
    """Encode a message without a buffer (scan_start, scan_end, run_stop, heartbeat)."""
    if msg_type not in REQUIRED_FIELDS or msg_type == "frame":
        raise WireError(f"cannot encode message type {msg_type!r} without a frame")
    header = {"type": msg_type, "version": PROTOCOL_VERSION, **fields}
    _check_fields(header)
    return [msgpack.packb(header, use_bin_type=True)]


def encode_frame(
    *, run: str, scan: int, frame: int, seq: int, theta_deg: float, timestamp: float, array: np.ndarray,
    **extra: Any,
) -> list:
    """Encode a frame: header plus the array's own memory (no copy when C-contiguous)."""
    array = np.ascontiguousarray(array)
    if array.ndim != 2:
        raise WireError(f"a frame must be 2D, got shape {array.shape}")
    if array.dtype.name not in FRAME_DTYPES:
        raise WireError(f"frame dtype {array.dtype.name} not in {FRAME_DTYPES}")
    header = {
        "type": "frame",
        "version": PROTOCOL_VERSION,
        "run": str(run),
        "scan": int(scan),
        "frame": int(frame),
        "seq": int(seq),
        "theta_deg": float(theta_deg),
        "timestamp": float(timestamp),
        "shape": list(array.shape),
        "dtype": array.dtype.name,
        "encoding": "raw",
        **extra,
    }
    return [msgpack.packb(header, use_bin_type=True), memoryview(array).cast("B")]


def _check_fields(header: dict) -> None:
    missing = [k for k in REQUIRED_FIELDS[header["type"]] if k not in header]
    if missing:
        raise WireError(f"{header['type']} message lacks field(s) {', '.join(missing)}")


def decode(parts: list) -> Message:
    """Decode a received multipart message; the frame array is a zero-copy view of its part."""
    if not parts:
        raise WireError("empty message")
    try:
        header = msgpack.unpackb(bytes(parts[0]), raw=False, strict_map_key=True)
    except Exception as exc:
        raise WireError(f"header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise WireError(f"header must be a map, got {type(header).__name__}")
    msg_type = header.get("type")
    if not isinstance(msg_type, str) or msg_type not in REQUIRED_FIELDS:
        raise WireError(f"unknown message type {msg_type!r}")
    version = header.get("version")
    if version != PROTOCOL_VERSION:
        raise WireError(f"unsupported protocol version {version!r} (this reader speaks {PROTOCOL_VERSION})")
    _check_fields(header)
    _check_types(header)
    if msg_type != "frame":
        if len(parts) != 1:
            raise WireError(f"{msg_type} message must have 1 part, got {len(parts)}")
        return Message(msg_type, header)
    return Message(msg_type, header, _frame_array(header, parts))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_types(header: dict) -> None:
    """Types of the common fields, so no consumer trips over a malformed header."""
    kind = header["type"]
    if "run" in REQUIRED_FIELDS[kind] and not isinstance(header["run"], str):
        raise WireError(f"{kind} field 'run' must be a string, got {header['run']!r}")
    for key in ("scan", "frame", "num_frames", "seq"):
        if key in header and (key in REQUIRED_FIELDS[kind] or key == "seq") and not _is_count(header[key]):
            raise WireError(f"{kind} field {key!r} must be a non-negative integer, got {header[key]!r}")
    if "num_frames" in REQUIRED_FIELDS[kind] and header["num_frames"] > MAX_FRAMES_PER_SCAN:
        raise WireError(f"{kind} num_frames {header['num_frames']} exceeds {MAX_FRAMES_PER_SCAN}")
    for key in ("metadata", "doc"):
        if key in REQUIRED_FIELDS[kind] and not isinstance(header[key], dict):
            raise WireError(f"{kind} field {key!r} must be a map, got {type(header[key]).__name__}")
    if kind == "document" and not isinstance(header["name"], str):
        raise WireError(f"document field 'name' must be a string, got {header['name']!r}")


def _frame_array(header: dict, parts: list) -> np.ndarray:
    if len(parts) != 2:
        raise WireError(f"frame message must have 2 parts (header, buffer), got {len(parts)}")
    dtype, shape = header["dtype"], header["shape"]
    if dtype not in FRAME_DTYPES:
        raise WireError(f"frame dtype {dtype!r} not in {FRAME_DTYPES}")
    if header["encoding"] not in ENCODINGS:
        raise WireError(f"frame encoding {header['encoding']!r} not in {ENCODINGS}")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_FRAME_SIDE for n in shape)
    ):
        raise WireError(f"frame shape must be two integers in 1..{MAX_FRAME_SIDE}, got {shape!r}")
    for key in ("theta_deg", "timestamp"):
        if not isinstance(header[key], (int, float)) or not np.isfinite(header[key]):
            raise WireError(f"frame field {key!r} must be a finite number, got {header[key]!r}")
    buf = parts[1]
    view = buf.buffer if hasattr(buf, "buffer") else memoryview(buf)
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if view.nbytes != expected:
        raise WireError(f"frame buffer has {view.nbytes} bytes, header says {shape} {dtype} = {expected}")
    array = np.frombuffer(view, dtype=dtype).reshape(shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise WireError("frame contains NaN or infinite values")
    return array
