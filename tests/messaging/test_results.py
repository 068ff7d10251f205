"""The results channel on loopback: round trips with arrays, seq, topic filter, closing, bad messages, timeouts."""

import ast
import logging
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from streamer.messaging import results
from streamer.messaging.results import Result, ResultsPublisher, ResultsSubscriber


@pytest.fixture
def xpub():
    """An XPUB socket on loopback: it tells the test when a subscriber's filter has arrived (no sleeping)."""
    sock = zmq.Context.instance().socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    yield sock
    sock.close()


def _subscribe(xpub, topics=None) -> ResultsSubscriber:
    """A subscriber on ``xpub``, returned once the publisher has seen each of its topic filters."""
    sub = ResultsSubscriber(xpub.getsockopt_string(zmq.LAST_ENDPOINT), topics)
    for _ in range(len(topics) if topics is not None else 1):
        assert xpub.poll(5000), "the subscriber never subscribed"
        assert xpub.recv()[0] == 1
    return sub


def _bodies():
    rng = np.random.default_rng(0)
    plane = rng.random((5, 7), dtype=np.float32)
    return {
        "event": {"event": {"run": "r", "scan": 3, "flags": [{"kind": "new_vortex"}], "voltage_v": 3.7}},
        "slices": {"run": "r", "scan": 3, "shape": [4, 5, 7], "amplitude": {"yx": plane, "zx": plane[:4]},
                   "phase": {"yx": np.asfortranarray(rng.random((5, 7)))},  # float64, Fortran order
                   "strain": {"zy": plane[::2, ::3]},  # a non-contiguous view
                   "vortices": [{"winding": 1, "points": np.arange(6, dtype=np.int64).reshape(2, 3)}]},
        "peak_image": {"run": "r", "scan": 3, "image": rng.integers(0, 60000, (6, 4)).astype(">u2"),
                       "baseline": np.array([[1 + 2j, np.nan]], dtype=np.complex64), "baseline_scans": 1},
        "progress": {"run": "r", "scan": 3, "received": 47, "expected": 48, "rate_hz": np.float64(4.5),
                     "gaps": [5], "gap_count": 1, "status": "incomplete"},
        "health": {"queue_depth": 0, "skipped_reconstructions": 0, "rejected": {"malformed": 2}, "open_scans": 0,
                   "mask": np.array([True, False])},
        "run_done": {"rejected": {}, "empty": np.zeros((0, 3), np.float32)},
    }


def _assert_same(got, sent):
    if isinstance(sent, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == sent.dtype and got.shape == sent.shape
        np.testing.assert_array_equal(got, sent)
    elif isinstance(sent, dict):
        assert set(got) == set(sent)
        for k in sent:
            _assert_same(got[k], sent[k])
    elif isinstance(sent, list):
        assert len(got) == len(sent)
        for g, s in zip(got, sent):
            _assert_same(g, s)
    else:
        assert got == sent and not isinstance(got, np.generic)


def test_every_topic_round_trips_with_its_arrays_and_a_rising_seq(xpub):
    pub = ResultsPublisher(xpub)
    sent = _bodies()
    assert set(sent) == set(results.TOPICS)
    with _subscribe(xpub) as sub:
        seqs = [pub.publish(topic, body) for topic, body in sent.items()]
        got = [sub.receive(5) for _ in sent]
    assert seqs == [1, 2, 3, 4, 5, 6] and pub.seq == 6
    assert [r.topic for r in got] == list(sent) and [r.seq for r in got] == seqs
    for r in got:
        assert isinstance(r, Result) and "seq" not in r.body and "format" not in r.body
        _assert_same(r.body, sent[r.topic])
    assert sub.received == 6 and sub.last_seq == 6 and not sub.rejected
    assert got[1].body["amplitude"]["yx"].flags.writeable  # a copy, not a view of the message


def test_the_wire_format_is_a_topic_and_a_msgpack_map_with_seq_and_format():
    topic, body = results.encode("peak_image", 7, {"image": np.arange(4, dtype="<f4").reshape(2, 2)})
    assert topic == b"peak_image"
    assert msgpack.unpackb(body) == {"seq": 7, "format": results.FORMAT, "image": {
        "dtype": "<f4", "shape": [2, 2], "data": np.arange(4, dtype="<f4").tobytes()}}
    with pytest.raises(ValueError, match="must not set"):
        results.encode("event", 1, {"seq": 3})
    with pytest.raises(TypeError, match="must be a dict"):
        results.encode("event", 1, [1, 2])
    with pytest.raises(results.ResultError, match="format None"):  # no version: not a result of this format
        results.decode([b"event", msgpack.packb({"seq": 4, "event": {"scan": 0}})])


def test_the_topic_filter_takes_only_its_topics_exactly(xpub):
    pub = ResultsPublisher(xpub)
    with _subscribe(xpub, ["event", "run_done"]) as sub:
        for topic in ("progress", "event", "health", "eventual", "slices", "run_done"):
            pub.publish(topic, {"n": topic})  # "eventual" passes SUB's prefix filter but is not "event"
        got = [sub.receive(5) for _ in range(2)]
        assert sub.receive(0.2) is None
    assert [(r.topic, r.seq) for r in got] == [("event", 2), ("run_done", 6)]


def test_the_subscriber_closes_its_socket_as_a_context_manager(xpub):
    endpoint = xpub.getsockopt_string(zmq.LAST_ENDPOINT)
    with ResultsSubscriber(endpoint) as sub:
        assert not sub.closed
    assert sub.closed
    with pytest.raises(RuntimeError), ResultsSubscriber(endpoint) as sub2:
        raise RuntimeError("a consumer's bug")
    assert sub2.closed
    sub2.close()  # twice is harmless


def test_bad_messages_are_skipped_and_counted_and_the_next_good_one_arrives(xpub, caplog):
    pub = ResultsPublisher(xpub)
    bad_array = {"dtype": "|O", "shape": [1], "data": b"\0" * 8}
    short_array = {"dtype": "<f8", "shape": [3], "data": b"\0" * 8}
    with _subscribe(xpub) as sub, caplog.at_level(logging.WARNING, logger="streamer.messaging.results"):
        xpub.send_multipart([b"event", msgpack.packb({"seq": 1, "format": results.FORMAT + 1, "event": {}})])
        xpub.send_multipart([b"event", b"\xc1 garbage, not msgpack"])
        xpub.send_multipart([b"event"])
        xpub.send_multipart([b"event", msgpack.packb([1, 2, 3])])
        xpub.send_multipart([b"\xff\xfe", msgpack.packb({"seq": 1})])
        xpub.send_multipart([b"slices", msgpack.packb({"seq": 2, "format": results.FORMAT, "a": bad_array})])
        xpub.send_multipart([b"slices", msgpack.packb({"seq": 3, "format": results.FORMAT, "a": short_array})])
        pub.publish("event", {"event": {"scan": 9}})
        result = sub.receive(5)
    assert result == Result("event", 1, {"event": {"scan": 9}})
    assert sub.rejected == {"format": 1, "malformed": 6} and sub.received == 1
    assert sum("skipped a result message" in r.getMessage() for r in caplog.records) == 7


def test_receive_returns_none_on_timeout_even_under_a_flood_of_bad_messages(xpub):
    with _subscribe(xpub) as sub:
        start = time.monotonic()
        assert sub.receive(0.1) is None
        assert 0.05 < time.monotonic() - start < 2.0
        for _ in range(2000):
            xpub.send_multipart([b"event", b"\xc1"])
        time.sleep(0.2)
        start = time.monotonic()
        assert sub.receive(0.0) is None  # the queue of bad messages does not hold the caller
        assert time.monotonic() - start < 1.0 and sub.rejected["malformed"] >= 1


def test_iterating_yields_results_and_bind_resolves_a_free_port():
    pub = ResultsPublisher.bind("tcp://127.0.0.1:0")
    try:
        assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith((":0", ":*"))
        with ResultsSubscriber(pub.endpoint, ["health"]) as sub:
            deadline = time.monotonic() + 5
            while (first := sub.receive(0.05)) is None:  # a plain PUB drops until the subscription arrives
                assert time.monotonic() < deadline, "the subscriber never received"
                pub.publish("health", {"probe": True})
            pub.publish("health", {"probe": False})
            later = next(r for r in sub if not r.body["probe"])
    finally:
        pub.close()
    assert first.topic == "health" and later.seq == pub.seq and later.seq > first.seq


def test_the_module_imports_only_zmq_msgpack_numpy_and_messaging():
    tree = ast.parse(Path(results.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    third_party = {n for n in names if n.split(".")[0] not in sys.stdlib_module_names}
    assert {n for n in third_party if not n.startswith("streamer.messaging")} <= {"zmq", "msgpack", "numpy"}
