"""The optional per-frame crc32, and frame sizes bounded before anything is allocated or decompressed."""

import time
import tracemalloc
import zlib

import lz4.block
import msgpack
import numpy as np
import pytest
import zmq

from streamer.messaging import wire
from streamer.messaging.transport import FrameSender

DETECTOR_BYTES = 512 * 512 * 4  # the 512x512 uint32 detector of the benchmark


def _frame(encoding, checksum=True, **kw):
    array = np.random.default_rng(2).poisson(3.0, (512, 512)).astype(np.uint32)
    fields = {"run": "r1", "scan": 4, "frame": 17, "seq": 9, "theta_deg": 7.0, "timestamp": 1.0, **kw}
    parts = wire.encode_frame(array=array, encoding=encoding, checksum=checksum, **fields)
    return array, [bytes(parts[0]), bytearray(parts[1])]


@pytest.mark.parametrize("encoding", wire.ENCODINGS)
def test_checksum_round_trip(encoding):
    array, parts = _frame(encoding)
    header = msgpack.unpackb(parts[0])
    assert header["crc32"] == zlib.crc32(parts[1])  # of the buffer as sent (the compressed chunk for bslz4)
    msg = wire.decode(parts, max_frame_bytes=DETECTOR_BYTES)
    np.testing.assert_array_equal(msg.array if encoding == "raw" else msg.encoded.decode(), array)


@pytest.mark.parametrize("encoding", wire.ENCODINGS)
def test_a_flipped_byte_is_a_checksum_error_naming_the_frame(encoding):
    _, parts = _frame(encoding)
    parts[1][len(parts[1]) // 2] ^= 0x10
    with pytest.raises(wire.WireError, match=r"frame 17 of scan 4 of run 'r1': crc32 mismatch") as err:
        wire.decode(parts)
    crc = msgpack.unpackb(parts[0])["crc32"]
    assert f"{crc:#010x}" in str(err.value) and f"{zlib.crc32(parts[1]):#010x}" in str(err.value)


@pytest.mark.parametrize("encoding", wire.ENCODINGS)
def test_frames_without_checksum_are_accepted_unchecked(encoding):
    array, parts = _frame(encoding, checksum=False)
    assert "crc32" not in msgpack.unpackb(parts[0])
    msg = wire.decode(parts)
    np.testing.assert_array_equal(msg.frame if encoding == "raw" else msg.frame.decode(), array)
    if encoding == "raw":  # nothing checks the pixels: a flipped byte goes through, as before
        parts[1][100] ^= 1
        wire.decode(parts)


def test_forwarded_compressed_frames_get_the_checksum_of_their_chunk():
    _, parts = _frame("bslz4", checksum=False)
    encoded = wire.decode(parts).encoded
    header, chunk = wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=0, timestamp=0, array=encoded)
    assert msgpack.unpackb(header)["crc32"] == zlib.crc32(chunk)


@pytest.mark.parametrize("checksum", [True, False])
def test_frame_sender_adds_the_checksum_unless_told_not_to(checksum):
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind("inproc://checksum")
    sender = FrameSender("inproc://checksum", ctx=ctx, checksum=checksum)
    try:
        sender.frame("r", 0, 0, 7.0, np.ones((4, 4), np.uint16))
        msg = wire.decode(pull.recv_multipart())
        assert ("crc32" in msg.header) is checksum
    finally:
        sender.close()
        pull.close()
        ctx.term()


def test_by_default_compressed_frames_carry_the_checksum_and_raw_ones_not():
    raw = wire.decode(wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=7.0, timestamp=1.0,
                                        array=np.ones((4, 4), np.uint16)))
    packed = wire.decode(wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=7.0, timestamp=1.0,
                                           array=np.ones((4, 4), np.uint16), encoding="bslz4"))
    assert "crc32" not in raw.header and "crc32" in packed.header


def _huge_bslz4_parts():
    """About 6 MB on the wire declaring a 16384x16384 float32 frame (1 GiB): every LZ4 block is 8 KiB of
    zeros, so the chunk is honest and would decompress - to 1 GiB, joined and unshuffled into 3 more."""
    shape, block = (16384, 16384), 8192
    nbytes = shape[0] * shape[1] * 4
    piece = lz4.block.compress(b"\0" * block, store_size=False)
    chunk = (np.array([nbytes], ">u8").tobytes() + np.array([block], ">u4").tobytes()
             + (np.array([len(piece)], ">u4").tobytes() + piece) * (nbytes // block))
    header = {"type": "frame", "version": 1, "run": "r", "scan": 0, "frame": 3, "seq": 0, "theta_deg": 7.0,
              "timestamp": 1.0, "shape": list(shape), "dtype": "float32", "encoding": "bslz4",
              "crc32": zlib.crc32(chunk)}
    return [msgpack.packb(header), chunk]


@pytest.mark.parametrize("limit", [DETECTOR_BYTES, None])
def test_an_oversized_declared_frame_is_refused_before_any_allocation(limit):
    parts = _huge_bslz4_parts()
    assert len(parts[1]) < 7_000_000
    kwargs = {} if limit is None else {"max_frame_bytes": limit}  # the default is safe on its own too
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(wire.WireError, match=r"frame 3 of scan 0 of run 'r'.* over this receiver's limit"):
            wire.decode(parts, **kwargs)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6 and elapsed < 0.5, (peak, elapsed)


def test_a_frame_at_the_limit_is_accepted_and_one_byte_less_refuses_it():
    _, parts = _frame("raw")
    assert wire.decode(parts, max_frame_bytes=DETECTOR_BYTES).array.shape == (512, 512)
    with pytest.raises(wire.WireError, match="limit"):
        wire.decode(parts, max_frame_bytes=DETECTOR_BYTES - 1)


def test_a_bslz4_chunk_declaring_another_size_than_its_shape_is_refused_undecompressed():
    _, parts = _frame("bslz4", checksum=False)
    parts[1][0:8] = (2 * DETECTOR_BYTES).to_bytes(8, "big")
    with pytest.raises(wire.WireError, match="holds"):
        wire.decode(parts)


@pytest.mark.parametrize("field", ["seq", "scan"])
def test_indices_of_two_to_the_63_are_refused(field):
    _, parts = _frame("raw", **{field: 2**63})
    with pytest.raises(wire.WireError, match=field):
        wire.decode(parts)
    _, parts = _frame("raw", **{field: 2**63 - 1})
    assert wire.decode(parts).header[field] == 2**63 - 1


def test_a_compressed_float_frame_is_checked_block_by_block_without_decoding_it_whole():
    shape, block = (2048, 2048), 8192  # 16 MiB of float32 zeros in 4 KB on the wire
    piece = lz4.block.compress(b"\0" * block, store_size=False)
    chunk = (np.array([shape[0] * shape[1] * 4], ">u8").tobytes() + np.array([block], ">u4").tobytes()
             + (np.array([len(piece)], ">u4").tobytes() + piece) * (shape[0] * shape[1] * 4 // block))
    header = msgpack.packb({"type": "frame", "version": 1, "run": "r", "scan": 0, "frame": 0, "seq": 0,
                            "theta_deg": 7.0, "timestamp": 1.0, "shape": list(shape), "dtype": "float32",
                            "encoding": "bslz4"})
    tracemalloc.start()
    try:
        msg = wire.decode([header, chunk])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2e6 and msg.encoded.shape == shape
