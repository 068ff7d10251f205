import pytest
from bluesky import RunEngine

from plans import operando_series, rocking_scan
from plans.rocking import rocking_angles
from sim.devices import make_beamline
from sim.scenario import load_scenario
from streamer.geometry import OrthogonalGeometry

GEOM = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=30.0)


@pytest.fixture
def beamline():
    return make_beamline(load_scenario("quick"), GEOM, seed=0)


def test_rocking_angles_are_centred_equal_steps():
    assert rocking_angles(7.0, 1.0, 4) == pytest.approx([6.5, 6.75, 7.0, 7.25])
    with pytest.raises(ValueError):
        rocking_angles(7.0, 1.0, 1)


def test_rocking_scan_message_list(beamline):
    _, stage, detector, _ = beamline
    msgs = list(rocking_scan(detector, stage, 7.0, width_deg=0.5, num=5, exposure_s=0.1))
    commands = [m.command for m in msgs]
    assert commands.count("open_run") == 1 and commands.count("close_run") == 1
    assert commands.count("trigger") == 5 and commands.count("save") == 5
    sets = [m for m in msgs if m.command == "set"]
    assert sets[0].obj is detector.acquire_time and sets[0].args == (0.1,)
    assert [m.args[0] for m in sets[1:]] == pytest.approx(rocking_angles(7.0, 0.5, 5))
    md = next(m for m in msgs if m.command == "open_run").kwargs
    assert md["num_points"] == 5 and md["motors"] == ["theta"] and md["exposure_s"] == 0.1


def test_operando_series_runs_on_the_simulated_beamline(beamline):
    sample, stage, detector, potentiostat = beamline
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    step = GEOM.rocking_step_deg
    RE(operando_series(detector, stage, potentiostat, GEOM.theta_bragg_deg, step * 16, 16, 0.01, num_scans=3,
                       series="s1"))
    starts = [d for n, d in docs if n == "start"]
    assert [s["scan_index"] for s in starts] == [0, 1, 2]
    assert [s["voltage_v"] for s in starts] == [3.40, 3.50, 3.73]
    assert all(s["series"] == "s1" for s in starts)
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 48
    assert events[0]["data"]["timepix_image"].shape == GEOM.frame_shape
    assert sample.stage.label == "screw pair"


def test_series_stops_at_the_voltage_limit(beamline):
    _, stage, detector, potentiostat = beamline
    starts = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
    RE(operando_series(detector, stage, potentiostat, 7.0, 0.5, 4, 0.01, num_scans=3, stop_voltage_v=3.45))
    assert len(starts) == 2


class _RecordingSender:
    """Stands in for FrameSender and keeps what it was asked to send."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_bridge_streams_run_start_once_then_scans_frames_and_documents(beamline):
    from streamer.bluesky_bridge import FrameStreamer

    _, stage, detector, potentiostat = beamline
    sender = _RecordingSender()
    RE = RunEngine({})
    RE.subscribe(FrameStreamer(sender, image_field=detector.image.name))
    RE(operando_series(detector, stage, potentiostat, 7.0, 0.5, 4, 0.01, num_scans=2, series="s9",
                       md={"geometry": GEOM.to_dict(), "sample": "NNMO-12", "c_rate": 0.1}))
    names = [c[0] for c in sender.calls]
    assert names.count("run_start") == 1 and names[0] == "run_start"
    run_meta = sender.calls[0][1][1]
    assert run_meta["geometry"] == GEOM.to_dict() and run_meta["sample"] == "NNMO-12" and run_meta["c_rate"] == 0.1
    assert run_meta["plan_args"]["num"] == 4 and "voltage_v" not in run_meta
    assert names.count("scan_start") == 2 and names.count("scan_end") == 2 and names.count("frame") == 8
    docs = [c[1][1] for c in sender.calls if c[0] == "document"]
    assert docs.count("start") == 2 and docs.count("stop") == 2 and "descriptor" in docs
    frames = [c for c in sender.calls if c[0] == "frame"]
    assert [c[1][2] for c in frames[:4]] == [0, 1, 2, 3] and frames[0][2]["num_frames"] == 4
    scan_meta = next(c[1][3] for c in sender.calls if c[0] == "scan_start")
    assert scan_meta["voltage_v"] == 3.40 and scan_meta["geometry"] == GEOM.to_dict()
