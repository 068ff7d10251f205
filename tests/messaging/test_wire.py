import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.messaging import wire


def test_frame_round_trip_keeps_header_and_pixels():
    frame = np.arange(12, dtype=np.uint32).reshape(3, 4)
    parts = wire.encode_frame(run="r1", scan=3, frame=7, seq=11, theta_deg=7.25, timestamp=123.5, array=frame)
    msg = wire.decode([bytes(p) for p in parts])
    assert msg.type == "frame"
    assert msg.header["run"] == "r1" and msg.header["scan"] == 3 and msg.header["frame"] == 7
    assert msg.header["theta_deg"] == 7.25 and msg.header["shape"] == [3, 4] and msg.header["dtype"] == "uint32"
    assert msg.header["seq"] == 11 and msg.header["encoding"] == "raw"
    np.testing.assert_array_equal(msg.array, frame)


def test_frame_buffer_is_not_copied_on_either_side():
    frame = np.ones((4, 4), dtype=np.uint16)
    parts = wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=0.0, timestamp=0.0, array=frame)
    assert np.shares_memory(np.frombuffer(parts[1], dtype=np.uint16), frame)
    received = bytearray(bytes(parts[1]))
    msg = wire.decode([parts[0], received])
    assert np.shares_memory(msg.array, np.frombuffer(received, dtype=np.uint16))


@pytest.mark.parametrize("kind, fields", [
    ("run_start", {"run": "r", "metadata": {"geometry": {"voxel_nm": 12.0}}}),
    ("scan_start", {"run": "r", "scan": 1, "num_frames": 5, "metadata": {"voltage_v": 3.5}}),
    ("document", {"run": "r", "name": "start", "doc": {"uid": "abc", "scan_id": 3}}),
    ("scan_end", {"run": "r", "scan": 1, "num_frames": 5}),
    ("run_stop", {"run": "r"}),
    ("heartbeat", {}),
])
def test_control_messages_round_trip(kind, fields):
    msg = wire.decode(wire.encode(kind, **fields))
    assert msg.type == kind and msg.array is None
    for k, v in fields.items():
        assert msg.header[k] == v


def _header(**kw):
    h = {"type": "frame", "version": wire.PROTOCOL_VERSION, "run": "r", "scan": 0, "frame": 0, "seq": 0,
         "theta_deg": 1.0, "timestamp": 1.0, "shape": [2, 2], "dtype": "uint32", "encoding": "raw"}
    h.update(kw)
    return msgpack.packb(h)


@pytest.mark.parametrize("parts, match", [
    ([], "empty"),
    ([b"\xc1"], "not valid msgpack"),
    ([msgpack.packb([1, 2])], "must be a map"),
    ([msgpack.packb({"type": "launch", "version": 1})], "unknown message type"),
    ([msgpack.packb({"type": "run_stop", "version": 99, "run": "r"})], "unsupported protocol version"),
    ([msgpack.packb({"type": "scan_end", "version": 1, "run": "r"})], "lacks field"),
    ([_header()], "2 parts"),
    ([_header(), b"\x00" * 15], "15 bytes"),
    ([_header(dtype="float64"), b"\x00" * 32], "dtype"),
    ([_header(shape=[2, 2, 1]), b"\x00" * 16], "shape"),
    ([_header(shape=[2, -2]), b"\x00" * 16], "shape"),
    ([_header(scan=-1), b"\x00" * 16], "scan"),
    ([_header(theta_deg=float("nan")), b"\x00" * 16], "theta_deg"),
    ([_header(run=5), b"\x00" * 16], "run"),
    ([_header(seq=-3), b"\x00" * 16], "seq"),
    ([_header(seq=2**63), b"\x00" * 16], "seq"),
    ([_header(seq=1.0), b"\x00" * 16], "seq"),
    ([_header(scan=2**63), b"\x00" * 16], "scan"),
    ([_header(frame=wire.MAX_FRAMES_PER_SCAN), b"\x00" * 16], "frame"),
    ([_header(frame=5, num_frames=5), b"\x00" * 16], "not below the frame's num_frames 5"),
    ([_header(num_frames=10**6), b"\x00" * 16], "num_frames"),
    ([_header(crc32=2**32), b"\x00" * 16], "crc32"),
    ([_header(crc32="0"), b"\x00" * 16], "crc32"),
    ([_header(crc32=1), b"\x00" * 16], "crc32 mismatch"),
    ([_header(shape=[1024, 1024]), b"\x00" * 16], "over this receiver's limit"),
    ([msgpack.packb({"type": "scan_end", "version": 1, "run": "r", "scan": 2**64 - 1, "num_frames": 1})], "scan"),
    ([msgpack.packb({"type": "heartbeat", "version": 1, "seq": 2**63})], "seq"),
    ([_header(encoding="jpeg"), b"\x00" * 16], "encoding"),
    ([_header(shape=[100000, 100000]), b"\x00" * 16], "shape"),
    ([_header(dtype="float32"), np.array([[1, np.nan], [0, 0]], np.float32).tobytes()], "NaN"),
    ([_header(dtype="float32"), np.array([[1, np.inf], [0, 0]], np.float32).tobytes()], "NaN or infinite"),
    ([_header(), b"\x00" * 16, b"extra"], "2 parts"),
    ([msgpack.packb({"type": "scan_start", "version": 1, "run": "r", "scan": 0, "num_frames": 10**9,
                     "metadata": {}})], "exceeds"),
    ([msgpack.packb({"type": "scan_start", "version": 1, "run": "r", "scan": 0, "num_frames": 3,
                     "metadata": [1]})], "must be a map"),
    ([msgpack.packb({"type": "run_stop", "version": 1, "run": "r"}), b"x"], "1 part"),
])
def test_malformed_messages_raise_specific_errors(parts, match):
    with pytest.raises(wire.WireError, match=match):
        wire.decode(parts, max_frame_bytes=512 * 512 * 4)


def test_largest_indices_are_accepted():
    msg = wire.decode([_header(seq=2**63 - 1, scan=2**63 - 1, frame=wire.MAX_FRAMES_PER_SCAN - 1), b"\x00" * 16])
    assert msg.header["seq"] == msg.header["scan"] == 2**63 - 1


def test_encoder_refuses_bad_frames():
    with pytest.raises(wire.WireError, match="2D"):
        wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=0, timestamp=0, array=np.zeros(3, np.uint32))
    with pytest.raises(wire.WireError, match="dtype"):
        wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=0, timestamp=0,
                          array=np.zeros((2, 2), np.float64))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=3))
def test_arbitrary_bytes_only_ever_raise_wire_error(parts):
    try:
        wire.decode(parts)
    except wire.WireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "version", "run", "scan", "frame", "theta_deg", "timestamp",
                                        "shape", "dtype", "num_frames", "metadata", "seq",
                                        "encoding", "name", "doc", "crc32"]),
                       st.one_of(st.integers(-5, 5), st.text(max_size=8), st.floats(), st.none(),
                                 st.lists(st.integers(-3, 70), max_size=3), st.sampled_from(["frame", "uint32", "raw", "float32", "document"]),
                                 st.dictionaries(st.text(max_size=3), st.integers(-2**63, 2**63 - 1), max_size=2))),
       st.binary(max_size=64))
def test_fuzzed_headers_only_ever_raise_wire_error(header, buffer):
    try:
        wire.decode([msgpack.packb(header), buffer])
    except wire.WireError:
        pass


@pytest.mark.parametrize("shape, dtype", [((512, 512), "uint32"), ((5, 7), "uint16"), ((48, 48), "float32"),
                                          ((1, 3), "uint8"), ((100, 37), "int32")])
def test_bslz4_frames_round_trip(shape, dtype):
    frame = np.random.default_rng(3).poisson(2.0, shape).astype(dtype)
    parts = wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=0, timestamp=0, array=frame,
                              encoding="bslz4")
    assert len(parts[1]) < frame.nbytes + 64
    msg = wire.decode([bytes(p) for p in parts])
    assert msg.array is None and msg.encoded.shape == shape
    np.testing.assert_array_equal(msg.frame.decode(), frame)
    again = wire.decode([bytes(p) for p in wire.encode_frame(run="r", scan=0, frame=0, seq=1, theta_deg=0,
                                                               timestamp=0, array=msg.encoded)])
    assert bytes(again.encoded.chunk) == bytes(msg.encoded.chunk)  # forwarded compressed, untouched


def _bslz4_parts(**kw):
    frame = np.arange(64, dtype=np.uint32).reshape(8, 8)
    header, chunk = wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=0, timestamp=0, array=frame,
                                      encoding="bslz4", checksum=False)  # the chunk's own checks, unshielded
    return header, bytearray(chunk)


def test_bslz4_headers_that_lie_are_rejected_at_once():
    header, chunk = _bslz4_parts()
    with pytest.raises(wire.WireError, match="shorter than"):
        wire.decode([header, bytes(chunk[:5])])
    bad = chunk.copy()
    bad[0:8] = (10**6).to_bytes(8, "big")
    with pytest.raises(wire.WireError, match="holds"):
        wire.decode([header, bytes(bad)])
    bad = chunk.copy()
    bad[8:12] = (3).to_bytes(4, "big")
    with pytest.raises(wire.WireError, match="block"):
        wire.decode([header, bytes(bad)])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_corrupted_bslz4_never_crashes_only_raises(data):
    frame = np.random.default_rng(1).poisson(3.0, (32, 32)).astype(np.uint32)
    chunk = bytearray(wire.bslz4_chunk(frame))
    cut = data.draw(st.integers(12, len(chunk)))
    chunk = chunk[:cut]
    for _ in range(data.draw(st.integers(0, 8))):
        if len(chunk) > 12:
            chunk[data.draw(st.integers(12, len(chunk) - 1))] = data.draw(st.integers(0, 255))
    encoded = wire.EncodedFrame(memoryview(bytes(chunk)), (32, 32), np.dtype("uint32"))
    try:
        assert encoded.decode().shape == (32, 32)
    except wire.WireError:
        pass


@pytest.mark.parametrize("shape", [(48, 48), (5, 7), (100, 37)])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_bslz4_float_frames_with_a_non_finite_pixel_are_rejected_anywhere(shape, value):
    frame = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    for where in [(0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, shape[1] // 3)]:  # last: in the tail
        bad = frame.copy()
        bad[where] = value
        parts = wire.encode_frame(run="r", scan=0, frame=0, seq=0, theta_deg=0, timestamp=0, array=bad,
                                  encoding="bslz4")
        with pytest.raises(wire.WireError, match="NaN or infinite"):
            wire.decode([bytes(p) for p in parts])
