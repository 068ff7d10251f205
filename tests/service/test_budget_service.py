"""The service's time budget (issue 17): each scan's event says what was reconstructed, why, and how long it took.

Which choice a budget gets depends on FFT costs timed on the machine; the assertions hold on any machine:
a budget below any cost gets the cheapest choice, and the budget itself comes from the scan's metadata.
"""

import numpy as np
import pytest

from streamer.geometry import OrthogonalGeometry
from streamer.messaging import wire
from streamer.phasing import PhasingConfig
from streamer.recording.event_log import read_events
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

GEO = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=20.0)
PHASING = PhasingConfig(population=4, average=2, recipe="40HIO, 10ER", warm_recipe="20HIO, 10ER")


def _scan(p, k, metadata):
    rng = np.random.default_rng(k)
    z, y, x = np.indices((16, 16, 16)) - 8
    peak = 1e4 * np.exp(-(z**2 + y**2 + x**2) / 6.0)
    p.ingest(wire.encode("scan_start", run="r", scan=k, num_frames=16, metadata={"geometry": GEO.to_dict(), **metadata}))
    for f in range(16):
        p.ingest(wire.encode_frame(run="r", scan=k, frame=f, seq=k * 16 + f, theta_deg=7.0, timestamp=1.0,
                                   array=rng.poisson(peak[:, :, f]).astype(np.uint32)))
    p.ingest(wire.encode("scan_end", run="r", scan=k, num_frames=16))


def _events(tmp_path, budget, metadata, phasing=PHASING):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), realtime_policy="all", phasing=phasing, budget=budget))
    p._worker.start()
    for k in range(2):
        _scan(p, k, metadata)
    p.shutdown()
    return read_events(tmp_path / "events.jsonl")


def test_the_budget_is_the_scans_acquisition_time_and_the_event_says_what_it_bought(tmp_path):
    events = _events(tmp_path, {"mode": "acquisition", "share": 0.5}, {"exposure_s": 2.0})
    for ev in events:
        budget = ev["phasing"]["budget"]
        assert budget["budget_s"] == 16 * 2.0 * 0.5  # 16 frames of 2 s, half of it for this work
        assert budget["actual_s"] > 0 and budget["predicted_s"] > 0 and budget["reason"]
        assert budget["phasing_voxel_nm"] == [20.0 * 16 / n for n in budget["shape"]]
        assert ev["reconstruction"]["status"] == "done"
    # the cold treatment in full fits: scan 1 starts cold too (warm_start "auto"; a warm start carries the last
    # scan's slow phase modes)
    assert not events[1]["phasing"]["warm_started"] and events[1]["phasing"]["budget"]["recipe"] == PHASING.recipe
    assert events[1]["phasing"]["budget"]["reason"] == "the full reconstruction fits"
    always = _events(tmp_path / "warm", {"mode": "acquisition", "share": 0.5}, {"exposure_s": 2.0},
                     PHASING.replace(warm_start=True))
    assert always[1]["phasing"]["warm_started"] and always[1]["phasing"]["budget"]["recipe"] == PHASING.warm_recipe


def test_a_budget_below_any_cost_reconstructs_the_cheapest_on_a_coarser_grid_and_says_it_is_late(tmp_path):
    events = _events(tmp_path, {"mode": "fixed", "budget_s": 1e-6}, {})
    for ev in events:
        budget = ev["phasing"]["budget"]
        assert budget["crop"] == 0.5 and budget["shape"] == [8, 8, 8] and budget["population"] == 2
        assert "will be late" in budget["reason"] and budget["phasing_voxel_nm"] == [40.0] * 3
        assert ev["reconstruction"]["status"] == "done" and ev["phasing"]["population"] == 2
    # the cold treatment does not fit: scan 1 starts from scan 0 (warm_start "auto"), with the warm recipe
    assert events[1]["phasing"]["warm_started"] and events[1]["phasing"]["budget"]["recipe"] == PHASING.warm_recipe


def test_no_budget_keeps_the_configured_phasing(tmp_path):
    events = _events(tmp_path, {"mode": "off"}, {"exposure_s": 0.001})
    assert all("budget" not in ev["phasing"] and ev["phasing"]["population"] == 4 for ev in events)
    assert not events[1]["phasing"]["warm_started"]  # nothing to keep up with: every scan cold, in full


def test_a_scan_start_plans_its_ffts_in_the_background_before_its_frames_arrive(tmp_path):
    p = Pipeline(ServiceConfig(out_dir=str(tmp_path), phasing=PHASING, budget={"mode": "fixed", "budget_s": 1e6}))
    try:
        p.ingest(wire.encode("scan_start", run="r", scan=0, num_frames=16, metadata={"geometry": GEO.to_dict()}))
        p.processor.costs._planned[("submitted", (16, 16, 16))].result(60)
        assert p.processor.costs._planned[(4, 16, 16, 16)].result(60) is not None  # the full population's plans
        # the shape was timed to choose, and is timed again with its real plan once that is made
        assert p.processor.costs((16, 16, 16)) > 0 and (16, 16, 16) in p.processor.costs._timed
    finally:
        p.shutdown()


def test_a_runs_first_scan_is_predicted_with_the_hosts_remembered_slowness_never_below_one():
    """The service learns each run's slowness from its scans; the first scan starts from what the last budgeted
    runs on this host found (a cold real-size scan took 63 s where 39 were predicted), never below 1."""
    from streamer.phasing.wisdom import wisdom_path
    from streamer.service.costs import SLOWNESS_FILE
    from streamer.service.processing import ScanProcessor

    path = wisdom_path().parent / SLOWNESS_FILE
    config = ServiceConfig(phasing=PHASING, budget={"mode": "fixed", "budget_s": 1e6})

    def predicted(remembered):
        if remembered is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f'{{"numpy": {remembered}}}')
        processor = ScanProcessor(config)
        processor.costs.close()
        processor.costs = lambda shape, batch: 0.01  # the same FFT costs for every processor
        choice = processor.choose("r", (16, 16, 16), 1e6, warm=False)
        return choice.predicted_s - config.budget.fixed_s

    try:
        alone = predicted(None)
        assert predicted(2.0) == pytest.approx(2 * alone)
        assert predicted(0.5) == pytest.approx(alone)  # a faster host's memory never makes the first scan bolder
    finally:
        path.unlink(missing_ok=True)
