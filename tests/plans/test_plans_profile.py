"""The beamline startup profile loads (sim hardware), forwards a series to a running pipeline, and
bluesky-queueserver lists its plans and devices."""

import os
import runpy
import stat
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from streamer.messaging.decision import send_decision
from streamer.phasing import PhasingConfig
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
STARTUP = ROOT / "ops" / "beamline" / "startup"


def quick_phasing(recipe: str) -> PhasingConfig:
    """One short reconstruction per scan, no warm start or averaging: these tests are about the plan's
    loop, not the image."""
    return PhasingConfig(recipe=recipe, population=1, warm_start=False, average=1)


def _config(tmp_path, frames: str, results: str) -> Path:
    path = tmp_path / "beamline.toml"
    path.write_text(f'[pipeline]\nframes_endpoint = "{frames}"\nresults_endpoint = "{results}"\n'
                    f'decision_endpoint = "tcp://127.0.0.1:0"\nverdict_timeout_s = 60.0\n'
                    f'decision_token_file = "{tmp_path / "decision.token"}"\n')  # never the user's own
    return path


def test_profile_loads_and_forwards_an_operando_series_to_the_pipeline(tmp_path, monkeypatch):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path / "out"), realtime_policy="all",
                               phasing=quick_phasing("5HIO")))
    thread = threading.Thread(target=p.run, daemon=True)
    thread.start()
    monkeypatch.setenv("BCDI_BEAMLINE", "sim")
    monkeypatch.setenv("BCDI_BEAMLINE_CONFIG", str(_config(tmp_path, p.frames_endpoint, p.results_endpoint)))
    ns = runpy.run_path(str(STARTUP / "00-beamline.py"))
    link = ns["_link"]
    try:
        for name in ("RE", "theta", "timepix", "potentiostat", "verdict", "decision", "rocking_scan",
                     "align_peak", "operando_series"):
            assert name in ns, name
        RE, theta, timepix = ns["RE"], ns["theta"], ns["timepix"]
        theta.fast = timepix.fast = True
        assert RE.md["energy_kev"] == 9.0 and RE.md["hkl"] == [0, 0, 2]
        geometry = ns["_sample"].geometry
        width = geometry.rocking_step_deg * geometry.num_rocking_steps
        RE(ns["operando_series"](timepix, theta, ns["potentiostat"], geometry.theta_bragg_deg, width,
                                 geometry.num_rocking_steps, 0.1, num_scans=2, series="prof", verdict=ns["verdict"],
                                 track_peak=True, md={"geometry": geometry.to_dict()}))
        assert {("prof", 0), ("prof", 1)} <= set(ns["verdict"].events)  # the pipeline's verdicts came back
        received = [n for n, _ in p.documents]
        assert received.count("start") == 2 and received.count("stop") == 2
        assert link.forwarder.failures == 0
        assert p.documents[0][1]["energy_kev"] == 9.0  # the experiment metadata travelled with the run
        token_file = tmp_path / "decision.token"  # made private by the session, and what its listener wants
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        send_decision(ns["decision"].endpoint, "prof", 9, "acknowledge", token_file=token_file)
        assert ns["decision"].listener.wait(5, scan=9)["action"] == "acknowledge"
    finally:
        link.close()
        p.stop()
        thread.join(timeout=30)


def test_queueserver_lists_the_plans_and_devices_of_the_profile(tmp_path):
    env = {**os.environ, "BCDI_BEAMLINE": "sim",
           "BCDI_BEAMLINE_CONFIG": str(_config(tmp_path, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"))}
    out = tmp_path / "existing_plans_and_devices.yaml"
    cmd = [str(Path(sys.executable).with_name("qserver-list-plans-devices")), "--startup-dir", str(STARTUP),
           "--file-dir", str(tmp_path), "--file-name", out.name]
    result = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = yaml.safe_load(out.read_text())
    assert {"rocking_scan", "align_peak", "operando_series"} <= set(listed["existing_plans"])
    assert {"theta", "timepix", "potentiostat", "verdict", "decision"} <= set(listed["existing_devices"])
    params = {p["name"] for p in listed["existing_plans"]["operando_series"]["parameters"]}
    assert {"detector", "stage", "potentiostat", "num_scans", "policy", "track_peak"} <= params
