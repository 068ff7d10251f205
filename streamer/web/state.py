"""What the live page shows, kept from the pipeline's published results, and the updates since a version.

Arrays arrive as numpy arrays (``streamer.messaging.results`` decodes them); they are handed to the
browser as float32 base64 so that a slice stays a few kilobytes of text. Each event gets ``sentences``
(``streamer.analysis.labels.describe_event``): its flags in words, as ``watch`` and the report say them.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections import deque

import numpy as np

from streamer.analysis.labels import describe_event

TOPICS = ("event", "progress", "health", "slices", "peak_image", "run_done")
PER_SCAN = ("slices", "peak_image")  # kept for each recent scan, so that an older one can be looked at


def _jsonable(obj):
    """Replace arrays by ``{"shape", "f32": base64}`` and non-finite floats by None."""
    if isinstance(obj, np.ndarray):
        return {"shape": list(obj.shape), "f32": base64.b64encode(obj.astype("<f4").tobytes()).decode()}
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    return obj


class LiveState:
    """The current run as the page needs it; thread-safe; ``wait_since`` wakes on every change."""

    def __init__(self, history: int = 500, scans_kept: int = 64):
        self._cond = threading.Condition()
        self._updates: deque[tuple[int, str]] = deque(maxlen=history)  # (version, JSON of {"kind", "body"})
        self.version = 0
        self.closed = False
        self.run: str | None = None
        self.events: dict[int, dict] = {}  # scan -> event of the current run
        self.latest: dict[str, dict] = {}  # progress / health / slices / peak_image / run_done -> last body
        self.decisions: list[dict] = []
        self.kept: dict[str, dict[int, dict]] = {t: {} for t in PER_SCAN}  # topic -> scan -> body, latest scans
        self._scans_kept = scans_kept

    def add(self, topic: str, body: dict) -> None:
        """Take one published result (its topic and body, as ``ResultsSubscriber`` yields them)."""
        if topic not in TOPICS:
            return
        body = _jsonable(body)
        body.pop("seq", None)
        if topic == "event":  # the page's copy says its flags, skipped or failed reconstruction in words
            body["event"]["sentences"] = [s.as_dict() for s in describe_event(body["event"])]
        with self._cond:
            run = (body.get("event") or body).get("run")
            if run is not None and run != self.run:
                self.run, self.events = run, {}
                self.kept = {t: {} for t in PER_SCAN}
                self.latest = {k: v for k, v in self.latest.items() if k == "health"}
            if topic == "event":
                self.events[int(body["event"]["scan"])] = body["event"]
            else:
                self.latest[topic] = body
            if topic in PER_SCAN:
                kept = self.kept[topic]
                kept[int(body["scan"])] = body
                while len(kept) > self._scans_kept:
                    kept.pop(min(kept))
            self._push(topic, body)

    def add_decision(self, decision: dict) -> None:
        """Take one decision sent from the page; a token it may carry is never kept (the browser sees this)."""
        decision = {k: v for k, v in decision.items() if k != "token"}
        with self._cond:
            self.decisions.append(decision)
            self._push("decision", decision)

    def _push(self, kind: str, body: dict) -> None:
        self.version += 1
        self._updates.append((self.version, json.dumps({"kind": kind, "body": body}, allow_nan=False)))
        self._cond.notify_all()

    def snapshot(self) -> tuple[int, str]:
        """(version, JSON of the whole state)."""
        with self._cond:
            state = {"run": self.run, "events": [self.events[k] for k in sorted(self.events)],
                     "latest": self.latest, "decisions": self.decisions}
            return self.version, json.dumps(state, allow_nan=False)

    def kept_of(self, topic: str, scan: int) -> str | None:
        """JSON of one scan's ``slices`` or ``peak_image``, if still kept."""
        with self._cond:
            body = self.kept.get(topic, {}).get(scan)
            return None if body is None else json.dumps(body, allow_nan=False)

    def wait_since(self, version: int, timeout_s: float) -> list[tuple[int, str]] | None:
        """Updates newer than ``version`` (waiting up to ``timeout_s`` for one); None when some were
        already dropped from the history (the caller sends a snapshot instead)."""
        with self._cond:
            if self.version == version and not self.closed:
                self._cond.wait(timeout_s)
            if self._updates and self._updates[0][0] > version + 1 and self.version > version:
                return None
            return [u for u in self._updates if u[0] > version]

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
