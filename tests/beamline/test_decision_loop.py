"""The decision in the loop: each policy, the operator's decision over the channel, and a dead pipeline.

A stand-in pipeline publishes, on loopback, the event of each scan as soon as the scan's run stops,
with the flags the test chose; the plan reads it through ``PipelineVerdict`` as it would the real one.
"""

import logging
import threading

import event_model
import msgpack
import pytest
import zmq
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from plans import operando_series
from sim.devices import make_beamline
from sim.scenario import load_scenario
from streamer.beamline.verdict import OperatorDecision, PipelineVerdict
from streamer.geometry import OrthogonalGeometry
from streamer.messaging.decision import make_decision, send_decision
from streamer.messaging.results import ResultsPublisher
from streamer.settings import ConfigError

GEOM = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=30.0)
WIDTH = GEOM.rocking_step_deg * 16


class FlaggingPipeline:
    """Publishes ``{"run", "scan", "flags", "peak"}`` for every rocking run that stops; ``flags`` by scan index."""

    def __init__(self, flags_by_scan: dict[int, list[str]]):
        self.flags_by_scan = flags_by_scan
        self.pub = zmq.Context.instance().socket(zmq.XPUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind("tcp://127.0.0.1:0")
        self.endpoint = self.pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.results = ResultsPublisher(self.pub, self.endpoint)
        self._start = None

    def wait_for_subscriber(self, timeout_s: float = 10.0) -> None:
        assert self.pub.poll(int(timeout_s * 1000)), "the verdict device never subscribed"
        assert self.pub.recv()[0] == 1  # a subscription message

    def __call__(self, name, doc):
        if name == "start":
            self._start = doc
        elif name == "stop":
            k = self._start["scan_index"]
            flags = [{"kind": kind} for kind in self.flags_by_scan.get(k, [])]
            event = {"run": self._start["series"], "scan": k, "flags": flags, "latency_s": 0.1,
                     "peak": {"center_of_mass_px": [8.0, 8.0, 8.0]}}
            self.results.publish("event", {"event": event})

    def close(self):
        self.pub.close()


@pytest.fixture
def loop():
    """A beamline, a flagging stand-in pipeline and a verdict device subscribed to it."""
    made = []

    def make(flags_by_scan, timeout_s=10.0):
        fake = FlaggingPipeline(flags_by_scan)
        verdict = PipelineVerdict(fake.endpoint, timeout_s=timeout_s)
        fake.wait_for_subscriber()
        made.append((fake, verdict))
        return fake, verdict, make_beamline(load_scenario("quick"), GEOM, seed=0)

    yield make
    for fake, verdict in made:
        verdict.close()
        fake.close()


def _run(plan, *callbacks):
    docs = []
    RE = RunEngine({})
    for cb in callbacks:
        RE.subscribe(cb)
    RE.subscribe(lambda name, doc: (event_model.schema_validators[event_model.DocumentNames[name]].validate(doc),
                                    docs.append((name, doc))))
    RE(plan)
    return [d for n, d in docs if n == "start"]


def test_auto_remeasures_exactly_the_flagged_scans(loop):
    fake, verdict, (_, stage, detector, potentiostat) = loop({1: ["new_vortex"], 2: ["new_vortex"],
                                                              3: ["peak_broadening"], 5: ["peak_drift"]})
    # scan indices: 0, 1, 2 = re-measure of 1 (not re-measured again), 3, 4 = re-measure of 3,
    # 5 (a drift alone asks no re-measure), 6
    starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=5, series="a",
                                  verdict=verdict, policy="auto"), fake)
    assert [s.get("remeasure_of") for s in starts] == [None, None, 1, None, 3, None, None]
    assert [s["exposure_s"] for s in starts] == [0.01, 0.01, 0.02, 0.01, 0.02, 0.01, 0.01]
    assert starts[2]["decision"]["because"] == ["new_vortex"] and starts[2]["decision"]["decided_by"] == "auto"
    assert starts[3]["previous_verdict"]["scan"] == 2  # the re-measure's own verdict, recorded in the next run
    assert starts[6]["previous_verdict"]["flags"] == ["peak_drift"]
    assert [s["charge_round"] for s in starts] == [0, 1, 1, 2, 2, 3, 4]


def test_never_only_records_the_verdicts(loop):
    fake, verdict, (_, stage, detector, potentiostat) = loop({0: ["new_vortex"]})
    starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=2, series="n",
                                  verdict=verdict, policy="never"), fake)
    assert [s["scan_index"] for s in starts] == [0, 1]
    assert starts[1]["previous_verdict"]["flags"] == ["new_vortex"]
    assert starts[1]["previous_verdict"]["decision"] == "continue"


def test_ask_waits_for_the_operator_whose_decision_releases_it(loop, tmp_path):
    fake, verdict, (_, stage, detector, potentiostat) = loop({1: ["domain_boundary"]})
    token_file = tmp_path / "decision.token"
    decision = OperatorDecision("tcp://127.0.0.1:0", timeout_s=30.0, default_action="continue", token_file=token_file)
    seen_waiting = []

    def operator():  # answers once the plan is waiting, as a person at the web page would
        while not decision.waiting.get():
            threading.Event().wait(0.01)
        seen_waiting.append(True)
        send_decision(decision.endpoint, "q", 1, "remeasure", source="alice", token_file=token_file)

    person = threading.Thread(target=operator, daemon=True)
    person.start()
    try:
        starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=3, series="q",
                                      verdict=verdict, decision=decision, policy="ask"), fake)
    finally:
        person.join(timeout=5)
        decision.close()
    assert seen_waiting == [True]
    assert [s.get("remeasure_of") for s in starts] == [None, None, 1, None]
    record = starts[2]["decision"]
    assert record["decided_by"] == "operator:alice" and record["operator_action"] == "remeasure"


def test_ask_falls_back_to_its_default_after_the_timeout(loop, caplog, tmp_path):
    fake, verdict, (_, stage, detector, potentiostat) = loop({0: ["new_vortex"]})
    decision = OperatorDecision("tcp://127.0.0.1:0", timeout_s=0.3, default_action="continue",
                                token_file=tmp_path / "decision.token")
    try:
        with caplog.at_level(logging.WARNING, logger="streamer.beamline.verdict"):
            starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=2,
                                          series="d", verdict=verdict, decision=decision, policy="ask"), fake)
    finally:
        decision.close()
    assert [s.get("remeasure_of") for s in starts] == [None, None]
    assert starts[1]["previous_verdict"]["decided_by"] == "default"
    assert "no operator decision on run d scan 0" in caplog.text


def test_ask_ignores_forged_decisions_and_counts_them(loop, caplog, tmp_path):
    """Decisions without the token, or with another one, never release the plan: it waits for its default."""
    fake, verdict, (_, stage, detector, potentiostat) = loop({0: ["new_vortex"]})
    decision = OperatorDecision("tcp://127.0.0.1:0", timeout_s=1.5, default_action="continue",
                                token_file=tmp_path / "decision.token")
    forged = []

    def mallory():
        while not decision.waiting.get():
            threading.Event().wait(0.01)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(decision.endpoint)
        push.send(msgpack.packb(make_decision("g", 0, "remeasure", source="mallory")))  # no token
        push.close()
        send_decision(decision.endpoint, "g", 0, "remeasure", source="mallory", token_file=tmp_path / "own.token")
        forged.append(True)

    person = threading.Thread(target=mallory, daemon=True)
    person.start()
    try:
        with caplog.at_level(logging.WARNING):
            starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=2,
                                          series="g", verdict=verdict, decision=decision, policy="ask"), fake)
    finally:
        person.join(timeout=5)
        decision.close()
    assert forged == [True]
    assert [s.get("remeasure_of") for s in starts] == [None, None]  # not re-measured
    assert starts[1]["previous_verdict"]["decided_by"] == "default"
    assert decision.listener.rejected == {"no_token": 1, "wrong_token": 1}
    assert "rejected decision message (wrong_token" in caplog.text


def test_a_stopped_pipeline_costs_a_timeout_and_a_warning_then_the_plan_goes_on(caplog):
    ctx = zmq.Context.instance()
    probe = ctx.socket(zmq.PUB)
    probe.bind("tcp://127.0.0.1:0")
    endpoint = probe.getsockopt(zmq.LAST_ENDPOINT).decode()
    probe.close()  # nobody publishes there any more: the pipeline is down
    verdict = PipelineVerdict(endpoint, timeout_s=0.3)
    _, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=0)
    try:
        with caplog.at_level(logging.WARNING, logger="streamer.beamline.verdict"):
            starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=3,
                                          series="dead", verdict=verdict, policy="auto", track_peak=True))
    finally:
        verdict.close()
    assert [s["scan_index"] for s in starts] == [0, 1, 2]
    assert all(s["previous_verdict"]["outcome"] == "timeout" for s in starts[1:])
    assert all(s["center_deg"] == 7.0 for s in starts)  # no verdict: the centre stays
    assert caplog.text.count("no verdict from the pipeline") == 3


def test_verdict_and_decision_devices_refuse_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="timeout_s"):
        PipelineVerdict("tcp://127.0.0.1:1", timeout_s=0)
    with pytest.raises(ValueError, match="default_action"):
        OperatorDecision("tcp://127.0.0.1:0", default_action="shrug")
    token_file = tmp_path / "decision.token"
    token_file.write_text("0123456789abcdef" * 4)
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match=f"decision token file {token_file} has mode 0644"):
        OperatorDecision("tcp://127.0.0.1:0", token_file=token_file)


def test_a_pipeline_that_takes_no_frames_pauses_forwarding_but_not_the_plan(caplog):
    from streamer.beamline.bluesky_bridge import FrameStreamer
    from streamer.beamline.forwarding import SafeForwarder
    from streamer.messaging.transport import FrameSender

    probe = zmq.Context.instance().socket(zmq.PULL)
    probe.bind("tcp://127.0.0.1:0")
    endpoint = probe.getsockopt(zmq.LAST_ENDPOINT).decode()
    probe.close()  # nobody takes frames there
    sender = FrameSender(endpoint, hwm=1, timeout_s=0.1)
    forwarder = SafeForwarder(FrameStreamer(sender, image_field="timepix_image"))
    _, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=0)
    try:
        with caplog.at_level(logging.ERROR, logger="streamer.beamline.forwarding"):
            starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=2,
                                          series="f"), forwarder)
    finally:
        sender.close(linger_s=0)
    assert [s["scan_index"] for s in starts] == [0, 1]  # both scans measured
    assert forwarder.failures == 2  # one failure per run, then paused until the next run
    assert caplog.text.count("paused until the next run") == 2


def test_auto_remeasure_with_finer_steps_tells_the_pipeline_its_longer_grid(loop):
    from plans import Remeasure

    fake, verdict, (_, stage, detector, potentiostat) = loop({0: ["domain_boundary"]})
    starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=1, series="fine",
                                  verdict=verdict, policy="auto", md={"geometry": GEOM.to_dict()},
                                  remeasure=Remeasure(exposure_factor=1.5, step_factor=2)), fake)
    assert [s["num_points"] for s in starts] == [8, 16]
    assert starts[1]["width_deg"] == starts[0]["width_deg"] and starts[1]["exposure_s"] == pytest.approx(0.015)
    assert starts[1]["geometry"]["shape_zyx"] == [16, 16, 16] and starts[0]["geometry"]["shape_zyx"] == [16, 16, 16]
    with pytest.raises(ValueError, match="step_factor"):
        Remeasure(step_factor=0)


class AlarmingPipeline(FlaggingPipeline):
    """As FlaggingPipeline, but the events of the scans in ``failed`` say their recording failed."""

    def __init__(self, failed: set[int]):
        super().__init__({})
        self.failed = failed

    def __call__(self, name, doc):
        if name == "stop" and self._start["scan_index"] in self.failed:
            k = self._start["scan_index"]
            event = {"run": self._start["series"], "scan": k, "flags": [], "latency_s": 0.1,
                     "peak": {"center_of_mass_px": [8.0, 8.0, 8.0]},
                     "ingest": {"recording_error": "disk full: 0 of 8 frames on disk"},
                     "reconstruction": {"status": "failed"}, "error": "analysis of scan 1 failed: no frames"}
            self.results.publish("event", {"event": event})
            return
        super().__call__(name, doc)


def test_a_failed_recording_pauses_an_unattended_series_until_someone_resumes(tmp_path):
    fake = AlarmingPipeline({1})
    verdict = PipelineVerdict(fake.endpoint, timeout_s=10.0)
    try:
        fake.wait_for_subscriber()
        _, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=0)
        docs = []
        RE = RunEngine({})
        RE.subscribe(fake)
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        with pytest.raises(RunEngineInterrupted):  # what RE() raises when a plan pauses
            RE(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=4, series="p",
                               verdict=verdict, policy="never"))
        assert RE.state == "paused"  # after scan 1, before scan 2
        assert [d["scan_index"] for n, d in docs if n == "start"] == [0, 1]
        assert "recording: disk full" in verdict.alarm.get()
        RE.resume()
        starts = [d for n, d in docs if n == "start"]
        assert [s["scan_index"] for s in starts] == [0, 1, 2, 3]
        assert starts[2]["previous_verdict"]["alarm_action"] == "paused"
        assert "disk full" in starts[2]["previous_verdict"]["alarm"]
        assert "previous_verdict" not in starts[1] or "alarm" not in starts[1]["previous_verdict"]
    finally:
        verdict.close()
        fake.close()


def test_an_alarm_can_ask_the_operator_or_only_be_recorded(tmp_path):
    fake = AlarmingPipeline({0})
    verdict = PipelineVerdict(fake.endpoint, timeout_s=10.0)
    decision = OperatorDecision("tcp://127.0.0.1:0", timeout_s=0.5, default_action="remeasure",
                                token_file=tmp_path / "token")
    try:
        fake.wait_for_subscriber()
        _, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=0)
        starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=2, series="a",
                                      verdict=verdict, decision=decision, on_alarm="ask"), fake)
        # scan 0 failed; nobody answered, the default re-measures it (scan 1), then scan 2
        assert [s.get("remeasure_of") for s in starts] == [None, 0, None]
        assert starts[1]["decision"]["alarm_action"] == "asked:remeasure"
        fake.failed = {0, 1, 2}
        starts = _run(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=2, series="c",
                                      verdict=verdict, on_alarm="continue"), fake)
        assert [s["scan_index"] for s in starts] == [0, 1]
        assert starts[1]["previous_verdict"]["alarm_action"] == "continued"
    finally:
        decision.listener.close()
        verdict.close()
        fake.close()


def test_on_alarm_is_checked():
    _, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=0)
    with pytest.raises(ValueError, match="on_alarm must be one of"):
        list(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 8, 0.01, num_scans=1, on_alarm="panic"))
