import event_model
import pytest
from bluesky import RunEngine
from ophyd import Component as Cpt
from ophyd import Device, Signal, SoftPositioner
from ophyd.status import StatusBase

from plans import (
    ParticleTarget,
    Remeasure,
    align_peak,
    experiment_md,
    operando_series,
    rocking_scan,
)
from plans.align import peak_centre
from plans.operando import tracked_centre
from plans.rocking import rocking_angles
from sim.devices import make_beamline
from sim.scenario import load_scenario
from streamer.geometry import DetectorGeometry, OrthogonalGeometry

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
    from streamer.beamline.bluesky_bridge import FrameStreamer

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


# -- documents, metadata, alignment, drift, particles -------------------------------------------------------

EXPERIMENT = experiment_md(sample="NNMO-12", composition="Na0.78Ni0.23Mn0.69O2", cell="coin-3", c_rate=0.1,
                           energy_kev=9.0, distance_m=1.2, pixel_size_um=55.0, hkl=(0, 0, 2), particle_id="p1")
WIDTH = GEOM.rocking_step_deg * 16  # the grid's rocking range: 16 steps of one reciprocal pixel


def validated(docs: list):
    """A RunEngine callback that validates every document with event-model before keeping it."""
    def callback(name, doc):
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
        docs.append((name, doc))
    return callback


def test_every_plan_emits_valid_documents_with_the_experiment_metadata(beamline):
    _, stage, detector, potentiostat = beamline
    docs = []
    RE = RunEngine({})
    RE.subscribe(validated(docs))
    RE(rocking_scan(detector, stage, GEOM.theta_bragg_deg, WIDTH, 16, 0.01, md=EXPERIMENT))
    RE(align_peak(detector, stage, GEOM.theta_bragg_deg, 2 * WIDTH, 11, 0.01, md=EXPERIMENT))
    RE(operando_series(detector, stage, potentiostat, GEOM.theta_bragg_deg, WIDTH, 16, 0.01, num_scans=2,
                       md=EXPERIMENT))
    starts = [d for n, d in docs if n == "start"]
    assert [s["plan_name"] for s in starts] == ["rocking_scan", "align_peak", "rocking_scan", "rocking_scan"]
    for s in starts:
        assert {k: s[k] for k in EXPERIMENT} == EXPERIMENT
    assert [n for n, _ in docs].count("stop") == 4
    assert all(d["exit_status"] == "success" for n, d in docs if n == "stop")


def test_bad_experiment_metadata_names_the_key(beamline):
    _, stage, detector, _ = beamline
    with pytest.raises(ValueError, match="energy_kev"):
        list(rocking_scan(detector, stage, 7.0, md={"energy_kev": "nine"}))
    with pytest.raises(ValueError, match="hkl"):
        experiment_md(sample="s", composition="c", cell="c", c_rate=0.1, energy_kev=9.0, distance_m=1.0,
                      pixel_size_um=55.0, hkl=(0, 2))


def test_peak_centre_and_tracking_arithmetic():
    assert peak_centre([0.0, 1.0, 2.0, 3.0, 4.0], [1, 1, 5, 9, 5]) == pytest.approx(3.0)
    assert peak_centre([0.0, 1.0], [3, 3]) is None
    # a peak at frame 12 of a 16-frame scan centred on 7 deg, 0.1 deg steps, sits at 7.4 deg
    assert tracked_centre(7.0, 1.6, 16, 12.0) == pytest.approx(7.4)
    assert tracked_centre(7.0, 1.6, 16, float("nan")) == 7.0


def test_align_peak_finds_a_drifted_peak_and_centres_the_arm():
    sample, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=2,
                                                          theta_drift_deg_per_step=0.3 * WIDTH)
    for _ in range(3):
        potentiostat.trigger()  # the peak is now 0.6 rocking widths away from the Bragg angle
    arm = SoftPositioner(name="delta", init_pos=14.0, egu="deg")
    docs = []
    RE = RunEngine({}, call_returns_result=True)
    RE.subscribe(validated(docs))
    found = RE(align_peak(detector, stage, GEOM.theta_bragg_deg, 3 * WIDTH, 25, 0.05, arm=arm,
                          arm_deg_per_px=0.01, detector_center_px=10.0)).plan_result
    assert found == pytest.approx(sample.peak_theta_deg, abs=WIDTH / 16)
    assert stage.position == pytest.approx(found)
    row = detector.centroid_row_px.get()  # the simulated peak sits at the frame centre (row 8 of 16)
    assert row == pytest.approx(8.0, abs=0.5)
    assert arm.position == pytest.approx(14.0 + (row - 10.0) * 0.01, abs=0.01)
    assert next(d for n, d in docs if n == "start")["pipeline"] is False


def _scan_counts(docs):
    """Total detector counts of each rocking run, by run uid."""
    counts = {}
    descriptors = {d["uid"]: d["run_start"] for n, d in docs if n == "descriptor"}
    for n, d in docs:
        if n == "event":
            run = descriptors[d["descriptor"]]
            counts[run] = counts.get(run, 0) + d["data"]["timepix_total_counts"]
    return [counts[d["uid"]] for n, d in docs if n == "start"]


def test_without_tracking_a_drifting_peak_is_lost():
    sample, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=0,
                                                          theta_drift_deg_per_step=0.2 * WIDTH)
    docs, peaks = [], []
    RE = RunEngine({})
    RE.subscribe(validated(docs))
    RE.subscribe(lambda name, doc: peaks.append(sample.peak_theta_deg) if name == "start" else None)
    RE(operando_series(detector, stage, potentiostat, GEOM.theta_bragg_deg, WIDTH, 16, 0.05, num_scans=8))
    assert peaks[-1] - peaks[0] > WIDTH  # the peak drifted by more than the rocking width
    counts = _scan_counts(docs)
    outside = [abs(p - GEOM.theta_bragg_deg) > WIDTH / 2 for p in peaks]
    assert outside[-1] and not outside[0]
    assert counts[-1] < 0.05 * counts[0]  # lost: no peak left in the rocking range


def test_several_particles_in_turn_with_positioners_until_a_capacity(beamline):
    _, stage, detector, potentiostat = beamline
    x = SoftPositioner(name="sample_x", init_pos=0.0, egu="um")
    docs = []
    RE = RunEngine({})
    RE.subscribe(validated(docs))
    moves = []
    x.subscribe(lambda value, **kw: moves.append(value), run=False)
    RE(operando_series(detector, stage, potentiostat, 7.0, WIDTH, 4, 0.01, num_scans=5, series="many",
                       stop_capacity_mah_g=20.0, positioners=[x],
                       particles=[ParticleTarget("a", 7.0, (1.5,)), {"particle_id": "b", "center_deg": 7.1,
                                                                     "position": (-2.0,)}]))
    starts = [d for n, d in docs if n == "start"]
    assert [(s["series"], s["scan_index"], s["charge_round"]) for s in starts] == [
        ("many-a", 0, 0), ("many-b", 0, 0), ("many-a", 1, 1), ("many-b", 1, 1)]
    assert [s["center_deg"] for s in starts[:2]] == [7.0, 7.1]
    assert [s["capacity_mah_g"] for s in starts] == [12.0, 12.0, 20.0, 20.0]
    assert moves[-4:] == [1.5, -2.0, 1.5, -2.0]
    with pytest.raises(ValueError, match="positioners"):
        list(operando_series(detector, stage, potentiostat, 7.0, num_scans=1, positioners=[x],
                             particles=[ParticleTarget("a", 7.0)]))
    with pytest.raises(ValueError, match="verdict"):
        list(operando_series(detector, stage, potentiostat, 7.0, num_scans=1, policy="auto"))
    with pytest.raises(ValueError, match="policy"):
        list(operando_series(detector, stage, potentiostat, 7.0, num_scans=1, policy="sometimes"))


def test_sim_stage_takes_time_unless_fast_and_detector_staging_counts_frames(beamline):
    from sim.devices import RotationStage

    slow = RotationStage(init_pos=0.0, velocity_deg_s=10.0, settle_time_s=0.5, fast=False)
    assert slow.move_time_s(1.0) == pytest.approx(0.6)
    assert RotationStage(init_pos=0.0, velocity_deg_s=10.0, fast=True).move_time_s(1.0) == 0.0
    with pytest.raises(ValueError, match="velocity_deg_s"):
        RotationStage(velocity_deg_s=0.0)
    _, stage, detector, _ = beamline
    RunEngine({})(rocking_scan(detector, stage, 7.0, WIDTH, 5, 0.01))
    assert detector.frames_acquired.get() == 5 and detector.armed.get() == 0


# -- the detector geometry in the start document --------------------------------------------------------------

class _StubVerdict(Device):
    """A verdict device that flags every scan (no pipeline): enough for the plan's re-measure path."""

    run_id = Cpt(Signal, value="")
    scan_index = Cpt(Signal, value=0)
    outcome = Cpt(Signal, value="received")
    flag_kinds = Cpt(Signal, value="new_vortex")
    peak_com_x_px = Cpt(Signal, value=float("nan"))
    alarm = Cpt(Signal, value="")

    def trigger(self):
        status = StatusBase()
        status.set_finished()
        return status


def test_a_detector_geometry_takes_each_scans_frames_step_and_centre(beamline):
    _, stage, detector, potentiostat = beamline
    given = DetectorGeometry(num_rocking_steps=64, rocking_step_deg=0.02).to_dict()
    docs = []
    RE = RunEngine({})
    RE.subscribe(validated(docs))
    # a flagged scan re-measured with twice the steps over the same 0.4 deg: 8 frames, then 16
    RE(operando_series(detector, stage, potentiostat, 7.1, 0.4, 8, 0.01, num_scans=1, series="det",
                       verdict=_StubVerdict(name="verdict"), policy="auto", remeasure=Remeasure(step_factor=2),
                       md={"geometry": given}))
    starts = [d for n, d in docs if n == "start"]
    assert [s["num_points"] for s in starts] == [8, 16] and "remeasure_of" in starts[1]
    for s, frames in zip(starts, (8, 16)):
        g = s["geometry"]
        assert (g["num_rocking_steps"], g["rocking_step_deg"], g["theta_bragg_deg"]) == (frames, 0.4 / frames, 7.1)
        assert s["rocking_step_deg"] == 0.4 / frames
        assert {k: v for k, v in g.items() if k not in ("num_rocking_steps", "rocking_step_deg", "theta_bragg_deg")} \
            == {k: v for k, v in given.items() if k not in ("num_rocking_steps", "rocking_step_deg", "theta_bragg_deg")}
        assert DetectorGeometry.from_dict(g).rocking_angles_deg() == pytest.approx(rocking_angles(7.1, 0.4, frames))
    # an orthogonal geometry is left to operando_series (its q_x grid follows the steps), not rewritten here
    msgs = list(rocking_scan(detector, stage, 7.0, 0.5, 5, 0.1, md={"geometry": GEOM.to_dict()}))
    assert next(m for m in msgs if m.command == "open_run").kwargs["geometry"] == GEOM.to_dict()
