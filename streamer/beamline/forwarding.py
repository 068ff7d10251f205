"""Document forwarding that never stops the plan: a failing forward is logged and paused until the next run.

The pipeline is a side path of the beamline (the facility's own recording is the main one): if it stops
taking frames, the plan goes on, the error is logged once, and forwarding resumes with the next run.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class SafeForwarder:
    """A RunEngine callback around ``callback`` (e.g. ``FrameStreamer``) that logs failures instead of raising."""

    def __init__(self, callback):
        self.callback = callback
        self.failures = 0
        self._paused = False

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self._paused = False
        elif self._paused:
            return
        try:
            self.callback(name, doc)
        except Exception as exc:  # noqa: BLE001 - a side path must not stop the plan
            self.failures += 1
            self._paused = True
            log.error("forwarding the run's documents to the pipeline failed (%s); paused until the next run",
                      exc)
