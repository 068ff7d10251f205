"""The frame-stream wire format: a msgpack header part, then zero or more raw buffer parts.

This module is the bottom floor: it imports nothing from the project. A frame travels as
``[header, buffer]`` where ``buffer`` is the C-contiguous array memory (sent without a copy),
and the header names its shape and dtype. Every decoding problem raises :class:`WireError`
with a message that says what was wrong.

A frame's header may carry ``crc32``, the zlib CRC-32 of its buffer part exactly as sent (for
``bslz4``, of the compressed chunk); :func:`decode` verifies it when present. Declared frame
sizes are checked against a byte limit before anything is allocated or decompressed.
"""

from __future__ import annotations

import struct
import zlib
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
MAX_INDEX = 2**63 - 1  # ``seq`` and ``scan`` are unsigned 63-bit integers (int64 wherever they are stored)
#: default byte limit of one decoded frame (rows * cols * itemsize): a 16-megapixel detector at 4 bytes a
#: pixel fits (Eiger2 16M: 72 MB); a receiver that knows its detector passes its exact size to decode()
MAX_FRAME_BYTES = 2**27

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
        """Decompress every block with bounds checks; the pieces are returned only when ``keep``, else
        a float frame's pixels are checked finite block by block (memory: one block)."""
        chunk, size_of, itemsize = self.chunk, len(self.chunk), self.dtype.itemsize
        finite = not keep and self.dtype.kind == "f"
        nelem = self.shape[0] * self.shape[1]
        block = _U32.unpack_from(chunk, 8)[0] // itemsize
        full, last = divmod(nelem - nelem % 8, block)  # whole blocks, then one shorter block
        if 12 + 4 * (full + bool(last)) > size_of:  # every block has at least its 4-byte size: no list, no loop
            raise WireError("bslz4 frame is truncated")
        out, pos = [], 12
        decompress, unpack = lz4.block.decompress, _U32.unpack_from
        try:
            for i in range(full + bool(last)):
                want = (block if i < full else last) * itemsize
                end = pos + 4 + unpack(chunk, pos)[0]
                if end > size_of:
                    raise WireError("bslz4 frame is truncated")
                piece = decompress(chunk[pos + 4 : end], uncompressed_size=want)
                if len(piece) != want:
                    raise WireError(f"bslz4 block decompresses to {len(piece)} bytes, not {want}")
                if keep:
                    out.append(piece)
                elif finite and _has_nonfinite(piece, self.dtype):
                    raise WireError("frame contains NaN or infinite values")
                pos = end
        except (struct.error, lz4.block.LZ4BlockError) as exc:
            raise WireError(f"bslz4 frame does not decompress: {exc}") from None
        tail = (nelem % 8) * itemsize  # fewer than 8 leftover pixels follow uncompressed
        if pos + tail != size_of:
            raise WireError(f"bslz4 frame has {size_of - pos - tail} bytes more or less than its blocks")
        if keep:
            out.append(bytes(chunk[pos:]))
        elif finite and tail and not np.isfinite(np.frombuffer(chunk[pos:], self.dtype)).all():
            raise WireError("frame contains NaN or infinite values")
        return out

    def validate(self) -> None:
        """Raise WireError unless every LZ4 block decompresses to exactly its size (and a float frame
        is finite), without ever holding more than one decompressed block."""
        self._walk(keep=False)

    def decode(self) -> np.ndarray:
        block = struct.unpack_from(">I", self.chunk, 8)[0] // self.dtype.itemsize
        shuffled = np.frombuffer(b"".join(self._walk(keep=True)), self.dtype)
        return bitshuffle.bitunshuffle(shuffled, block).reshape(self.shape)


def _has_nonfinite(piece: bytes, dtype: np.dtype) -> bool:
    """Whether a bit-shuffled block of floats holds NaN or infinity, read without unshuffling: its
    rows are the bit planes of the little-endian pixels, and a pixel is not finite exactly when all
    its exponent bits (23..30 for float32) are set."""
    info = np.finfo(dtype)
    planes = np.frombuffer(piece, np.uint8).reshape(8 * dtype.itemsize, -1)
    return bool(np.bitwise_and.reduce(planes[info.nmant : info.nmant + info.nexp], axis=0).any())


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
    encoding: str = "raw", checksum: bool | None = None, **extra: Any,
) -> list:
    """Encode a frame: header plus the array's own memory (no copy when C-contiguous), or plus its
    bitshuffle+LZ4 chunk when ``encoding`` is ``bslz4``. ``checksum`` adds the buffer's ``crc32``; by
    default a compressed frame has it (nearly free on a chunk) and a raw one not (0.25 ms per MB a side)."""
    if isinstance(array, EncodedFrame):  # already compressed (as a detector sends it): no work here
        return _frame_parts(run, scan, frame, seq, theta_deg, timestamp, array.shape, array.dtype, "bslz4",
                            array.chunk, True if checksum is None else checksum, extra)
    checksum = encoding == "bslz4" if checksum is None else checksum
    if encoding not in ENCODINGS:
        raise WireError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")
    array = np.ascontiguousarray(array)
    if array.ndim != 2:
        raise WireError(f"a frame must be 2D, got shape {array.shape}")
    if array.dtype.name not in FRAME_DTYPES:
        raise WireError(f"frame dtype {array.dtype.name} not in {FRAME_DTYPES}")
    buffer = bslz4_chunk(array) if encoding == "bslz4" else memoryview(array).cast("B")
    return _frame_parts(run, scan, frame, seq, theta_deg, timestamp, array.shape, array.dtype, encoding, buffer,
                        checksum, extra)


def _frame_parts(run, scan, frame, seq, theta_deg, timestamp, shape, dtype, encoding, buffer, checksum,
                 extra) -> list:
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
    if checksum:
        header["crc32"] = zlib.crc32(buffer)  # of the buffer exactly as sent; zlib reads it in place
    return [msgpack.packb(header, use_bin_type=True), buffer]


def _check_fields(header: dict) -> None:
    missing = [k for k in REQUIRED_FIELDS[header["type"]] if k not in header]
    if missing:
        raise WireError(f"{header['type']} message lacks field(s) {', '.join(missing)}")


def decode(parts: list, *, max_frame_bytes: int = MAX_FRAME_BYTES) -> Message:
    """Decode a received multipart message; the frame array is a zero-copy view of its part.

    A frame whose declared ``rows * cols * itemsize`` exceeds ``max_frame_bytes`` (pass the
    detector's frame size) is refused before anything is allocated or decompressed; a frame's
    ``crc32``, when present, is verified over the received buffer before it is decoded.
    """
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
    _check_frame_header(header, parts, max_frame_bytes)
    view = _buffer(parts[1])
    if "crc32" in header:
        _verify_checksum(header, view)
    if header["encoding"] == "bslz4":
        return Message(msg_type, header, encoded=_encoded_frame(header, view))
    return Message(msg_type, header, _frame_array(header, view))


def _is_count(value: Any, most: int = MAX_INDEX) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


#: largest value of each integer field of a header
_MOST = {"scan": MAX_INDEX, "frame": MAX_FRAMES_PER_SCAN - 1, "num_frames": MAX_FRAMES_PER_SCAN, "seq": MAX_INDEX}


def _check_types(header: dict) -> None:
    """Types and bounds of the common fields, so no consumer trips over a malformed header."""
    kind = header["type"]
    if "run" in REQUIRED_FIELDS[kind] and not isinstance(header["run"], str):
        raise WireError(f"{kind} field 'run' must be a string, got {header['run']!r}")
    optional = ("seq", "num_frames") if kind == "frame" else ("seq",)  # checked wherever they come
    for key, most in _MOST.items():
        if key in REQUIRED_FIELDS[kind] or key in optional and key in header:
            value = header[key]
            if not _is_count(value):
                raise WireError(f"{kind} field {key!r} must be an integer in 0..{most}, got {value!r}")
            if value > most:
                raise WireError(f"{kind} {key} {value} exceeds {most}")
    if kind == "frame" and "num_frames" in header and not header["frame"] < header["num_frames"]:
        raise WireError(f"frame index {header['frame']} is not below the frame's num_frames {header['num_frames']}")
    for key in ("metadata", "doc"):
        if key in REQUIRED_FIELDS[kind] and not isinstance(header[key], dict):
            raise WireError(f"{kind} field {key!r} must be a map, got {type(header[key]).__name__}")
    if kind == "document" and not isinstance(header["name"], str):
        raise WireError(f"document field 'name' must be a string, got {header['name']!r}")


def _check_frame_header(header: dict, parts: list, max_frame_bytes: int) -> None:
    """Everything about a frame that its header alone tells, its declared size among it."""
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
    nbytes = shape[0] * shape[1] * np.dtype(dtype).itemsize
    if nbytes > max_frame_bytes:
        raise WireError(f"{_name(header)}: {shape} {dtype} is {nbytes} bytes, over this receiver's limit of "
                        f"{max_frame_bytes} bytes a frame")
    for key in ("theta_deg", "timestamp"):
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise WireError(f"frame field {key!r} must be a finite number, got {value!r}")
    if "crc32" in header and not _is_count(header["crc32"], 0xFFFFFFFF):
        raise WireError(f"frame field 'crc32' must be an unsigned 32-bit integer, got {header['crc32']!r}")


def _name(header: dict) -> str:
    return f"frame {header['frame']} of scan {header['scan']} of run {header['run']!r}"


def _verify_checksum(header: dict, view: memoryview) -> None:
    """The buffer's CRC-32 against the header's (zlib reads the received buffer in place)."""
    crc = zlib.crc32(view)
    if crc != header["crc32"]:
        raise WireError(f"{_name(header)}: crc32 mismatch: the payload's is {crc:#010x}, "
                        f"the header says {header['crc32']:#010x} (corrupted in transit)")


def _buffer(part) -> memoryview:
    return (part.buffer if hasattr(part, "buffer") else memoryview(part)).cast("B")


def _encoded_frame(header: dict, view: memoryview) -> EncodedFrame:
    """Check a bslz4 frame: its 12-byte header, then that every block decompresses (bounds-checked)."""
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
    frame.validate()  # every block must decompress, safely, to its exact size; float pixels must be finite
    return frame


def _frame_array(header: dict, view: memoryview) -> np.ndarray:
    dtype, shape = header["dtype"], header["shape"]
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if view.nbytes != expected:
        raise WireError(f"frame buffer has {view.nbytes} bytes, header says {shape} {dtype} = {expected}")
    array = np.frombuffer(view, dtype=dtype).reshape(shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise WireError("frame contains NaN or infinite values")
    return array
