"""The EPICS devices over the real Channel Access protocol, against a caproto IOC this module starts on
loopback (tests/beamline/epics_ioc.py) and stops: motor readback and done-moving, the Timepix acquire/frame PVs,
the potentiostat PVs, the plans driving them, and the detector geometry the EPICS profile puts into every
rocking scan's start document."""

import os
import runpy
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import event_model
import numpy as np
import pytest
from bluesky import Msg, RunEngine
from ophyd import EpicsSignal

from plans import align_peak, operando_series, rocking_scan
from streamer.beamline.hardware import load_beamline_config, make_epics_beamline
from streamer.beamline.hardware.config import BeamlineConfig, EpicsConfig
from streamer.beamline.hardware.epics import frame_layout
from streamer.beamline.hardware.session import GeometryInStart
from streamer.geometry import DetectorGeometry, from_dict
from streamer.phasing import PhasingConfig
from streamer.recording.event_log import read_events
from streamer.recording.recorder import list_scans
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline
from streamer.settings import ConfigError

IOC = Path(__file__).with_name("epics_ioc.py")
PREFIX = "BCDITEST:"
STARTUP = Path(__file__).resolve().parents[2] / "ops" / "beamline" / "startup" / "00-beamline.py"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    """The IOC in a subprocess on a free loopback port; the client environment points at it only."""
    env = {"EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "EPICS_CA_SERVER_PORT": str(_free_port()), "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    log_path = tmp_path_factory.mktemp("ioc") / "ioc.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(IOC), PREFIX], env={**os.environ, **env},
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        config = EpicsConfig(theta_motor_pv=PREFIX + "m1", detector_prefix=PREFIX + "TPX1:",
                             potentiostat_prefix=PREFIX + "PSTAT:", connection_timeout_s=15.0)
        try:
            devices = make_epics_beamline(config)
        except TimeoutError as exc:
            raise RuntimeError(f"the test IOC did not serve its PVs: {exc}\n{log_path.read_text()[-2000:]}") from exc
        yield devices
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _validated(docs):
    def callback(name, doc):
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
        docs.append((name, doc))
    return callback


def test_motor_moves_with_readback_and_done_moving(ioc):
    stage, _, _ = ioc
    done = []
    stage.motor_done_move.subscribe(lambda value, **kw: done.append(value), run=False)
    stage.move(7.3, wait=True, timeout=10)
    assert stage.position == pytest.approx(7.3, abs=1e-3)
    assert stage.user_readback.get() == pytest.approx(7.3, abs=1e-3)
    assert 0 in done and done[-1] == 1  # it was moving, then done
    assert stage.motor_done_move.get() == 1


def test_potentiostat_reads_the_cell_pvs(ioc):
    _, _, potentiostat = ioc
    EpicsSignal(PREFIX + "PSTAT:Voltage", name="v").put(3.61, wait=True)
    assert potentiostat.voltage.get() == pytest.approx(3.61)
    assert potentiostat.capacity.get() == pytest.approx(12.0) and potentiostat.current.get() > 0
    assert potentiostat.trigger().done


def test_timepix_acquires_a_frame_through_the_areadetector_pvs(ioc):
    stage, detector, _ = ioc
    stage.move(7.0, wait=True, timeout=10)
    detector.stage()
    try:
        detector.acquire_time.set(0.05).wait(5)
        assert detector.cam.acquire_time.get() == pytest.approx(0.05)
        assert detector.cam.image_mode.get() == 0 and detector.cam.num_images.get() == 1  # staged
        before = detector.cam.array_counter.get()
        t0 = time.monotonic()
        detector.trigger().wait(10)
        assert time.monotonic() - t0 >= 0.05  # the exposure is honoured
        frame = detector.image.get()
        assert frame.shape == (32, 32) and frame.dtype == np.uint32
        assert detector.total_counts.get() == pytest.approx(frame.sum()) and frame.sum() > 0
        assert detector.cam.array_counter.get() == before + 1
    finally:
        detector.unstage()


def test_plans_drive_the_epics_devices(ioc):
    stage, detector, potentiostat = ioc
    EpicsSignal(PREFIX + "PSTAT:Voltage", name="v").put(3.40, wait=True)
    docs = []
    RE = RunEngine({}, call_returns_result=True)
    RE.subscribe(_validated(docs))
    found = RE(align_peak(detector, stage, 7.03, 0.3, 11, 0.02)).plan_result
    assert found == pytest.approx(7.0, abs=0.02) and stage.position == pytest.approx(found, abs=1e-3)
    RE(rocking_scan(detector, stage, found, 0.2, 5, 0.02))
    RE(operando_series(detector, stage, potentiostat, found, 0.2, 4, 0.02, num_scans=2, series="epics"))
    starts = [d for n, d in docs if n == "start"]
    assert [s["plan_name"] for s in starts] == ["align_peak"] + ["rocking_scan"] * 3
    assert [s.get("voltage_v") for s in starts[2:]] == [pytest.approx(3.40)] * 2
    scan_events = [d for n, d in docs if n == "event" and "timepix_image" in d["data"]]
    assert len(scan_events) == 5 + 8
    counts = [e["data"]["timepix_total_counts"] for e in scan_events[:5]]
    assert int(np.argmax(counts)) == 2  # the middle frame is the Bragg peak
    assert scan_events[0]["data"]["timepix_image"].shape == (32, 32)


def test_beamline_config_file_loads_and_bad_values_name_the_key(tmp_path):
    config = load_beamline_config(Path(__file__).parents[2] / "ops" / "configs" / "beamline.toml")
    assert config.experiment.energy_kev == 9.0 and config.experiment.hkl == (0, 0, 2)
    assert config.pipeline.results_endpoint.startswith("tcp://127.0.0.1:")
    bad = tmp_path / "bad.toml"
    bad.write_text('[epics]\ndetector_prefix = "has space"\n')
    with pytest.raises(ConfigError, match="detector_prefix"):
        load_beamline_config(bad)
    bad.write_text('[pipeline]\nverdict_timeout_s = "long"\n')
    with pytest.raises(ConfigError, match="verdict_timeout_s"):
        load_beamline_config(bad)
    bad.write_text('[experiment]\nhkl = [0, 2]\n')
    with pytest.raises(ConfigError, match="hkl"):
        load_beamline_config(bad)
    # the shipped file's reflection, detector and rocking motor make a geometry: P2 (002), d = c / 2
    assert config.experiment.reflection().d_nm == pytest.approx(0.55, rel=1e-12)
    assert config.detector.shape_px == (516, 516) and config.rocking.motor == "theta"
    geometry = config.beamline_geometry(rocking_step_deg=0.01, num_frames=60).geometry()
    assert geometry.stack_shape == (60, 516, 516) and geometry.rocking_axis == (0.0, 0.0, 1.0)
    for text, key in [('[experiment]\nd_spacing_nm = 0.55\n[experiment.lattice]\na_nm = 0.3\n', "experiment: give"),
                      ('[detector]\nbinning = 0\n', "detector.binning"),
                      ('[detector]\nroi_px = [0, 10, 0]\n', "detector.roi_px"),
                      ('[rocking]\naxis = "up"\n', "rocking.axis"),
                      ('[rocking]\nspeed = 1\n', "unknown key rocking.speed")]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=key):
            load_beamline_config(bad)
    # refused when the session starts: the defaults name no detector size and no reflection
    with pytest.raises(ConfigError, match=r"beamline configuration .*detector.shape_px: the raw detector size"):
        GeometryInStart(BeamlineConfig())
    with pytest.raises(ConfigError, match="reflection: give d_spacing_nm, or lattice with hkl"):
        GeometryInStart(BeamlineConfig(detector={"shape_px": [256, 256]}))


def _scan_runs(docs):
    """(start document, its frames, its theta readbacks) of every run with frames."""
    runs, current = [], None
    for name, doc in docs:
        if name == "start":
            current = (doc, [], [])
            runs.append(current)
        elif name == "event" and "timepix_image" in doc["data"]:
            current[1].append(doc["data"]["timepix_image"])
            current[2].append(doc["data"]["theta"])
    return runs


def test_rocking_scans_carry_the_geometry_their_frames_were_taken_with(ioc):
    stage, detector, _ = ioc
    # the configuration's [detector] says a 256 x 256 sensor unbinned; the detector's own PVs say a 72 x 80
    # sensor read from rows 4..68, columns 8..72, binned 2 x 2 (tests/beamline/epics_ioc.py): they win
    config = BeamlineConfig(experiment={"d_spacing_nm": 0.55}, detector={"shape_px": [256, 256]})
    docs = []
    RE = RunEngine({})
    RE.preprocessors.append(GeometryInStart(config, detector))
    RE.subscribe(_validated(docs))
    RE(align_peak(detector, stage, 7.0, 0.2, 5, 0.02))
    RE(rocking_scan(detector, stage, 7.0, 0.2, 5, 0.02))
    RE(rocking_scan(detector, stage, 7.01, 0.2, 8, 0.02, md={"sample": "NNMO"}))
    align, *scans = _scan_runs(docs)
    assert "geometry" not in align[0]  # not a rocking scan for the pipeline
    for (start, frames, thetas), num in zip(scans, (5, 8)):
        g = from_dict(start["geometry"])
        assert isinstance(g, DetectorGeometry)
        assert g.detector_shape_px == (72, 80) and g.roi_px == (4, 68, 8, 72) and g.binning == 2
        assert len(frames) == num == g.num_rocking_steps
        assert {f.shape for f in frames} == {g.frame_shape} == {(32, 32)}
        assert g.rocking_step_deg == pytest.approx(0.2 / num, rel=1e-12)
        # the motor's readbacks: frame k sits at rocking index k, one step apart
        assert np.diff(thetas) == pytest.approx([0.2 / num] * (num - 1), abs=2e-4)
        assert [g.rocking_index(t) for t in thetas] == pytest.approx(range(num), abs=2e-4 * num / 0.2)
        assert g.theta_bragg_deg == start["center_deg"] and g.energy_kev == 9.0 and g.distance_m == 1.2
        # the arm sits on the reflection: 2 theta = 2 asin(lambda / 2 d) in the vertical plane
        assert (g.delta_deg, g.gamma_deg) == pytest.approx((0.0, 2 * np.degrees(np.arcsin(1.2398419843 / 9 / 1.1))))
    assert scans[1][0]["sample"] == "NNMO"


def test_geometry_in_start_keeps_a_given_geometry_and_says_why_a_scan_has_none():
    config = BeamlineConfig(experiment={"d_spacing_nm": 0.55}, detector={"shape_px": [64, 64]})
    make = GeometryInStart(config)
    start = {"motors": ["theta"], "num_points": 10, "rocking_step_deg": 0.01, "center_deg": 7.2}
    g = from_dict(make.geometry(start))
    assert g.stack_shape == (10, 64, 64) and g.theta_bragg_deg == 7.2
    with pytest.raises(ValueError, match="the scan rocks 'phi' but \\[rocking\\] motor is 'theta'"):
        make.geometry({**start, "motors": ["phi"]})
    with pytest.raises(ValueError, match="lacks rocking_step_deg"):
        make.geometry({"motors": ["theta"], "num_points": 10})
    # a layout with 2 x 1 bins cannot be one geometry
    layout = {"max_rows": 64, "max_cols": 64, "row0": 0, "col0": 0, "bin_rows": 2, "bin_cols": 1,
              "rows": 32, "cols": 64}
    with pytest.raises(ValueError, match="bins 2 x 1"):
        frame_layout(layout)
    assert frame_layout({**layout, "bin_cols": 2, "cols": 32}) == {"shape_px": (64, 64), "binning": 2,
                                                                    "roi_px": (0, 64, 0, 64)}

    def run(md):
        def plan():
            yield Msg("open_run", **md)
            yield Msg("close_run")
        docs = []
        RE = RunEngine({})
        RE.preprocessors.append(make)
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        RE(plan())
        return docs[0][1]

    assert run({**start, "geometry": {"kind": "orthogonal"}})["geometry"] == {"kind": "orthogonal"}  # kept
    assert "geometry" not in run({**start, "pipeline": False})
    other = run({**start, "motors": ["phi"]})  # measured, but it says why it has no geometry
    assert "geometry" not in other and "rocks 'phi'" in other["geometry_error"]
    assert from_dict(run(start)["geometry"]) == g


def test_the_epics_profile_starts_every_rocking_scan_with_a_geometry_the_pipeline_analyses(ioc, tmp_path,
                                                                                          monkeypatch):
    stage, _, _ = ioc
    stage.move(7.0, wait=True, timeout=10)
    # frames arrive binned by the detector (32 x 32 of a 64 x 64 region): the service bins no further
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path / "out"), realtime_policy="all", detector={"binning": 1},
                               phasing=PhasingConfig(recipe="20HIO, 10ER", population=1, warm_start=False, average=1)))
    thread = threading.Thread(target=p.run, daemon=True)
    thread.start()
    config = tmp_path / "beamline.toml"
    config.write_text(
        f'[epics]\ntheta_motor_pv = "{PREFIX}m1"\ndetector_prefix = "{PREFIX}TPX1:"\n'
        f'potentiostat_prefix = "{PREFIX}PSTAT:"\nconnection_timeout_s = 15.0\n'
        f'[pipeline]\nframes_endpoint = "{p.frames_endpoint}"\nresults_endpoint = "{p.results_endpoint}"\n'
        f'decision_endpoint = "tcp://127.0.0.1:0"\nverdict_timeout_s = 120.0\n'
        f'decision_token_file = "{tmp_path / "decision.token"}"\n'
        '[experiment]\nenergy_kev = 9.0\ndistance_m = 1.2\npixel_size_um = 55.0\nhkl = [0, 0, 2]\n'
        '[experiment.lattice]\na_nm = 0.2889\nc_nm = 1.1\ngamma_deg = 120.0\n'
        '[rocking]\nmotor = "theta"\n')  # no [detector]: the areaDetector says its size, region and binning
    monkeypatch.setenv("BCDI_BEAMLINE", "epics")
    monkeypatch.setenv("BCDI_BEAMLINE_CONFIG", str(config))
    ns = runpy.run_path(str(STARTUP))
    link = ns["_link"]
    docs = []
    try:
        RE = ns["RE"]
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        RE(ns["operando_series"](ns["timepix"], ns["theta"], ns["potentiostat"], 7.0, 0.4, 16, 0.02, num_scans=1,
                                 series="epics-geometry", verdict=ns["verdict"], on_alarm="continue"))
        assert ("epics-geometry", 0) in ns["verdict"].events  # the pipeline answered the scan
        assert link.forwarder.failures == 0
    finally:
        link.close()
        p.stop()
        thread.join(timeout=30)
    (start, frames, thetas), = _scan_runs(docs)
    received = next(d for n, d in p.documents if n == "start")
    assert received["geometry"] == start["geometry"]  # it reached the pipeline as the profile made it
    g = from_dict(received["geometry"])
    assert g.stack_shape == (len(frames), *frames[0].shape) == (16, 32, 32)
    assert g.rocking_step_deg == pytest.approx(0.025) and np.diff(thetas) == pytest.approx([0.025] * 15, abs=2e-4)
    assert g.d_spacing_nm == pytest.approx(0.55) and g.pixel_um == 55.0 and g.energy_kev == 9.0
    assert (g.detector_shape_px, g.roi_px, g.binning) == ((72, 80), (4, 68, 8, 72), 2)
    (recording,) = (tmp_path / "out").glob("*.h5")
    (scan,) = list_scans(recording)
    assert scan["complete"] and scan["frames_recorded"] == g.num_rocking_steps
    (event,) = read_events(tmp_path / "out" / "events.jsonl")
    assert not event.get("error"), event.get("error")
    # analysed as a detector scan: phased on the (step, row, col) grid, then in the lab frame
    assert event["frame"]["name"] == "lab" and event["frame"]["detector_stack_shape"] == [16, 32, 32]
    # lambda D / (N p) along rows and columns: 0.13776 nm x 1.2 m / (32 x 110 um) = 46.96 nm; along the rocking
    # direction lambda / (2 N sin(theta) dtheta) = 0.13776 / (2 x 16 x 0.125237 x 0.025 pi / 180) = 78.79 nm
    assert event["frame"]["detector_voxel_nm"] == pytest.approx([78.789, 46.964, 46.964], abs=1e-3)
    assert event["reconstruction"]["status"] == "done", event["reconstruction"]
    # the IOC's peak: row 15, column 17 of the frames, at theta 7.0 = frame 8 of 16 (centre 7.0, 0.025 deg steps)
    assert event["peak"]["center_of_mass_px"] == pytest.approx([15.0, 17.0, 8.0], abs=0.1)
