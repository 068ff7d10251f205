"""The EPICS devices over the real Channel Access protocol, against a caproto IOC this module starts on
loopback (tests/beamline/epics_ioc.py) and stops: motor readback and done-moving, the Timepix acquire/frame PVs,
the potentiostat PVs, and the plans driving them."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import event_model
import numpy as np
import pytest
from bluesky import RunEngine
from ophyd import EpicsSignal

from plans import align_peak, operando_series, rocking_scan
from streamer.beamline.hardware import load_beamline_config, make_epics_beamline
from streamer.beamline.hardware.config import EpicsConfig
from streamer.settings import ConfigError

IOC = Path(__file__).with_name("epics_ioc.py")
PREFIX = "BCDITEST:"


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
        assert frame.shape == (12, 16) and frame.dtype == np.uint32
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
    assert scan_events[0]["data"]["timepix_image"].shape == (12, 16)


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
