"""The operando series with the pipeline running: documents, frames received, events, re-measures and
peak tracking of a drifting peak (the verdict comes back over the pipeline's results socket)."""

import threading

import event_model
import pytest
from bluesky import RunEngine

from plans import Remeasure, operando_series
from plans.operando import REMEASURE_FLAGS
from sim.devices import make_beamline
from sim.scenario import load_scenario
from streamer.beamline.bluesky_bridge import FrameStreamer
from streamer.beamline.verdict import PipelineVerdict
from streamer.geometry import OrthogonalGeometry
from streamer.messaging.transport import FrameSender
from streamer.phasing import PhasingConfig
from streamer.recording.event_log import read_events
from streamer.recording.recorder import list_scans
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

GEOM = OrthogonalGeometry(shape_zyx=(32, 32, 32), voxel_nm=18.0)
WIDTH = GEOM.rocking_step_deg * 32


def quick_phasing(recipe: str) -> PhasingConfig:
    """One short reconstruction per scan, no warm start or averaging: these tests are about the plan's
    loop, not the image."""
    return PhasingConfig(recipe=recipe, population=1, warm_start=False, average=1)


@pytest.fixture
def pipeline(tmp_path):
    """The pipeline service on loopback in a thread, with a short phasing recipe; stopped at the end."""
    config = ServiceConfig(out_dir=str(tmp_path), realtime_policy="all",
                           phasing=quick_phasing("10HIO, 5ER"))
    p = Pipeline(config)
    thread = threading.Thread(target=p.run, name="pipeline", daemon=True)
    thread.start()

    def finish():
        p.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()

    yield p, finish
    finish()


def test_ten_scan_series_with_the_pipeline_tracks_the_peak_and_remeasures_flagged_scans(pipeline, tmp_path):
    pipeline, finish = pipeline
    sample, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=4,
                                                          theta_drift_deg_per_step=0.2 * WIDTH)
    verdict = PipelineVerdict(pipeline.results_endpoint, timeout_s=60.0)
    sender = FrameSender(pipeline.frames_endpoint)
    docs, truth = [], {}

    def keep(name, doc):
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
        docs.append((name, doc))
        if name == "start":
            truth[doc["scan_index"]] = sample.peak_theta_deg

    RE = RunEngine({}, call_returns_result=True)
    RE.subscribe(FrameStreamer(sender, image_field=detector.image.name))
    RE.subscribe(keep)
    try:
        series = RE(operando_series(detector, stage, potentiostat, GEOM.theta_bragg_deg, WIDTH, 32, 0.5,
                                    num_scans=10, series="op10", verdict=verdict, policy="auto", track_peak=True,
                                    remeasure=Remeasure(exposure_factor=2.0),
                                    md={"geometry": GEOM.to_dict(), "sample": "sim"})).plan_result
        sender.run_stop(series)
    finally:
        sender.close()
        verdict.close()
    finish()  # the pipeline closes its recording before it is read back

    starts = [d for n, d in docs if n == "start"]
    regular = [s for s in starts if "remeasure_of" not in s]
    assert [s["charge_round"] for s in regular] == list(range(10))
    assert truth[max(truth)] - truth[0] > WIDTH  # the peak drifted by more than the rocking range
    # every scan, re-measures included, kept the true peak inside the central half of its range
    for s in starts:
        assert abs(truth[s["scan_index"]] - s["center_deg"]) < WIDTH / 4, s["scan_index"]

    events = {e["scan"]: e for e in read_events(tmp_path / "events.jsonl")}
    assert sorted(events) == [s["scan_index"] for s in starts]
    for s in starts:
        com_x = events[s["scan_index"]]["peak"]["center_of_mass_px"][2]
        assert abs(com_x - 16) < 8  # the pipeline saw it there too
    flagged = {k for k, e in events.items() if {f["kind"] for f in e["flags"]} & set(REMEASURE_FLAGS)}
    remeasured = {s["remeasure_of"] for s in starts if "remeasure_of" in s}
    assert remeasured and remeasured == {s["scan_index"] for s in regular} & flagged  # exactly the flagged
    for s in starts:
        if "remeasure_of" in s:
            assert s["exposure_s"] == 1.0 and s["decision"]["decided_by"] == "auto"
            assert set(s["decision"]["because"]) <= set(REMEASURE_FLAGS)
    later = [s for s in regular if s["scan_index"] > 0]
    assert all(s["previous_verdict"]["outcome"] == "received" for s in later)

    (recording,) = tmp_path.glob("*.h5")
    scans = list_scans(recording)
    assert [s["scan"] for s in scans] == sorted(events)
    assert all(s["complete"] and s["frames_recorded"] == 32 for s in scans)
    frames_sent = sum(1 for n, d in docs if n == "event")
    assert frames_sent == 32 * len(starts)
    received = [n for n, _ in pipeline.documents]
    assert received.count("start") == len(starts) and received.count("stop") == len(starts)
