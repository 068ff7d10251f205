"""The decision channel: a sent decision reaches the listener; malformed ones are counted, not raised."""

import msgpack
import pytest
import zmq

from streamer.messaging.decision import (
    DecisionListener,
    load_token,
    make_decision,
    send_decision,
)


def test_decision_reaches_listener_and_bad_messages_are_counted(tmp_path):
    token_file = tmp_path / "decision.token"
    listener = DecisionListener("tcp://127.0.0.1:0", token_file=token_file)
    token = load_token(token_file)
    try:
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(listener.endpoint)
        push.send(b"\xc1 not msgpack")
        push.send(msgpack.packb({"type": "decision", "run": "r", "scan": 3, "action": "explode", "token": token}))
        push.send(msgpack.packb(make_decision("r", 9, "acknowledge", token=token)))  # one connection keeps its order
        push.close()
        got = listener.wait(5.0, scan=9)
        assert got["action"] == "acknowledge" and "token" not in got  # the token stays in the listener
        assert listener.rejected == {"invalid": 2}
        send_decision(listener.endpoint, "r", 2, "continue", token_file=token_file)  # another scan: ignored
        sent = send_decision(listener.endpoint, "r", 3, "remeasure", source="test", token=token)
        assert "token" not in sent  # what the sender reports (the page shows it) has no token either
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
    with pytest.raises(ValueError, match="token: must be a string of 1..256 characters"):
        make_decision("r", 1, "continue", token="x" * 257)
