"""The decision channel is authenticated: the shared token file (private, made when missing), the token on
every message, decisions without it or with a wrong one or an absurd time counted and logged, never taken."""

import logging
import math
import os
import stat
import time

import msgpack
import pytest
import zmq

from streamer.messaging.decision import (
    MAX_CLOCK_SKEW_S,
    DecisionListener,
    load_token,
    make_decision,
    parse_decision,
    send_decision,
    token_path,
)
from streamer.settings import ConfigError


# -- the token file -----------------------------------------------------------------------------
def test_a_missing_token_file_is_made_private_with_a_fresh_token(tmp_path):
    path = tmp_path / "config" / "bcdi-stream" / "decision.token"
    token = load_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.getuid()
    assert len(token) == 64 and int(token, 16) >= 0  # secrets.token_hex(32)
    assert path.read_text().strip() == token and load_token(path) == token  # read back, not made again
    assert load_token(tmp_path / "other.token") != token


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_token_file_others_may_read_or_write_is_refused_naming_it(tmp_path, mode):
    path = tmp_path / "decision.token"
    load_token(path)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=rf"decision token file {path} has mode {mode:04o}.*chmod 600 {path}"):
        load_token(path)
    with pytest.raises(ConfigError, match=str(path)):  # the listener refuses to start on it
        DecisionListener("tcp://127.0.0.1:0", token_file=path)


def test_a_token_file_of_another_user_a_link_or_no_token_is_refused(tmp_path):
    path = tmp_path / "decision.token"
    load_token(path)
    link = tmp_path / "link.token"
    link.symlink_to(path)
    with pytest.raises(ConfigError, match=f"{link} is a symbolic link"):
        load_token(link)
    for text in ("", "short\n", "two words and then some more characters to be long enough\n"):
        bad = tmp_path / "bad.token"
        bad.write_text(text)
        bad.chmod(0o600)
        with pytest.raises(ConfigError, match=f"decision token file {bad} must hold one token"):
            load_token(bad)
    if os.getuid() == 0:  # only root can give a file away
        os.chown(path, 65534, 65534)
        with pytest.raises(ConfigError, match=f"{path} is owned by uid 65534, not by this user"):
            load_token(path)


def test_the_token_file_defaults_to_the_users_config_unless_the_environment_says(monkeypatch, tmp_path):
    monkeypatch.delenv("BCDI_DECISION_TOKEN_FILE", raising=False)
    assert token_path() == token_path("") == token_path(None)
    assert str(token_path()).endswith("/.config/bcdi-stream/decision.token") and token_path().is_absolute()
    monkeypatch.setenv("BCDI_DECISION_TOKEN_FILE", str(tmp_path / "env.token"))
    assert token_path() == tmp_path / "env.token" and token_path(tmp_path / "x") == tmp_path / "x"


# -- the message --------------------------------------------------------------------------------
def _raw(**fields) -> bytes:
    return msgpack.packb({"type": "decision", "run": "r", "scan": 1, "action": "continue", **fields})


@pytest.mark.parametrize("when, match", [
    ("abc", "time must be a valid number, got 'abc'"),
    (math.nan, "time must be a finite number"),
    (math.inf, "time must be a finite number"),
    (1e300, "time: must be within 86400 s of the listener's clock"),
    (-1e300, "time: must be within 86400 s"),
    (None, "time must be a valid number"),
    (True, "time must be a valid number"),
])
def test_a_time_that_is_not_a_recent_finite_number_is_refused(when, match):
    with pytest.raises(ConfigError, match=match):
        parse_decision(_raw(time=when, token="t"), now=time.time())


def test_the_time_window_is_a_day_either_way():
    now = 1.7e9
    for when in (now, now - MAX_CLOCK_SKEW_S + 1, now + MAX_CLOCK_SKEW_S - 1):
        assert parse_decision(_raw(time=when), now=now)["time"] == when
    for when in (now - MAX_CLOCK_SKEW_S - 1, now + 2 * MAX_CLOCK_SKEW_S):
        with pytest.raises(ConfigError, match="within 86400 s"):
            parse_decision(_raw(time=when), now=now)


def test_a_token_that_is_not_a_bounded_string_is_refused_without_being_shown():
    for token in (12345, "", "s" * 300, ["a"]):
        with pytest.raises(ConfigError, match=r"token: must be a string of 1..256 characters \(the value is not shown\)") \
                as info:
            parse_decision(_raw(time=time.time(), token=token))
        assert "sss" not in str(info.value)


# -- the listener -------------------------------------------------------------------------------
@pytest.fixture
def listener(tmp_path):
    token_file = tmp_path / "decision.token"
    listener = DecisionListener("tcp://127.0.0.1:0", token_file=token_file)
    listener.token = load_token(token_file)
    yield listener
    listener.close()


def _push(endpoint: str, *messages: bytes) -> None:
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(endpoint)
    for m in messages:
        push.send(m)
    push.close()


def test_only_a_decision_with_the_right_token_is_taken_the_others_are_counted_and_logged(listener, caplog):
    token = listener.token
    forged = [make_decision("r", 1, "remeasure", source="mallory"),  # no token
              make_decision("r", 1, "remeasure", source="mallory", token="0" * 64),  # a wrong one
              make_decision("r", 1, "remeasure", source="mallory", token=token[:-1])]  # almost right
    with caplog.at_level(logging.WARNING, logger="streamer.messaging.decision"):
        _push(listener.endpoint, *(msgpack.packb(m) for m in forged))
        assert listener.wait(1.0, scan=1) is None
        assert listener.rejected == {"no_token": 1, "wrong_token": 2}
        sent = send_decision(listener.endpoint, "r", 1, "acknowledge", source="alice", token=token)
        got = listener.wait(5.0, scan=1, run="r")
    assert got == sent and got["action"] == "acknowledge" and got["source"] == "alice" and "token" not in got
    assert "rejected decision message (no_token, 1 refused so far): decision from 'mallory' on run 'r' scan 1 " \
           "carries no token" in caplog.text
    assert "rejected decision message (wrong_token, 2 refused so far)" in caplog.text
    assert token not in caplog.text and token[:-1] not in caplog.text  # no token ever reaches the log


@pytest.mark.parametrize("when", ["abc", math.nan, 1e300, time.time() - 2 * MAX_CLOCK_SKEW_S])
def test_a_decision_with_the_right_token_but_an_absurd_time_is_refused(listener, when):
    _push(listener.endpoint, _raw(time=when, token=listener.token))
    assert listener.wait(0.5) is None
    assert listener.rejected == {"invalid": 1}


def test_the_listener_reads_the_token_the_senders_use(tmp_path, monkeypatch):
    monkeypatch.setenv("BCDI_DECISION_TOKEN_FILE", str(tmp_path / "env" / "decision.token"))
    listener = DecisionListener("tcp://127.0.0.1:0")  # the default path: here the environment's
    try:
        assert stat.S_IMODE((tmp_path / "env" / "decision.token").stat().st_mode) == 0o600
        send_decision(listener.endpoint, "r", 4, "continue")
        assert listener.wait(5.0, scan=4)["action"] == "continue"
        send_decision(listener.endpoint, "r", 5, "continue", token_file=tmp_path / "another.token")
        assert listener.wait(0.5, scan=5) is None and listener.rejected == {"wrong_token": 1}
    finally:
        listener.close()
