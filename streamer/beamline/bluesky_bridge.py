"""A bluesky callback that streams each rocking scan's frames and documents to the pipeline.

Each bluesky run is one rocking scan. Its start document names the series (the operando run)
and the scan index; each primary event carries a detector frame and the rocking angle. The
start, descriptor and stop documents travel too (as ``document`` messages), images excepted.
A run whose start document says ``pipeline: False`` (e.g. a peak alignment) is not forwarded.
"""

from __future__ import annotations

import json
import logging

from bluesky.callbacks.core import CallbackBase

from streamer.messaging.transport import FrameSender

log = logging.getLogger(__name__)

#: start-document keys forwarded to the pipeline as scan metadata
FORWARDED_KEYS = ("voltage_v", "capacity_mah_g", "geometry", "exposure_s", "plan_name", "uid", "sample",
                  "center_deg", "width_deg", "scenario_stage")


#: start-document keys that change from scan to scan (left out of the series' run_start metadata)
PER_SCAN_KEYS = ("uid", "time", "scan_id", "scan_index", "voltage_v", "capacity_mah_g")


class FrameStreamer(CallbackBase):
    """Sends run_start once per series, then scan_start / frames / scan_end and the documents of
    every run (rocking scan) the RunEngine executes."""

    def __init__(self, sender: FrameSender, *, image_field: str = "timepix_image"):
        super().__init__()
        self.sender = sender
        self.image_field = image_field
        self._run = None
        self._scan = None
        self._theta_key = None
        self._primary = set()
        self._sent = 0
        self._num = 0
        self._runs_started: set[str] = set()
        self._skip = False

    def start(self, doc):
        self._skip = doc.get("pipeline") is False
        if self._skip:
            return
        self._run = str(doc.get("series", doc["uid"]))
        self._scan = int(doc.get("scan_index", doc.get("scan_id", 0)))
        motors = doc.get("motors") or []
        if not motors:
            raise ValueError("start document names no rocking motor ('motors')")
        self._theta_key = motors[0]
        self._sent = 0
        self._primary.clear()
        meta = {k: doc[k] for k in FORWARDED_KEYS if k in doc}
        if self._run not in self._runs_started:  # the series' first scan: its run-level metadata
            self._runs_started.add(self._run)
            run_meta = {k: v for k, v in doc.items() if k not in PER_SCAN_KEYS}
            self.sender.run_start(self._run, _plain(run_meta))
        self._num = int(doc["num_points"])
        self.sender.scan_start(self._run, self._scan, self._num, _plain(meta))
        self.sender.document(self._run, "start", _plain(doc))

    def descriptor(self, doc):
        if self._skip:
            return
        if doc.get("name") == "primary":
            self._primary.add(doc["uid"])
        self.sender.document(self._run, "descriptor", _plain(doc))

    def event(self, doc):
        if self._skip or doc["descriptor"] not in self._primary or self.image_field not in doc["data"]:
            return
        self.sender.frame(
            self._run, self._scan, int(doc["seq_num"]) - 1, float(doc["data"][self._theta_key]),
            doc["data"][self.image_field], timestamp=float(doc["timestamps"][self.image_field]),
            num_frames=self._num,
        )
        self._sent += 1

    def stop(self, doc):
        if self._skip:
            return
        self.sender.document(self._run, "stop", _plain(doc))
        self.sender.scan_end(self._run, self._scan, self._sent, exit_status=doc.get("exit_status", "unknown"))


def _plain(obj: dict) -> dict:
    """JSON-safe copy (numpy scalars and other objects become plain values or strings)."""
    return json.loads(json.dumps(obj, default=str))
