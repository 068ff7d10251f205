"""`bcdi-stream serve` as a real process: SIGTERM flushes everything received, then exits 0."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np

from streamer.messaging.transport import FrameSender
from streamer.recording.recorder import list_scans, read_scan


def test_sigterm_flushes_the_recording_and_exits_cleanly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "serve", "--out", str(tmp_path), "--frames-port", "0",
         "--results-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.match(r"frames: (tcp://127\.0\.0\.1:\d+)", line)
        assert match, line + proc.stderr.read()
        sender = FrameSender(match.group(1))
        frames = [np.full((8, 8), i, np.uint16) for i in range(5)]
        sender.scan_start("r", 0, 10, {"voltage_v": 3.9})
        for i, f in enumerate(frames):
            sender.frame("r", 0, i, 7.0, f)
        sender.close()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    (info,) = list_scans(tmp_path / "r.h5")
    assert info["frames_recorded"] == 5 and not info["complete"]
    rec = read_scan(tmp_path / "r.h5", 0)
    np.testing.assert_array_equal(rec["frames"], np.array(frames))


def test_serve_binds_to_localhost_by_default():
    from streamer.service.config import ServiceConfig

    assert ServiceConfig().endpoint(0).startswith("tcp://127.0.0.1:")
    assert os.environ.get("BCDI_BIND") is None  # no hidden environment switch


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()  # a zombie has exited
    except FileNotFoundError:
        return False


def test_an_embedded_pipeline_stops_when_its_command_is_killed(tmp_path):
    """demo and replay run the pipeline in a child process; a command killed by a signal (no clean-up) must not
    leave it running alone."""
    script = ("import sys, time\n"
              "from streamer.cli.pipeline import EmbeddedPipeline\n"
              "from streamer.service.config import ServiceConfig\n"
              f"p = EmbeddedPipeline(ServiceConfig(out_dir={str(tmp_path)!r}, frames_port=0, results_port=0))\n"
              "print(p.proc.pid, flush=True)\n"
              "time.sleep(60)\n")
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            proc.kill()
            raise AssertionError(line + proc.communicate()[1])
        child = int(line)
        assert _alive(child)
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        orphaned = _alive(child)
        if orphaned:
            os.kill(child, signal.SIGKILL)
        assert not orphaned, "the pipeline outlived the command that started it"
