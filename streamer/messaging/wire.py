"""The frame-stream wire format: a msgpack header part, then zero or more raw buffer parts.

This module is the bottom floor: it imports nothing from the project. A frame travels as
``[header, buffer]`` where ``buffer`` is the C-contiguous array memory (sent without a copy),
and the header names its shape and dtype. Every decoding problem raises :class:`WireError`
with a message that says what was wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import bitshuffle
import lz4.block
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

#: pixel encodings of a frame buffer: raw C-order pixels, or ``bslz4``: bitshuffle+LZ4 exactly as
#: an HDF5 filter-32008 chunk (uint64 BE byte count, uint32 BE block bytes, then per block a uint32
#: BE compressed size and the LZ4 block), as Dectris and Timepix stream writers produce it
ENCODINGS = ("raw", "bslz4")
BSLZ4_BLOCK_BYTES = 8192
_U32 = struct.Struct(">I")

#: sanity limits on header values (anything larger is an absurd header, not a detector)
MAX_FRAME_SIDE = 16384
MAX_FRAMES_PER_SCAN = 100_000

#: detector dtypes accepted on the wire (counting detectors: unsigned integers, or float32)
FRAME_DTYPES = ("uint8", "uint16", "uint32", "int32", "float32")


class WireError(ValueError):
    """A message that does not follow the protocol."""


@dataclass
class EncodedFrame:
    """A ``bslz4`` frame kept compressed: ``chunk`` is written to HDF5 as it is.

    It is decoded with python-lz4's bounds-checked decoder, never with bitshuffle's own LZ4
    decoder, which crashed the process on corrupted input here.
    """

    chunk: memoryview
    shape: tuple[int, int]
    dtype: np.dtype

    def _walk(self, keep: bool) -> list[bytes]:
        """Decompress every block with bounds checks; the pieces are returned only when ``keep``."""
        chunk, size_of, itemsize = self.chunk, len(self.chunk), self.dtype.itemsize
        nelem = self.shape[0] * self.shape[1]
        block = _U32.unpack_from(chunk, 8)[0] // itemsize
        full, last = divmod(nelem - nelem % 8, block)  # whole blocks, then one shorter block
        wants = [block * itemsize] * full + ([last * itemsize] if last else [])
        out, pos = [], 12
        decompress, unpack = lz4.block.decompress, _U32.unpack_from
        try:
            for want in wants:
                end = pos + 4 + unpack(chunk, pos)[0]
                if end > size_of:
                    raise WireError("bslz4 frame is truncated")
                piece = decompress(chunk[pos + 4 : end], uncompressed_size=want)
                if len(piece) != want:
                    raise WireError(f"bslz4 block decompresses to {len(piece)} bytes, not {want}")
                if keep:
                    out.append(piece)
                pos = end
        except (struct.error, lz4.block.LZ4BlockError) as exc:
            raise WireError(f"bslz4 frame does not decompress: {exc}") from None
        tail = (nelem % 8) * itemsize  # fewer than 8 leftover pixels follow uncompressed
        if pos + tail != size_of:
            raise WireError(f"bslz4 frame has {size_of - pos - tail} bytes more or less than its blocks")
        if keep:
            out.append(bytes(chunk[pos:]))
        return out

    def validate(self) -> None:
        """Raise WireError unless every LZ4 block decompresses to exactly its size."""
        self._walk(keep=False)

    def decode(self) -> np.ndarray:
        block = struct.unpack_from(">I", self.chunk, 8)[0] // self.dtype.itemsize
        shuffled = np.frombuffer(b"".join(self._walk(keep=True)), self.dtype)
        return bitshuffle.bitunshuffle(shuffled, block).reshape(self.shape)


def bslz4_chunk(array: np.ndarray) -> bytes:
    """Compress a frame into the ``bslz4`` encoding (an HDF5 filter-32008 chunk)."""
    array = np.ascontiguousarray(array)
    block = BSLZ4_BLOCK_BYTES // array.itemsize
    header = struct.pack(">QI", array.nbytes, block * array.itemsize)
    return header + bytes(bitshuffle.compress_lz4(array, block))


@dataclass
class Message:
    type: str
    header: dict[str, Any]
    array: np.ndarray | None = None  # a raw frame (read-only view of the received buffer)
    encoded: EncodedFrame | None = None  # a bslz4 frame, still compressed

    @property
    def frame(self) -> np.ndarray | EncodedFrame | None:
        return self.array if self.array is not None else self.encoded


def encode(msg_type: str, **fields: Any) -> list[bytes]:
    """Encode a message without a buffer (scan_start, scan_end, run_stop, heartbeat)."""
    if msg_type not in REQUIRED_FIELDS or msg_type == "frame":
        raise WireError(f"cannot encode message type {msg_type!r} without a frame")
    header = {"type": msg_type, "version": PROTOCOL_VERSION, **fields}
    _check_fields(header)
    return [msgpack.packb(header, use_bin_type=True)]


def encode_frame(
    *, run: str, scan: int, frame: int, seq: int, theta_deg: float, timestamp: float, array: np.ndarray,
    encoding: str = "raw", **extra: Any,
) -> list:
    """Encode a frame: header plus the array's own memory (no copy when C-contiguous), or plus its
    bitshuffle+LZ4 chunk when ``encoding`` is ``bslz4``."""
    if isinstance(array, EncodedFrame):  # already compressed (as a detector sends it): no work here
        return _frame_parts(run, scan, frame, seq, theta_deg, timestamp, array.shape, array.dtype, "bslz4",
                            array.chunk, extra)
    if encoding not in ENCODINGS:
        raise WireError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")
    array = np.ascontiguousarray(array)
    if array.ndim != 2:
        raise WireError(f"a frame must be 2D, got shape {array.shape}")
    if array.dtype.name not in FRAME_DTYPES:
        raise WireError(f"frame dtype {array.dtype.name} not in {FRAME_DTYPES}")
    buffer = bslz4_chunk(array) if encoding == "bslz4" else memoryview(array).cast("B")
    return _frame_parts(run, scan, frame, seq, theta_deg, timestamp, array.shape, array.dtype, encoding, buffer,
                        extra)


def _frame_parts(run, scan, frame, seq, theta_deg, timestamp, shape, dtype, encoding, buffer, extra) -> list:
    header = {
        "type": "frame",
        "version": PROTOCOL_VERSION,
        "run": str(run),
        "scan": int(scan),
        "frame": int(frame),
        "seq": int(seq),
        "theta_deg": float(theta_deg),
        "timestamp": float(timestamp),
        "shape": [int(n) for n in shape],
        "dtype": np.dtype(dtype).name,
        "encoding": encoding,
        **extra,
    }
    return [msgpack.packb(header, use_bin_type=True), buffer]


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
    if header.get("encoding") == "bslz4":
        return Message(msg_type, header, encoded=_encoded_frame(header, parts))
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


def _check_frame_header(header: dict, parts: list) -> None:
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
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise WireError(f"frame field {key!r} must be a finite number, got {value!r}")


def _buffer(part) -> memoryview:
    return (part.buffer if hasattr(part, "buffer") else memoryview(part)).cast("B")


def _encoded_frame(header: dict, parts: list) -> EncodedFrame:
    """Check a bslz4 frame: its 12-byte header, then that every block decompresses (bounds-checked)."""
    _check_frame_header(header, parts)
    view = _buffer(parts[1])
    dtype = np.dtype(header["dtype"])
    nelem = header["shape"][0] * header["shape"][1]
    if view.nbytes < 12:
        raise WireError(f"bslz4 frame of {view.nbytes} bytes is shorter than its 12-byte header")
    nbytes, block_bytes = struct.unpack_from(">QI", view, 0)
    if nbytes != nelem * dtype.itemsize:
        raise WireError(f"bslz4 frame holds {nbytes} bytes, header says {header['shape']} {dtype}")
    if block_bytes == 0 or block_bytes % (8 * dtype.itemsize):
        raise WireError(f"bslz4 block of {block_bytes} bytes is not a multiple of 8 pixels")
    frame = EncodedFrame(view, tuple(header["shape"]), dtype)
    if dtype.kind == "f":
        if not np.isfinite(frame.decode()).all():
            raise WireError("frame contains NaN or infinite values")
    else:
        frame.validate()  # every block must decompress, safely, to its exact size
    return frame


def _frame_array(header: dict, parts: list) -> np.ndarray:
    _check_frame_header(header, parts)
    dtype, shape = header["dtype"], header["shape"]
    view = _buffer(parts[1])
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if view.nbytes != expected:
        raise WireError(f"frame buffer has {view.nbytes} bytes, header says {shape} {dtype} = {expected}")
    array = np.frombuffer(view, dtype=dtype).reshape(shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise WireError("frame contains NaN or infinite values")
    return array
