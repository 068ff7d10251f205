"""The decision channel: a sent decision reaches the listener; malformed ones are counted, not raised."""

import msgpack
import pytest
import zmq

from streamer.messaging.decision import DecisionListener, make_decision, send_decision


def test_decision_reaches_listener_and_bad_messages_are_counted():
    listener = DecisionListener("tcp://127.0.0.1:0")
    try:
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(listener.endpoint)
        push.send(b"\xc1 not msgpack")
        push.send(msgpack.packb({"type": "decision", "run": "r", "scan": 3, "action": "explode"}))
        push.send(msgpack.packb(make_decision("r", 9, "acknowledge")))  # one connection keeps its order
        push.close()
        assert listener.wait(5.0, scan=9)["action"] == "acknowledge"
        assert listener.rejected == 2
        send_decision(listener.endpoint, "r", 2, "continue")  # another scan: ignored while waiting for 3
        send_decision(listener.endpoint, "r", 3, "remeasure", source="test")
        msg = listener.wait(5.0, scan=3, run="r")
        assert msg["action"] == "remeasure" and msg["source"] == "test"
        assert listener.wait(0.2, scan=99) is None
    finally:
        listener.close()


def test_bad_decision_is_refused_at_the_source():
    with pytest.raises(ValueError, match="action"):
        make_decision("r", 1, "maybe")
    with pytest.raises(ValueError, match="scan"):
        make_decision("r", -1, "continue")
