"""demo and replay wait for their embedded pipeline while it keeps publishing, and stop it only once it falls silent."""

from __future__ import annotations

import io
import threading
import time

from streamer.cli.pipeline import EmbeddedPipeline


class _Process:
    """A pipeline process that runs for ``runs_s`` seconds (forever with None)."""

    def __init__(self, runs_s: float | None):
        self.end = None if runs_s is None else time.monotonic() + runs_s
        self.exitcode = None
        self.killed = False

    def is_alive(self) -> bool:
        if self.exitcode is None and self.end is not None and time.monotonic() >= self.end:
            self.exitcode = 0
        return self.exitcode is None and not self.killed

    def join(self, timeout: float) -> None:
        time.sleep(min(timeout, 0.02))

    def kill(self) -> None:
        self.killed = True


def _pipeline(proc: _Process) -> EmbeddedPipeline:
    pipeline = object.__new__(EmbeddedPipeline)  # no process started: the waiting alone is under test
    pipeline.proc, pipeline.out = proc, io.StringIO()
    pipeline._heard = time.monotonic()
    pipeline._done = threading.Event()
    pipeline._printer = threading.Thread(target=pipeline._done.wait)
    pipeline._printer.start()
    return pipeline


def test_a_pipeline_still_publishing_is_waited_for_past_the_idle_limit():
    pipeline = _pipeline(_Process(runs_s=1.2))
    stop = threading.Event()

    def publish():  # a result every 50 ms, as scans finish one after another
        while not stop.wait(0.05):
            pipeline._hear()

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        assert pipeline.wait(idle_s=0.5) == 0  # 1.2 s in all, never 0.5 s without a result
    finally:
        stop.set()
        publisher.join()
    assert not pipeline.proc.killed and pipeline.out.getvalue() == ""


def test_a_silent_pipeline_is_stopped_and_the_loss_said():
    pipeline = _pipeline(_Process(runs_s=None))
    assert pipeline.wait(idle_s=0.3) == 1
    assert pipeline.proc.killed
    assert "published nothing for 0.3 s" in pipeline.out.getvalue()
