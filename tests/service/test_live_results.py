"""Every live reconstruction kept as a result file (issue 19): written after the event, with provenance,
within a disk budget, enough to analyse the run again offline."""

import numpy as np

from streamer.analysis.offline import analyze_series
from streamer.geometry import OrthogonalGeometry
from streamer.messaging import wire
from streamer.recording.event_log import read_events
from streamer.recording.result_file import read_result
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

GEO = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=20.0)
PHASING = {"population": 2, "average": 2, "recipe": "40HIO, 10ER", "warm_recipe": "20HIO, 10ER"}


def _run(tmp_path, scans=3, **recording):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), realtime_policy="all", phasing=PHASING,
                               budget={"mode": "off"}, recording=recording))
    p._worker.start()
    z, y, x = np.indices((16, 16, 16)) - 8
    peak = 1e4 * np.exp(-(z**2 + y**2 + x**2) / 6.0)
    for k in range(scans):
        rng = np.random.default_rng(k)
        p.ingest(wire.encode("scan_start", run="run/1", scan=k, num_frames=16,
                             metadata={"geometry": GEO.to_dict(), "voltage_v": 3.5 + 0.1 * k}))
        for f in range(16):
            p.ingest(wire.encode_frame(run="run/1", scan=k, frame=f, seq=k * 16 + f, theta_deg=7.0, timestamp=1.0,
                                       array=rng.poisson(peak[:, :, f]).astype(np.uint32)))
        p.ingest(wire.encode("scan_end", run="run/1", scan=k, num_frames=16))
    p.shutdown()
    return p


def test_each_reconstructed_scan_has_a_result_file_with_provenance_and_the_run_can_be_analysed_again(tmp_path):
    p = _run(tmp_path)
    files = sorted((tmp_path / "results").glob("*/scan-*.h5"))
    assert [f.name for f in files] == ["scan-00000.h5", "scan-00001.h5", "scan-00002.h5"]
    assert files[0].parent.name.startswith("run_1-")  # the run's name made safe, as for its recording
    results = [read_result(f) for f in files]
    prov = results[1]["metadata"]["provenance"]
    assert prov["input"] == {"recording": str(p.recording.path("run/1")), "run": "run/1", "scan": 1, "frames": 16,
                             "status": "complete"}
    assert prov["configuration"]["phasing"]["population"] == 2 and prov["code_version"]
    assert results[1]["object"].shape == (16, 16, 16) and results[1]["metadata"]["voltage_v"] == 3.6
    live = read_events(tmp_path / "events.jsonl")
    offline = analyze_series(results, xp=np)
    assert [len(e["vortices"]) for e in offline] == [len(e["vortices"]) for e in live]
    assert [e["scan"] for e in offline] == [0, 1, 2]
    assert not p.result_files.alarms and not p.counters["result_not_kept"]


def test_a_spent_disk_budget_keeps_no_more_results_and_raises_one_alarm(tmp_path):
    p = _run(tmp_path, results_budget_gb=1e-6)  # about 1 kB: not even one object
    assert not list((tmp_path / "results").glob("*/*.h5"))
    assert p.counters["result_not_kept"] == 3 and len(p.result_files.alarms) == 1
    assert "disk budget" in p.result_files.alarms[0]
    assert all(e["reconstruction"]["status"] == "done" for e in read_events(tmp_path / "events.jsonl"))


def test_results_can_be_turned_off(tmp_path):
    _run(tmp_path, scans=1, keep_results=False)
    assert not (tmp_path / "results").exists()


def test_result_files_can_keep_the_members_and_the_offline_analysis_then_gives_the_live_error_bars(tmp_path):
    """Without its members and noise replicas an offline analysis has neither the members' jackknife nor the
    replicas' noise in the energy's error bar; with ``keep_members`` the files hold both (aligned with the object)
    and the run's energies read back as live."""
    _run(tmp_path, scans=2, keep_members=True)
    files = sorted((tmp_path / "results").glob("*/scan-*.h5"))
    results = [read_result(f) for f in files]
    assert all(r["members"].shape == (2, 16, 16, 16) and r["replicas"].shape == (4, 16, 16, 16) for r in results)
    live = read_events(tmp_path / "events.jsonl")
    offline = analyze_series(results, xp=np)
    assert [e["strain"] for e in offline] == [e["strain"] for e in live]
    bare = analyze_series([{**r, "members": None, "replicas": None} for r in results], xp=np)
    assert [e["strain"]["energy_j"] for e in bare] == [e["strain"]["energy_j"] for e in live]
    assert [e["strain"]["energy_j_range"] for e in bare] != [e["strain"]["energy_j_range"] for e in live]


def test_result_files_keep_no_members_by_default(tmp_path):
    _run(tmp_path, scans=1)
    [path] = (tmp_path / "results").glob("*/scan-*.h5")
    assert read_result(path).get("members") is None
