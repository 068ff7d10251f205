import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer import wire


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
        wire.decode(parts)


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
                                        "encoding", "name", "doc"]),
                       st.one_of(st.integers(-5, 5), st.text(max_size=8), st.floats(), st.none(),
                                 st.lists(st.integers(-3, 70), max_size=3), st.sampled_from(["frame", "uint32", "raw", "float32", "document"]),
                                 st.dictionaries(st.text(max_size=3), st.integers(-2**63, 2**63 - 1), max_size=2))),
       st.binary(max_size=64))
def test_fuzzed_headers_only_ever_raise_wire_error(header, buffer):
    try:
        wire.decode([msgpack.packb(header), buffer])
    except wire.WireError:
        pass
