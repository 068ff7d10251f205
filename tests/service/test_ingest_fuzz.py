"""Thousands of generated bad messages interleaved with a valid scan: every valid frame arrives."""

import tempfile

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.messaging import wire
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

RUN = "valid-run"
NUM = 6
SHAPE = (5, 7)

_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
                    st.text(alphabet="abcxyz", max_size=6), st.binary(max_size=8),
                    st.lists(st.integers(-4, 10**6), max_size=3), st.sampled_from(list(wire.REQUIRED_FIELDS)),
                    st.sampled_from(list(wire.FRAME_DTYPES) + ["raw", "float64"]))
_headers = st.dictionaries(st.sampled_from(["type", "version", "run", "scan", "frame", "seq", "theta_deg",
                                            "timestamp", "shape", "dtype", "encoding", "num_frames", "metadata",
                                            "name", "doc"]), _values, max_size=12)


@st.composite
def garbage(draw):
    """A message that must not disturb the valid scan: random bytes, or a random header and buffer."""
    if draw(st.booleans()):
        return draw(st.lists(st.binary(max_size=40), max_size=4))
    header = draw(_headers)
    if header.get("run") == RUN:
        header["run"] = "other"
    parts = [msgpack.packb(header, use_bin_type=True)]
    if header.get("encoding") == "bslz4" and draw(st.booleans()):  # a plausible compressed chunk, corrupted
        chunk = bytearray(wire.bslz4_chunk(np.arange(35, dtype=np.uint32).reshape(5, 7)))
        for _ in range(draw(st.integers(1, 6))):
            chunk[draw(st.integers(0, len(chunk) - 1))] = draw(st.integers(0, 255))
        return parts + [bytes(chunk)]
    parts += draw(st.lists(st.binary(max_size=300), max_size=2))
    return parts


def _valid_frames(seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 2**32, SHAPE, dtype=np.uint32) for _ in range(NUM)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(garbage(), min_size=5, max_size=40), st.integers(0, 2**32 - 1), st.randoms(use_true_random=False),
       st.sampled_from(wire.ENCODINGS))
def test_valid_frames_survive_interleaved_garbage_bit_for_bit(bad, seed, shuffle, encoding):
    frames = _valid_frames(seed)
    good = [wire.encode("scan_start", run=RUN, scan=0, num_frames=NUM, metadata={})]
    good += [wire.encode_frame(run=RUN, scan=0, frame=i, seq=i, theta_deg=0.1 * i, timestamp=1.0, array=f,
                               encoding=encoding) for i, f in enumerate(frames)]
    order = [("good", 0)] + [("bad", i) for i in range(len(bad))] + [("good", i) for i in range(1, NUM + 1)]
    middle = order[1:]
    shuffle.shuffle(middle)  # garbage anywhere; valid frames may come out of order too
    with tempfile.TemporaryDirectory() as tmp:
        p = Pipeline(ServiceConfig(out_dir=tmp))
        done = []
        p._submit = done.append  # capture finished scans instead of reconstructing them
        try:
            rejected_expected = 0
            for kind, i in [order[0]] + middle:
                if kind == "bad":
                    try:
                        wire.decode(bad[i])
                    except wire.WireError:
                        rejected_expected += 1
                    p.ingest(bad[i])
                else:
                    p.ingest([bytes(x) for x in good[i]])
            assert p.counters["malformed"] == rejected_expected
            p.ingest(wire.encode("scan_end", run=RUN, scan=0, num_frames=NUM))
            (scan,) = [s for s in done if s.run == RUN]
            assert scan.complete
            for i, f in enumerate(frames):
                np.testing.assert_array_equal(scan.frames[i], f)
        finally:
            p.shutdown()
