"""The plan's view of the pipeline and the operator, as ophyd-style devices that plans trigger and read.

``PipelineVerdict`` subscribes to the pipeline's results (PUB, topic ``event``) and keeps every event
it sees; triggering it waits for the event of one scan (set ``run_id`` and ``scan_index`` first) and
completes when it arrives or after ``timeout_s`` (then ``outcome`` is ``"timeout"`` and a warning is
logged), so a dead pipeline never stalls the beamline. ``alarm`` says, in a line, what went wrong with
the scan (its recording failed or was cut short, its analysis failed or was not possible), so that
an unattended series can pause or ask (``operando_series(on_alarm=...)``). ``OperatorDecision`` waits on the decision
channel (``streamer.messaging.decision``) for the operator's action on one scan, falling back to
``default_action`` after ``timeout_s``; it takes only decisions that carry the channel's token (read
from ``token_file``, made there when missing) and counts the others in ``listener.rejected``. Plans
reach both through ``bps.mv``, ``bps.trigger`` and ``bps.rd`` only; the sockets live here.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from streamer.messaging.decision import ACTIONS, DecisionListener
from streamer.messaging.results import ResultsSubscriber

log = logging.getLogger(__name__)


class PipelineVerdict(Device):
    """The pipeline's event for one scan, read from its results socket with a timeout."""

    run_id = Cpt(Signal, value="", kind="config")
    scan_index = Cpt(Signal, value=-1, kind="config")
    timeout_s = Cpt(Signal, value=30.0, kind="config")
    outcome = Cpt(Signal, value="none", kind="hinted")  # "received" | "timeout"
    flag_kinds = Cpt(Signal, value="", kind="normal")  # comma-separated flag kinds of the event
    peak_com_z_px = Cpt(Signal, value=math.nan, kind="normal")
    peak_com_y_px = Cpt(Signal, value=math.nan, kind="normal")
    peak_com_x_px = Cpt(Signal, value=math.nan, kind="normal")  # rocking axis: frame index of the centre
    latency_s = Cpt(Signal, value=math.nan, kind="normal")
    alarm = Cpt(Signal, value="", kind="normal")  # what went wrong with the scan ("" when nothing did)

    def __init__(self, endpoint: str, *, name: str = "verdict", timeout_s: float = 30.0, **kwargs):
        super().__init__(name=name, **kwargs)
        if not timeout_s > 0:
            raise ValueError(f"verdict timeout_s must be > 0, got {timeout_s}")
        self.timeout_s.put(float(timeout_s))
        self.endpoint = endpoint
        self.events: dict[tuple[str, int], dict] = {}
        self.last_event: dict | None = None
        self._seen = threading.Condition()
        self._closing = threading.Event()
        self._sub = ResultsSubscriber(endpoint, topics=["event"])
        self._receiver = threading.Thread(target=self._receive, name=f"{name}-receiver", daemon=True)
        self._receiver.start()

    def _receive(self) -> None:
        with self._sub:  # closes the socket when the receiver ends
            while not self._closing.is_set():
                result = self._sub.receive(0.1)
                if result is None:
                    continue
                try:
                    event = result.body["event"]
                    key = (str(event["run"]), int(event["scan"]))
                except Exception as exc:  # noqa: BLE001 - a bad result message is logged, never raised
                    log.warning("ignored a malformed result message from %s: %s", self.endpoint, exc)
                    continue
                with self._seen:
                    self.events[key] = event
                    self._seen.notify_all()

    def trigger(self) -> DeviceStatus:
        status = DeviceStatus(self)
        key = (str(self.run_id.get()), int(self.scan_index.get()))
        timeout_s = float(self.timeout_s.get())

        def wait():
            with self._seen:
                self._seen.wait_for(lambda: key in self.events, timeout=timeout_s)
                event = self.events.get(key)
            self._publish(event)
            if event is None:
                log.warning("no verdict from the pipeline at %s on run %s scan %d within %.1f s: going on without it",
                            self.endpoint, key[0], key[1], timeout_s)
            status.set_finished()

        threading.Thread(target=wait, name=f"{self.name}-wait", daemon=True).start()
        return status

    def _publish(self, event: dict | None) -> None:
        self.last_event = event
        if event is None:
            self.outcome.put("timeout")
            self.flag_kinds.put("")
            com = [math.nan] * 3
            self.latency_s.put(math.nan)
            self.alarm.put("")
        else:
            self.outcome.put("received")
            self.flag_kinds.put(",".join(str(f.get("kind")) for f in event.get("flags") or []))
            com = list((event.get("peak") or {}).get("center_of_mass_px") or [math.nan] * 3)
            self.latency_s.put(float(event.get("latency_s", math.nan)))
            self.alarm.put(event_alarm(event))
        self.peak_com_z_px.put(float(com[0]))
        self.peak_com_y_px.put(float(com[1]))
        self.peak_com_x_px.put(float(com[2]))

    def close(self) -> None:
        """Stop listening (the receiver closes its socket)."""
        self._closing.set()
        self._receiver.join(timeout=2)


def event_alarm(event: dict) -> str:
    """What went wrong with a scan, from its event, in one line ("" when nothing did): a recording that
    failed or did not confirm the scan, or an analysis that failed or was not possible."""
    problems = []
    ingest = event.get("ingest") if isinstance(event.get("ingest"), dict) else {}
    if ingest.get("recording_error"):
        problems.append(f"recording: {ingest['recording_error']}")
    status = (event.get("reconstruction") or {}).get("status") if isinstance(event.get("reconstruction"), dict) else None
    if status in ("failed", "not_possible"):
        problems.append(f"analysis {status.replace('_', ' ')}" + (f": {event['error']}" if event.get("error") else ""))
    elif event.get("error"):
        problems.append(f"analysis: {event['error']}")
    return "; ".join(str(p) for p in problems)[:500]


class OperatorDecision(Device):
    """The operator's action on one scan, from the decision channel, or ``default_action`` after a timeout."""

    run_id = Cpt(Signal, value="", kind="config")
    scan_index = Cpt(Signal, value=-1, kind="config")
    timeout_s = Cpt(Signal, value=60.0, kind="config")
    default_action = Cpt(Signal, value="continue", kind="config")
    action = Cpt(Signal, value="", kind="hinted")
    source = Cpt(Signal, value="", kind="normal")  # who decided: the message's source, or "default"
    waiting = Cpt(Signal, value=0, kind="omitted")  # 1 while a trigger waits for the operator

    def __init__(self, endpoint: str, *, name: str = "decision", timeout_s: float = 60.0,
                 default_action: str = "continue", token_file: str | Path | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        if default_action not in ACTIONS:
            raise ValueError(f"default_action must be one of {ACTIONS}, got {default_action!r}")
        if not timeout_s > 0:
            raise ValueError(f"decision timeout_s must be > 0, got {timeout_s}")
        self.timeout_s.put(float(timeout_s))
        self.default_action.put(default_action)
        self.listener = DecisionListener(endpoint, token_file=token_file)  # ConfigError on an unsafe token file
        self.endpoint = self.listener.endpoint
        self._lock = threading.Lock()

    def trigger(self) -> DeviceStatus:
        status = DeviceStatus(self)
        run, scan = str(self.run_id.get()), int(self.scan_index.get())
        timeout_s = float(self.timeout_s.get())

        def wait():
            with self._lock:  # one wait at a time on the listener's socket
                self.waiting.put(1)
                try:
                    msg = self.listener.wait(timeout_s, scan=scan, run=run)
                finally:
                    self.waiting.put(0)
            if msg is None:
                default = self.default_action.get()
                log.warning("no operator decision on run %s scan %d within %.1f s at %s: %s by default",
                            run, scan, timeout_s, self.endpoint, default)
                self.action.put(default)
                self.source.put("default")
            else:
                self.action.put(msg["action"])
                self.source.put(msg["source"])
            status.set_finished()

        threading.Thread(target=wait, name=f"{self.name}-wait", daemon=True).start()
        return status

    def close(self) -> None:
        self.listener.close()
