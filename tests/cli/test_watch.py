"""``bcdi-stream watch``: per-scan lines and flags from a results socket or a recorded events.jsonl."""

import io
import json
import threading

import pytest
import zmq
from rich.console import Console

from streamer.cli import build_parser, main
from streamer.cli.watch import print_events, render_event, watch
from streamer.messaging.results import ResultsPublisher

PAIR_EVENT = {
    "run": "r", "scan": 3, "voltage_v": 3.73, "capacity_mah_g": 40.0, "latency_s": 1.5,
    "peak": {"width_parallel": 0.067, "width_perpendicular": 0.025},
    "vortices": [{"winding": 1}, {"winding": -1}], "domain_boundaries": [],
    "flags": [{"kind": "new_vortex", "position_nm": [-12.0, 6.0, 54.0], "winding": 1, "type": "screw",
               "confidence": 0.9, "surface_distance_nm": 78.0}],
}
QUIET_EVENT = {**PAIR_EVENT, "scan": 1, "vortices": [], "flags": []}
SKIPPED_EVENT = {**QUIET_EVENT, "scan": 2, "reconstruction": {"status": "skipped", "superseded_by": 3}}


def _console():
    return Console(file=io.StringIO(), width=200, force_terminal=True, color_system="standard")


def test_a_flagged_scan_is_red_with_its_flag_in_words_and_the_evidence_on_request():
    text = render_event(PAIR_EVENT)
    lines = text.plain.splitlines()
    assert lines[0].lstrip().startswith("3") and text.style == "bold red"
    assert lines[1].strip() == ("New screw dislocation (winding +1) at z -12, y 6, x 54 nm, 78 nm below the surface "
                                "(confidence 0.9)")
    assert "position_nm" not in text.plain  # the raw record only when asked for
    raw = render_event(PAIR_EVENT, evidence=True).plain
    assert "[new_vortex] position_nm=[-12.0, 6.0, 54.0], winding=1, type=screw" in raw
    quiet = render_event(QUIET_EVENT)
    assert quiet.style == "" and "\n" not in quiet.plain


def test_a_skipped_scan_says_why_in_words():
    text = render_event(SKIPPED_EVENT).plain
    assert "Not reconstructed: scan 3 was newer and went first" in text


def test_watch_prints_what_the_pipeline_publishes_until_run_done():
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)  # XPUB tells us when the watcher has subscribed: no sleeping, no lost messages
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    console = _console()
    shown = []
    t = threading.Thread(target=lambda: shown.append(watch(f"tcp://127.0.0.1:{port}", console, progress=True)))
    t.start()
    try:
        topics = set()
        while len(topics) < 4:  # event, run_done, health, progress
            assert pub.poll(5000), "the watcher never subscribed"
            topics.add(pub.recv()[1:])
        results = ResultsPublisher(pub)
        pub.send_multipart([b"event", b"not msgpack"])  # skipped by the watcher, which goes on
        for topic, body in (
            ("progress", {"run": "r", "scan": 1, "received": 48, "expected": 48, "status": "complete", "gap_count": 0}),
            ("event", {"event": QUIET_EVENT}),
            ("health", {"queue_depth": 1, "skipped_reconstructions": 2, "rejected": {"malformed": 1}}),
            ("event", {"event": PAIR_EVENT}),
            ("run_done", {"rejected": {"malformed": 1}}),
        ):
            results.publish(topic, body)
        t.join(10)
    finally:
        pub.close()
    assert not t.is_alive() and shown == [2]
    out = console.file.getvalue()
    assert "scan 1: 48/48 frames" in out and "skipped 2, rejected 1" in out
    assert "New screw dislocation (winding +1)" in out and "\x1b[1;31m" in out  # the flag in bold red
    assert "run done; pipeline rejected: {'malformed': 1}" in out


def test_watch_a_recorded_run_and_its_cli(tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(QUIET_EVENT) + "\n" + json.dumps(PAIR_EVENT) + "\n")
    console = _console()
    assert print_events(path, console) == 2
    assert "New screw dislocation" in console.file.getvalue()
    assert main(["watch", "--events", str(path), "--evidence"]) == 0
    out = capsys.readouterr().out
    assert "New screw dislocation" in out and "[new_vortex] position_nm=" in out
    # into a pipe or a file each sentence stays on one line, whatever its length (not wrapped at 80 columns)
    assert any(len(line) > 80 and line.strip().startswith("New screw dislocation") and line.rstrip().endswith(")")
               for line in out.splitlines())
    assert main(["watch", "--events", str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["watch", "--results", "localhost:5556"]) == 2
    assert "ZeroMQ endpoint" in capsys.readouterr().err


def test_watch_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["watch", "--help"])
    assert exc.value.code == 0 and "example" in capsys.readouterr().out
